"""The desktop's shell and files, as a model's bash and text-editor tools use them: a shell
whose state persists, that never hangs and never floods, and file access whose every
refusal is clear and leaves the disk as it was."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest

from cubicle.client import CubicleError, DesktopClient
from cubicle.server.errors import ApiError
from cubicle.server.files import MAX_DIRECTORY_ENTRIES, MAX_READ_BYTES, FileAccess, is_inside
from support import free_port, wait_until

NEW_ROUTES = [("POST", "/shell/run"), ("POST", "/shell/restart"), ("GET", "/files"), ("PUT", "/files")]


@pytest.fixture
def shell(client):
    """The desktop's shell, fresh for each test."""
    client.restart_shell()
    return client


@pytest.fixture
def http(desktop):
    with httpx.Client(base_url=desktop.url, headers={"Authorization": f"Bearer {desktop.token}"}, timeout=60) as api:
        yield api


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not collected it yet.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False





@pytest.mark.parametrize("method,path", NEW_ROUTES)
def test_new_routes_need_the_token(desktop, method, path):
    response = httpx.request(method, desktop.url + path, params={"path": "/etc/hostname"},
                             json={"command": "touch /tmp/never", "path": "/tmp/never", "content": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


# -- the shell ------------------------------------------------------------------------------


def test_state_persists_between_commands(shell, tmp_path):
    assert shell.shell(f"cd {tmp_path}").exit_code == 0
    assert shell.shell("pwd").output == f"{tmp_path}\n"
    shell.shell("export GREETING='héllo wörld'; counter=41; bump() { counter=$((counter + 1)); }")
    shell.shell("bump")
    result = shell.shell('echo "$GREETING $counter"; bash -c \'echo "child sees $GREETING"\'')
    assert result.output == "héllo wörld 42\nchild sees héllo wörld\n"


def test_starts_in_home_with_the_desktop_display(shell, desktop):
    home = desktop.state_dir / "home"
    assert shell.shell("pwd").output == f"{home.resolve()}\n"
    assert shell.shell("echo $DISPLAY $LANG").output == f"{desktop.display} C.UTF-8\n"
    first_line = shell.shell("xdpyinfo | head -1")
    assert first_line.exit_code == 0 and first_line.output.startswith("name of display:")
    assert desktop.display in first_line.output
    # The server's token is not handed to commands.
    assert shell.shell('echo "[${CUBICLE_TOKEN-unset}]"').output == "[unset]\n"


def test_exit_codes(shell):
    assert shell.shell("true").exit_code == 0
    assert shell.shell("false").exit_code == 1
    assert shell.shell("(exit 7)").exit_code == 7
    assert shell.shell("no-such-program-here").exit_code == 127
    broken = shell.shell("echo 'unclosed")
    assert broken.exit_code == 2 and "unexpected EOF" in broken.output
    # The shell survived the syntax error.
    assert shell.shell("echo fine").output == "fine\n"


def test_stderr_is_merged_in_order(shell):
    result = shell.shell("echo out; echo err >&2; echo out2; ls /no/such/folder")
    lines = result.output.splitlines()
    assert lines[:3] == ["out", "err", "out2"]
    assert "No such file or directory" in lines[3]
    assert result.exit_code == 2


def test_any_text_is_a_valid_command(shell):
    # Quotes, a trailing comment, a here-document and backslashes reach bash unchanged.
    command = "cat <<'EOF' # a comment\nit's \"quoted\" \\ $HOME\nEOF\necho done # } fi done"
    assert shell.shell(command).output == "it's \"quoted\" \\ $HOME\ndone\n"
    assert shell.shell("printf '%s\\n' no-newline-after-this; printf tail").output == "no-newline-after-this\ntail"


def test_a_command_reading_stdin_does_not_hang(shell):
    started = time.monotonic()
    result = shell.shell("cat; read line; echo \"read returned $?\"", timeout=10)
    assert time.monotonic() - started < 3
    assert result.output == "read returned 1\n" and not result.timed_out


def test_non_utf8_output_is_replaced(shell):
    result = shell.shell(r"printf 'a\xffb\xc3\n'; printf '\xe4\xb8\x96\n'")
    assert result.output == "a\ufffdb\ufffd\n世\n"


def test_timeout_kills_the_command_and_the_next_call_gets_a_fresh_shell(shell, tmp_path):
    shell.shell(f"cd {tmp_path}; marker=set")
    started = time.monotonic()
    result = shell.shell("echo before; sleep 5.4321; echo never", timeout=1)
    elapsed = time.monotonic() - started
    assert 1 <= elapsed < 2.5
    assert result.timed_out and result.exit_code is None
    assert result.output.startswith("before\n")
    assert "never" not in result.output
    assert "did not finish within 1 s" in result.output and "fresh shell" in result.output
    # The command is really gone, not left running.
    assert wait_until(lambda: subprocess.run(["pgrep", "-f", "sleep 5.4321"], capture_output=True).returncode == 1, 3)
    after = shell.shell("echo \"[$marker]\"; pwd")
    assert after.output.startswith("[]\n") and after.exit_code == 0 and not after.timed_out


def test_timeout_limits_are_checked(http):
    for timeout in (0, -1, 601):
        response = http.post("/shell/run", json={"command": "echo hi", "timeout": timeout})
        status, code, message = error_of(response)
        assert (status, code) == (422, "invalid_request") and "timeout" in message


def test_restart_gives_a_fresh_shell(shell):
    shell.shell("restart_marker=1; cd /")
    pid = int(shell.shell("echo $$").output)
    shell.restart_shell()
    assert wait_until(lambda: not process_alive(pid), 3)
    assert shell.shell('echo "[$restart_marker]"').output == "[]\n"
    assert int(shell.shell("echo $$").output) != pid


def test_restart_stops_a_running_command(desktop, shell):
    results = []

    def run_long():
        with DesktopClient(desktop.url, desktop.token) as other:
            results.append((other.shell("echo started; sleep 30", timeout=60), time.monotonic()))

    thread = threading.Thread(target=run_long)
    thread.start()
    time.sleep(1)
    shell.restart_shell()
    thread.join(10)
    assert results, "the running command did not return after the restart"
    result, _ = results[0]
    assert result.output.startswith("started\n") and "restarted" in result.output
    assert result.exit_code is None and not result.timed_out
    assert shell.shell("echo ok").output == "ok\n"


def test_exit_ends_the_shell_and_the_next_command_gets_a_fresh_one(shell):
    shell.shell("kept=no")
    result = shell.shell("echo bye; exit 3")
    assert result.exit_code == 3 and result.output.startswith("bye\n") and "shell exited" in result.output
    assert shell.shell('echo "[$kept]"').output == "[]\n"
    # A background program holding the output open does not keep the answer waiting.
    started = time.monotonic()
    result = shell.shell("sleep 1000.5 & exit 4", timeout=20)
    assert result.exit_code == 4 and not result.timed_out and time.monotonic() - started < 3
    assert wait_until(lambda: subprocess.run(["pgrep", "-f", "sleep 1000.5"], capture_output=True).returncode == 1, 3)


def test_huge_output_is_capped_keeping_head_and_tail(shell):
    started = time.monotonic()
    result = shell.shell("yes | head -c 5000000; echo; echo THE-END", timeout=60)
    assert time.monotonic() - started < 10
    assert result.truncated and result.exit_code == 0
    assert len(result.output) < 100_500
    assert result.output.startswith("y\ny\n") and result.output.endswith("THE-END\n")
    assert "4,900,0" in result.output and "characters of output cut" in result.output


def test_output_just_under_the_cap_is_whole(shell):
    result = shell.shell("head -c 99999 /dev/zero | tr '\\0' x")
    assert not result.truncated and result.output == "x" * 99999


def test_xtrace_shows_only_the_commands(shell):
    result = shell.shell("set -x; echo traced")
    assert "__cubicle" not in result.output and "traced\n" in result.output
    result = shell.shell("echo again; set +x")
    assert "__cubicle" not in result.output and "+ echo again" in result.output
    assert shell.shell("echo quiet").output == "quiet\n"


def test_a_gui_app_started_from_the_shell_appears(shell, client):
    result = shell.shell("galculator >/dev/null 2>&1 & echo $!")
    pid = int(result.output)
    try:
        window = wait_until(lambda: next((w for w in client.windows() if w.wm_class.lower() == "galculator"), None), 30)
        assert window is not None, "galculator's window did not appear"
        assert window.pid == pid
        assert client.close_window(window.id).done
    finally:
        shell.shell(f"kill {pid} 2>/dev/null; wait {pid} 2>/dev/null; true")


def test_empty_and_invalid_commands_are_refused(http):
    for command in ("", "   \n\t"):
        status, code, message = error_of(http.post("/shell/run", json={"command": command}))
        assert (status, code) == (422, "empty_command") and "ls -la" in message
    status, code, _ = error_of(http.post("/shell/run", json={"command": "echo a\u0000b"}))
    assert (status, code) == (422, "invalid_command")
    status, code, message = error_of(http.post("/shell/run", json={"command": "x" * 100_001}))
    assert (status, code) == (422, "invalid_request") and "command" in message
    status, code, message = error_of(http.post("/shell/run", json={"cmd": "ls"}))
    assert status == 422 and "cmd: unknown field" in message


def test_refused_commands_do_not_run(http, tmp_path):
    marker = tmp_path / "ran"
    http.post("/shell/run", json={"command": f"touch {marker}", "timeout": 0})
    http.post("/shell/run", json={"command": f"touch {marker}", "extra": 1})
    assert not marker.exists()


# -- files: reading -------------------------------------------------------------------------


def test_write_then_read_round_trip_with_unicode(client, tmp_path):
    path = tmp_path / "notes.txt"
    text = "héllo 世界 😀\nline two\r\n\ttabbed\n"
    written = client.write_file(str(path), text)
    assert written.path == str(path) and written.size == len(text.encode())
    assert path.read_bytes() == text.encode()
    found = client.read_file(str(path))
    assert (found.type, found.path, found.size, found.content) == ("file", str(path), len(text.encode()), text)


def test_read_answers_only_the_fields_of_its_kind(http, tmp_path):
    (tmp_path / "a.txt").write_text("a")
    as_file = http.get("/files", params={"path": str(tmp_path / "a.txt")}).json()
    assert set(as_file) == {"path", "type", "size", "content"}
    as_folder = http.get("/files", params={"path": str(tmp_path)}).json()
    assert set(as_folder) == {"path", "type", "entries", "total", "truncated"}
    assert as_folder["entries"] == [{"name": "a.txt", "type": "file", "size": 1}]


def test_directory_listing_is_sorted_with_hidden_entries_last(client, tmp_path):
    (tmp_path / "b.txt").write_text("bb")
    (tmp_path / "a-folder").mkdir()
    (tmp_path / ".hidden").write_text("h")
    (tmp_path / "C.txt").write_text("")
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "link-to-folder").symlink_to(tmp_path / "a-folder")
    (tmp_path / "broken-link").symlink_to(tmp_path / "nowhere")
    listing = client.read_file(str(tmp_path))
    assert listing.type == "directory" and listing.total == 7 and listing.truncated is False
    assert [(e.name, e.type, e.size) for e in listing.entries] == [
        ("C.txt", "file", 0), ("a-folder", "directory", None), ("b.txt", "file", 2),
        ("broken-link", "other", None), ("link-to-folder", "directory", None), ("pipe", "other", None),
        (".hidden", "file", 1),
    ]


def test_big_directories_are_capped(client, tmp_path):
    for number in range(MAX_DIRECTORY_ENTRIES + 5):
        (tmp_path / f"f{number:05d}").touch()
    listing = client.read_file(str(tmp_path))
    assert len(listing.entries) == MAX_DIRECTORY_ENTRIES
    assert listing.total == MAX_DIRECTORY_ENTRIES + 5 and listing.truncated is True
    assert listing.entries[0].name == "f00000"


def test_paths_are_normalised(client, tmp_path):
    (tmp_path / "x.txt").write_text("normal")
    found = client.read_file(f"{tmp_path}/sub/.././/x.txt")
    assert found.path == str(tmp_path / "x.txt") and found.content == "normal"
    # Traversal is just a path: without a root folder, the desktop user's permissions decide.
    passwd = client.read_file("/tmp/x/../../etc/passwd")
    assert passwd.path == "/etc/passwd" and "root:" in passwd.content
    assert client.read_file("//etc//hostname").path == "/etc/hostname"


@pytest.mark.parametrize("path", ["notes.txt", "./notes.txt", "~/notes.txt", ""])
def test_relative_paths_are_refused(http, path):
    status, code, message = error_of(http.get("/files", params={"path": path}))
    assert (status, code) == (422, "path_not_absolute") and "absolute" in message
    status, code, _ = error_of(http.put("/files", json={"path": path, "content": "x"}))
    assert (status, code) == (422, "path_not_absolute")


def test_missing_files_are_404_naming_the_path(http, tmp_path):
    missing = tmp_path / "nope.txt"
    status, code, message = error_of(http.get("/files", params={"path": str(missing)}))
    assert (status, code) == (404, "file_not_found") and str(missing) in message and str(tmp_path) in message
    (tmp_path / "file").write_text("x")
    status, code, message = error_of(http.get("/files", params={"path": str(tmp_path / "file" / "below")}))
    assert (status, code) == (404, "file_not_found") and "is a file, not a folder" in message


def test_binary_files_are_refused_with_their_size(http, tmp_path):
    for name, data in (("latin1.txt", "café".encode("latin-1")), ("nul.txt", b"abc\0def"), ("png", b"\x89PNG\r\n\x1a\n" + bytes(100))):
        (tmp_path / name).write_bytes(data)
        status, code, message = error_of(http.get("/files", params={"path": str(tmp_path / name)}))
        assert (status, code) == (422, "not_text"), name
        assert f"{len(data):,} bytes" in message


def test_files_over_the_read_limit_are_refused(http, tmp_path):
    big = tmp_path / "big.log"
    with open(big, "wb") as handle:
        handle.truncate(MAX_READ_BYTES + 1)  # sparse: no need to write 10 MiB
    status, code, message = error_of(http.get("/files", params={"path": str(big)}))
    assert (status, code) == (422, "file_too_large") and f"{MAX_READ_BYTES + 1:,} bytes" in message and "head" in message


def test_devices_and_pipes_are_not_read(http, tmp_path):
    os.mkfifo(tmp_path / "pipe")
    for path in ("/dev/zero", str(tmp_path / "pipe")):
        started = time.monotonic()
        status, code, _ = error_of(http.get("/files", params={"path": path}))
        assert (status, code) == (422, "not_a_regular_file") and time.monotonic() - started < 2


# -- files: writing -------------------------------------------------------------------------


def test_write_replaces_atomically_and_keeps_the_mode(client, tmp_path):
    path = tmp_path / "script.sh"
    path.write_text("old")
    path.chmod(0o750)
    inode = path.stat().st_ino
    client.write_file(str(path), "#!/bin/sh\necho new\n")
    assert path.read_text() == "#!/bin/sh\necho new\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o750
    assert path.stat().st_ino != inode  # a new file took the old one's place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["script.sh"]  # no temporary left


def test_new_files_get_the_mode_any_new_file_gets(shell, tmp_path):
    shell.write_file(str(tmp_path / "new.txt"), "x")
    shell.shell(f"touch {tmp_path}/touched.txt")  # the same user and umask as the server
    assert stat.S_IMODE((tmp_path / "new.txt").stat().st_mode) == stat.S_IMODE((tmp_path / "touched.txt").stat().st_mode)


def test_write_through_a_symlink_updates_its_target(client, tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    written = client.write_file(str(link), "new")
    assert written.path == str(link)
    assert link.is_symlink() and target.read_text() == "new"


def test_create_dirs(client, tmp_path):
    path = tmp_path / "a" / "b" / "c.txt"
    with pytest.raises(CubicleError) as refused:
        client.write_file(str(path), "x")
    assert (refused.value.status, refused.value.code) == (404, "parent_not_found")
    assert "create_dirs" in refused.value.message
    assert not (tmp_path / "a").exists()  # nothing was made
    client.write_file(str(path), "x", create_dirs=True)
    assert path.read_text() == "x"


def test_writing_where_a_folder_is_or_below_a_file_is_refused(http, tmp_path):
    (tmp_path / "folder").mkdir()
    status, code, message = error_of(http.put("/files", json={"path": str(tmp_path / "folder"), "content": "x"}))
    assert (status, code) == (422, "is_a_directory") and "folder" in message
    (tmp_path / "file").write_text("keep")
    for create_dirs in (False, True):
        status, code, message = error_of(http.put(
            "/files", json={"path": str(tmp_path / "file" / "deeper" / "x.txt"), "content": "x", "create_dirs": create_dirs},
        ))
        assert (status, code) == (422, "not_a_directory") and str(tmp_path / "file") in message
    assert (tmp_path / "file").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "folder"]


def test_refused_writes_change_nothing(http, desktop, tmp_path):
    path = tmp_path / "kept.txt"
    path.write_text("original")
    too_long = "x" * 2_000_001  # over the content limit, under the 2 MiB body limit
    status, code, message = error_of(http.put("/files", json={"path": str(path), "content": too_long}))
    assert (status, code) == (422, "invalid_request") and "content" in message
    status, code, _ = error_of(http.put("/files", json={"path": str(path), "content": "é" * 1_100_000}))
    assert (status, code) == (413, "body_too_large")  # the 2 MiB body limit comes first
    status, code, _ = error_of(http.put("/files", json={"path": str(path), "content": "new", "mode": 644}))
    assert (status, code) == (422, "invalid_request")
    status, code, _ = error_of(http.put("/files", json={"path": str(path)}))
    assert (status, code) == (422, "invalid_request")
    assert path.read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.txt"]


# -- confinement, permissions and shutdown: a second server as an unprivileged user ---------


def test_confinement_check():
    assert is_inside("/srv/files", "/srv/files") and is_inside("/srv/files/a/b", "/srv/files")
    assert not is_inside("/srv/files-other", "/srv/files") and not is_inside("/srv", "/srv/files")
    assert is_inside("/anything", "/")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder).resolve() / "root"
        root.mkdir()
        (root / "escape").symlink_to("/etc")
        access = FileAccess(str(root))
        assert access.check_path(f"{root}/a/../b.txt") == f"{root}/b.txt"
        for outside in (f"{root}/../x", "/etc/passwd", f"{root}/escape/passwd", f"{root}-sibling/x"):
            with pytest.raises(ApiError) as refused:
                access.check_path(outside)
            assert (refused.value.status, refused.value.code) == (403, "outside_root"), outside
        assert FileAccess(None).check_path("/etc/../etc/passwd") == "/etc/passwd"


