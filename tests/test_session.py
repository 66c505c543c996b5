"""`cubicle desktop` as a whole: what it runs, how it survives crashes, how it stops.

Uses a desktop of its own, since it kills parts of it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from support import running_desktop, wait_until


@pytest.fixture(scope="module")
def own_desktop(tmp_path_factory):
    with running_desktop(tmp_path_factory.mktemp("own-desktop")) as running:
        yield running


def program_pid(desktop, name: str, timeout: float = 30.0) -> int:
    """The program's pid once supervisord has it running: /health does not wait for the panel,
    and a program being restarted has none for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        out = desktop.supervisorctl("pid", name).strip()
        if out.isdigit() and int(out) > 0:
            return int(out)
        assert time.monotonic() < deadline, f"{name} is not running: {out}"
        time.sleep(0.2)


def get(desktop, path, **kwargs):
    return httpx.get(desktop.url + path, headers={"Authorization": f"Bearer {desktop.token}"}, timeout=10, **kwargs)



def test_every_program_runs_under_supervisord(own_desktop):
    def all_running():
        lines = own_desktop.supervisorctl("status").splitlines()
        return all(any(line.startswith(name) and "RUNNING" in line for line in lines)
                   for name in ("xvfb", "openbox", "tint2", "x11vnc", "server"))

    wait_until(all_running, 15, "every program RUNNING")


def test_vnc_listens_on_localhost_only(own_desktop):
    sockets = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout
    lines = [line for line in sockets.splitlines() if f":{own_desktop.vnc_port} " in line]
    assert lines, sockets
    assert all("127.0.0.1:" in line or "[::1]:" in line for line in lines), lines


def test_a_dead_window_manager_is_restarted(own_desktop):
    before = program_pid(own_desktop, "openbox")
    os.kill(before, signal.SIGKILL)
    wait_until(lambda: own_desktop.supervisorctl("pid", "openbox").strip() not in ("", "0", str(before)), 15, "openbox restarted")
    wait_until(lambda: httpx.get(own_desktop.url + "/health").json()["window_manager"], 15, "health sees the WM again")


def test_requests_get_a_clear_503_while_x_is_down(own_desktop):
    own_desktop.supervisorctl("stop", "xvfb")
    try:
        started = time.monotonic()
        down = get(own_desktop, "/screenshot")
        assert time.monotonic() - started < 1.0
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "display_unavailable"
        assert "Retry in a few seconds" in down.json()["error"]["message"]
        health = httpx.get(own_desktop.url + "/health")
        assert health.status_code == 503 and health.json()["x"] is False
    finally:
        own_desktop.supervisorctl("start", "xvfb")
    wait_until(lambda: get(own_desktop, "/screen").status_code == 200, 20, "X back")


def test_the_server_survives_an_x_crash_and_reconnects_by_itself(own_desktop):
    server = program_pid(own_desktop, "server")
    assert get(own_desktop, "/screen").status_code == 200
    os.kill(program_pid(own_desktop, "xvfb"), signal.SIGKILL)
    # supervisord restarts Xvfb; the same server process serves screenshots again.
    wait_until(lambda: get(own_desktop, "/screenshot").status_code == 200, 20, "screenshots after the X restart")
    assert program_pid(own_desktop, "server") == server
    wait_until(lambda: httpx.get(own_desktop.url + "/health").status_code == 200, 20, "healthy again")
    wait_until(lambda: len(Image.open(io.BytesIO(get(own_desktop, "/screenshot").content)).convert("RGB")
                           .crop((0, 768, 1280, 800)).getcolors(100_000)) > 50, 20, "the panel is back")
    # Input works on the new X server too.
    response = httpx.post(own_desktop.url + "/actions", json={"action": "mouse_move", "coordinate": [100, 100]},
                          headers={"Authorization": f"Bearer {own_desktop.token}"})
    assert response.status_code == 200
    assert get(own_desktop, "/cursor").json() == {"x": 100, "y": 100}


@pytest.mark.desktop  # a desktop of its own, stopped
def test_stopping_the_desktop_stops_everything(tmp_path):
    with running_desktop(tmp_path) as desktop:
        pids = [program_pid(desktop, name) for name in ("xvfb", "openbox", "tint2", "x11vnc", "server")]
        launched = httpx.post(desktop.url + "/apps/launch", json={"command": "xterm"},
                              headers={"Authorization": f"Bearer {desktop.token}"}, timeout=40).json()
        pids.append(launched["pid"])
    time.sleep(1)
    alive = [pid for pid in pids if os.path.exists(f"/proc/{pid}") and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]
    assert alive == []


def test_the_token_is_not_in_the_environment_of_the_desktop_programs(own_desktop, tmp_path):
    dump = tmp_path / "env.txt"
    launched = httpx.post(own_desktop.url + "/apps/launch",
                          json={"command": ["sh", "-c", f"env > {dump}"], "wait_for_window": False},
                          headers={"Authorization": f"Bearer {own_desktop.token}"}, timeout=30)
    assert launched.status_code == 200
    wait_until(lambda: dump.exists() and dump.stat().st_size > 0, 10, "the launched program wrote its environment")
    assert own_desktop.token not in dump.read_text()
    for name in ("openbox", "tint2", "x11vnc", "server"):
        environ = Path(f"/proc/{program_pid(own_desktop, name)}/environ").read_bytes()
        assert own_desktop.token.encode() not in environ, name


def test_every_program_is_retried_when_it_dies_at_start():
    # supervisord gives up on a program after `startretries` quick deaths (3 by default):
    # X that dies three times in a row at start must still come back.
    import configparser

    conf = configparser.ConfigParser(interpolation=None)
    conf.read(Path(__file__).resolve().parent.parent / "desktop" / "supervisord.conf")
    programs = [section for section in conf.sections() if section.startswith("program:")]
    assert {"program:xvfb", "program:openbox", "program:x11vnc", "program:server"} <= set(programs)
    for section in programs:
        assert conf.getint(section, "startretries", fallback=3) >= 10, section