@pytest.fixture(scope="module")
def confined(desktop, tmp_path_factory):
    """`cubicle serve` for the same display, as user nobody when the tests run as root (so
    that permissions apply), with CUBICLE_FILES_ROOT set to a fresh folder."""
    root = Path(tempfile.mkdtemp(prefix="cubicle-files-root-")).resolve()
    root.chmod(0o777)
    port = free_port()
    env = dict(os.environ, CUBICLE_TOKEN=desktop.token, CUBICLE_FILES_ROOT=str(root), HOME=str(root))
    command = [sys.executable, "-m", "cubicle", "serve", "--display", desktop.display, "--port", str(port),
               "--vnc-port", str(desktop.vnc_port)]
    if os.geteuid() == 0:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    log = open(tmp_path_factory.mktemp("confined-server") / "server.log", "wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def answering():
            try:
                return httpx.get(url + "/health", timeout=1).status_code in (200, 503)
            except httpx.HTTPError:
                return False

        assert wait_until(answering, 30), f"the second server did not start (see {log.name})"
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {desktop.token}"}, timeout=30) as api:
            yield root, api, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def test_confined_server_refuses_paths_outside_its_root(confined):
    root, api, _ = confined
    (root / "inside.txt").write_text("in")
    (root / "escape").symlink_to("/etc")
    answer = api.get("/files", params={"path": str(root / "inside.txt")})
    assert answer.status_code == 200 and answer.json()["content"] == "in"
    for path in ("/etc/hostname", f"{root}/../etc/hostname", f"{root}/escape/hostname"):
        status, code, message = error_of(api.get("/files", params={"path": path}))
        assert (status, code) == (403, "outside_root") and str(root) in message, path
    outside = root.parent / f"{root.name}-outside.txt"
    status, code, _ = error_of(api.put("/files", json={"path": str(outside), "content": "x"}))
    assert (status, code) == (403, "outside_root")
    status, code, _ = error_of(api.put("/files", json={"path": f"{root}/escape/new.conf", "content": "x", "create_dirs": True}))
    assert (status, code) == (403, "outside_root")
    assert not outside.exists() and not Path("/etc/new.conf").exists()
    written = api.put("/files", json={"path": f"{root}/made/here.txt", "content": "ok", "create_dirs": True})
    assert written.status_code == 200 and (root / "made" / "here.txt").read_text() == "ok"


def test_permission_denied(confined):
    root, api, _ = confined
    secret = root / "secret.txt"
    secret.write_text("hidden")
    secret.chmod(0o000)
    status, code, message = error_of(api.get("/files", params={"path": str(secret)}))
    assert (status, code) == (403, "permission_denied") and str(secret) in message
    closed = root / "closed"
    closed.mkdir()
    closed.chmod(0o555)
    status, code, message = error_of(api.put("/files", json={"path": str(closed / "new.txt"), "content": "x"}))
    assert (status, code) == (403, "permission_denied") and "Permission denied" in message
    assert list(closed.iterdir()) == []
    status, code, _ = error_of(api.put("/files", json={"path": str(closed / "sub" / "new.txt"), "content": "x", "create_dirs": True}))
    assert (status, code) == (403, "permission_denied")
    assert list(closed.iterdir()) == []


def test_the_shell_runs_as_the_servers_user(confined):
    root, api, _process = confined
    result = api.post("/shell/run", json={"command": "id -u; pwd"}).json()
    assert result["output"] == f"{65534 if os.geteuid() == 0 else os.geteuid()}\n{root}\n"


def test_the_shell_dies_with_the_server(confined):
    _, api, process = confined
    result = api.post("/shell/run", json={"command": "sleep 1000 & echo $$ $!"}).json()
    shell_pid, child_pid = (int(pid) for pid in result["output"].split())
    assert process_alive(shell_pid) and process_alive(child_pid)
    process.send_signal(signal.SIGTERM)
    process.wait(15)
    assert wait_until(lambda: not process_alive(shell_pid) and not process_alive(child_pid), 5)
