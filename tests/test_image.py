"""The container images, built from this checkout and run for real.

The images are built with buildah, which needs no daemon, on a Debian 12 base made with
debootstrap (kept between runs as localhost/debian:bookworm-slim). Containers run with
`buildah run --isolation chroot`: in the host's network and process namespaces, so the test
reaches their servers on 127.0.0.1, and it picks ports and an X display number that are free
on the host. It runs each image's own entrypoint or command, as the image's own user.

Building both images from a cold start takes a few minutes; the fixtures are module-scoped, so
that happens once per run. The built images are removed at the end; the base is kept.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from conftest import free_port, wait_healthy
from cubicle.agent.scripted_api import ScriptedAPI, last_image, message, text, tool_use
from cubicle.client import DesktopClient
from cubicle.session import display_in_use

ROOT = Path(__file__).resolve().parent.parent
BUILDAH = ["buildah", "--storage-driver", "vfs"]
BASE_IMAGE = "localhost/debian:bookworm-slim"
MODEL = "claude-haiku-4-5"
BUILD_TIMEOUT = 1800
STOP_TIMEOUT = 30.0

# Building takes minutes, and happens in the first test that needs an image.
pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 600)


def buildah(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([*BUILDAH, *args], capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def image_exists(name: str) -> bool:
    return buildah("inspect", "--type", "image", name, check=False).returncode == 0


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses: the base image is made from it."""
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.is_file():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file():
        for line in legacy.read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and "security" not in words[1]:
                return words[1]
    return "http://deb.debian.org/debian"


# What Debian's "-slim" images leave out, so that the sizes measured here are those users get.
SLIM_EXCLUDES = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
"""


def make_base_image(workdir: Path) -> None:
    """A minimal Debian 12 image, the same as debian:bookworm-slim in every way that matters to
    the Dockerfile, made with debootstrap and imported into buildah's storage."""
    rootfs = workdir / "rootfs"
    done = subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(rootfs), debian_mirror()],
        capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, f"debootstrap failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    (rootfs / "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM_EXCLUDES)
    for leftover in ("var/lib/apt/lists", "var/cache/apt"):
        shutil.rmtree(rootfs / leftover, ignore_errors=True)
    archive = workdir / "rootfs.tar"
    subprocess.run(["tar", "-C", str(rootfs), "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*",
                    "-cf", str(archive), "."], check=True, timeout=300)
    shutil.rmtree(rootfs)
    container = buildah("from", "scratch").stdout.strip()
    try:
        buildah("add", container, str(archive), "/", timeout=600)
        buildah("config", "--cmd", "/bin/bash", container)
        buildah("commit", "--quiet", container, BASE_IMAGE, timeout=600)
    finally:
        buildah("rm", container, check=False)
        archive.unlink()


def build(target: str, tag: str, log: Path) -> float:
    """Builds one target of the Dockerfile; returns the seconds it took."""
    command = [*BUILDAH, "bud", "--isolation", "chroot", "--format", "docker", "--target", target,
               # vfs keeps every cached layer as a whole copy of the file system: no caching.
               "--layers=false", "--pull=never", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}", "-t", tag]
    host_certs = Path("/etc/ssl/certs/ca-certificates.crt")
    if host_certs.is_file():
        # pip in the build trusts what this machine trusts (an intercepting proxy, say).
        command += ["-v", f"{host_certs.parent}:/run/host-certs:ro",
                    "--build-arg", f"PIP_CERT=/run/host-certs/{host_certs.name}"]
    started = time.monotonic()
    with open(log, "wb") as output:
        done = subprocess.run([*command, str(ROOT)], stdout=output, stderr=subprocess.STDOUT, timeout=BUILD_TIMEOUT)
    if done.returncode != 0:
        raise AssertionError(f"building target {target} failed; the end of {log}:\n{log.read_text()[-5000:]}")
    return time.monotonic() - started


def image_config(tag: str) -> dict:
    """The image's configuration as Docker sees it (User, Env, Entrypoint, Cmd, Healthcheck)."""
    return json.loads(buildah("inspect", "--type", "image", tag).stdout)["Docker"]["config"]


@dataclass
class Images:
    desktop: str
    agent: str
    build_seconds: dict[str, float]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("image")
    if not image_exists(BASE_IMAGE):
        make_base_image(workdir)
    suffix = uuid.uuid4().hex[:8]  # several test runs on one machine each build their own
    built = Images(f"localhost/cubicle-desktop:test-{suffix}", f"localhost/cubicle-agent:test-{suffix}", {})
    try:
        for target, tag in (("desktop", built.desktop), ("agent", built.agent)):
            built.build_seconds[target] = build(target, tag, workdir / f"build-{target}.log")
        print(f"\nimage builds: {built.build_seconds}")
        yield built
    finally:
        for tag in (built.desktop, built.agent):
            buildah("rmi", "--force", tag, check=False)


# -- running a container -----------------------------------------------------------------------


class Container:
    """A working container of an image and the one command running in it (`buildah run`)."""

    def __init__(self, image: str, workdir: Path):
        self.image = image
        self.name = buildah("from", "--pull=never", image).stdout.strip()
        self.root_id = self._root_id()
        self.log = workdir / f"{self.name}.log"
        self.process: subprocess.Popen | None = None

    def _root_id(self) -> tuple[int, int]:
        mount = buildah("mount", self.name).stdout.strip()
        status = os.stat(mount)
        return status.st_dev, status.st_ino

    def start(self, argv: list[str], env: dict[str, str]) -> None:
        settings = [item for name, value in env.items() for item in ("-e", f"{name}={value}")]
        self.process = subprocess.Popen(
            [*BUILDAH, "run", "--isolation", "chroot", *settings, self.name, "--", *argv],
            stdin=subprocess.DEVNULL, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,  # one process group to stop
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def run(self, *argv: str, user: str | None = None) -> subprocess.CompletedProcess:
        """Another command in the same container, to completion."""
        extra = ["--user", user] if user else []
        return subprocess.run([*BUILDAH, "run", "--isolation", "chroot", *extra, self.name, "--", *argv],
                              capture_output=True, text=True, timeout=60)

    def processes(self) -> list[dict]:
        """Every process whose root directory is this container's file system."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                status = os.stat(f"/proc/{entry}/root")
                uid = os.stat(f"/proc/{entry}").st_uid
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # gone, or a kernel thread
            if (status.st_dev, status.st_ino) == self.root_id:
                found.append({"pid": int(entry), "uid": uid, "command": command.strip()})
        return found

    def stop(self) -> None:
        """Stops the command's process group, then anything else still running in the container."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(STOP_TIMEOUT)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        # supervisord and the apps run in a session of their own, out of that group.
        deadline = time.monotonic() + 10
        while (leftovers := self.processes()) and time.monotonic() < deadline:
            for process in leftovers:
                try:
                    os.kill(process["pid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)

    def remove(self) -> None:
        self.stop()
        buildah("umount", self.name, check=False)
        buildah("rm", self.name, check=False)


def free_display() -> int:
    """A display number no X server on this host uses: X's abstract sockets live in the network
    namespace, which the container shares. Far above the numbers the other tests use."""
    for number in range(500, 1000):
        if display_in_use(number) is None and not os.path.exists(f"/tmp/.X11-unix/X{number}"):
            return number
    raise RuntimeError("no free X display number between 500 and 1000")


@dataclass
class RunningDesktop:
    container: Container
    url: str
    token: str


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("containers")


@pytest.fixture(scope="module")
def desktop(images, workdir):
    """The desktop image's entrypoint, run as the image says (its user, its entrypoint), with
    the port and display chosen through the environment."""
    container = Container(images.desktop, workdir)
    try:
        port, vnc_port = free_port(), free_port()
        token = "image-test-" + uuid.uuid4().hex
        config = image_config(images.desktop)
        # The image listens on all addresses; here, where the host's network is shared, only on
        # localhost (a later --host wins).
        container.start(config["Entrypoint"] + ["--host", "127.0.0.1"], {
            "CUBICLE_TOKEN": token, "CUBICLE_PORT": str(port), "VNC_PORT": str(vnc_port),
            "CUBICLE_DISPLAY": str(free_display()),
        })
        running = RunningDesktop(container, f"http://127.0.0.1:{port}", token)
        try:
            wait_healthy(running.url, timeout=90)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{container.output()}") from None
        yield running
    finally:
        container.remove()


@pytest.fixture(scope="module")
def client(desktop):
    with DesktopClient(desktop.url, desktop.token, timeout=60) as api:
        yield api


def shows_panel(image: Image.Image) -> bool:
    """The panel (tint2, 32 pixels high, at the bottom) differs from the plain background above
    it, and has launcher icons on it: not a blank frame."""
    rgb = image.convert("RGB")
    width, height = rgb.size
    background = rgb.getpixel((width // 2, height // 2))
    panel = rgb.crop((0, height - 32, width, height))
    panel_colours = panel.getcolors(maxcolors=1 << 16) or []
    differs = sum(count for count, colour in panel_colours if colour != background) > 0.9 * width * 32
    return differs and len(panel_colours) > 20


# -- the desktop image ------------------------------------------------------------------------


def test_the_desktop_image_runs_as_cubicle_with_a_healthcheck(images):
    config = image_config(images.desktop)
    assert config["User"] == "cubicle"
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD" and "/health" in " ".join(config["Healthcheck"]["Test"])
    agent = image_config(images.agent)
    assert agent["User"] == "cubicle" and "8001/tcp" in agent["ExposedPorts"]
    assert agent["Cmd"][:3] == ["cubicle", "agent", "serve"]


def test_the_desktop_becomes_healthy_and_its_own_healthcheck_passes(desktop, client):
    assert client.health().status == "ok"
    # The image's HEALTHCHECK command, run inside the container as Docker would run it.
    check = image_config(desktop.container.image)["Healthcheck"]["Test"][1:]
    done = desktop.container.run("env", f"CUBICLE_PORT={desktop.url.rsplit(':', 1)[1]}", *check)
    assert done.returncode == 0, done.stderr


def test_a_screenshot_through_the_api_shows_the_panel(desktop):
    response = httpx.get(desktop.url + "/screenshot", headers={"Authorization": f"Bearer {desktop.token}"}, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    screen = Image.open(io.BytesIO(response.content))
    assert screen.size == (1280, 800)
    # The panel comes up a moment after the window manager; give it that moment.
    deadline = time.monotonic() + 20
    while not shows_panel(screen) and time.monotonic() < deadline:
        time.sleep(0.5)
        screen = Image.open(io.BytesIO(httpx.get(desktop.url + "/screenshot", timeout=30,
                                                 headers={"Authorization": f"Bearer {desktop.token}"}).content))
    assert shows_panel(screen), "the screenshot does not show the panel"
    assert httpx.get(desktop.url + "/screenshot", timeout=10).status_code == 401


def test_an_app_launched_through_the_api_opens_its_window(client):
    launched = client.launch("xterm", timeout=30)
    assert launched.window is not None and launched.window.wm_class == "XTerm"
    assert launched.window.id in [window.id for window in client.windows()]
    assert client.close_window(launched.window.id).done


def test_office_and_browser_start_without_first_run_pages(client):
    writer = client.launch(["libreoffice", "--writer"], timeout=60)
    firefox = client.launch("firefox-esr", timeout=60)
    assert writer.window is not None and firefox.window is not None

    def titles() -> list[str]:
        return [window.title for window in client.windows()]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = titles()
        if any("LibreOffice Writer" in title for title in shown) and "Mozilla Firefox" in shown:
            break
        time.sleep(0.3)
    time.sleep(5)  # the tip of the day and Firefox's welcome page would come now
    shown = titles()
    assert any("LibreOffice Writer" in title for title in shown), shown
    assert "Mozilla Firefox" in shown, shown  # a new tab: not "Welcome to Firefox"
    assert not any("Tip of the Day" in title for title in shown), shown
    for window in client.windows():
        if window.wm_class in ("libreoffice-writer", "firefox-esr"):
            client.close_window(window.id)


def test_no_program_of_the_desktop_runs_as_root(desktop, client):
    editor = client.launch("mousepad", timeout=30)
    try:
        programs = desktop.container.processes()
        commands = " ".join(process["command"] for process in programs)
        for name in ("supervisord", "Xvfb", "openbox", "tint2", "x11vnc", "cubicle serve", "mousepad"):
            assert name in commands, f"{name} is not running in the container: {programs}"
        assert [process for process in programs if process["uid"] == 0] == []
        # The API's shell (the agent's bash tool) is that user too, and has no sudo to leave it.
        assert client.shell("id -un; command -v sudo || echo no-sudo").output.split() == ["cubicle", "no-sudo"]
    finally:
        if editor.window is not None:
            client.close_window(editor.window.id)


def test_the_viewer_and_the_docs_are_served_and_the_bridge_reaches_vnc(desktop):
    for path in ("/view", "/view/novnc/core/rfb.js", "/docs"):
        response = httpx.get(desktop.url + path, timeout=30)
        assert response.status_code == 200, (path, response.status_code)
    # The token in the first message, then x11vnc's greeting comes through the bridge.
    with connect(desktop.url.replace("http://", "ws://") + "/vnc", open_timeout=10) as socket:
        socket.send(json.dumps({"token": desktop.token}))
        assert socket.recv(timeout=10)[:12] == b"RFB 003.008\n"


# -- the agent image --------------------------------------------------------------------------


def test_the_agent_image_has_no_x(images, workdir):
    container = Container(images.agent, workdir)
    try:
        done = container.run("python3", "-c", "import cubicle.agent.service, anthropic")
        assert done.returncode == 0, done.stderr
        missing = container.run("dpkg-query", "-W", "libx11-6", "xvfb")
        assert missing.returncode != 0 and "no packages found matching libx11-6" in missing.stderr
    finally:
        container.remove()


def test_the_agent_image_serves_runs_on_the_desktop_image(images, desktop, workdir):
    """`cubicle agent serve` from the agent image, pointed at the desktop container, carries
    out a run: the scripted model asks for a screenshot and a shell command, and ends."""
    seen: dict = {}

    def screenshot_turn(request):
        return message(tool_use("computer", {"action": "screenshot"}))

    def bash_turn(request):
        seen["screenshot"] = last_image(request)
        return message(tool_use("bash", {"command": "id -un"}))

    api = ScriptedAPI([screenshot_turn, bash_turn, lambda request: message(text("Done."))])
    container = Container(images.agent, workdir)
    try:
        port, worker_token = free_port(), "worker-" + uuid.uuid4().hex
        config = image_config(images.agent)
        container.start(config["Cmd"] + ["--host", "127.0.0.1", "--port", str(port)], {
            "CUBICLE_DESKTOP_URL": desktop.url, "CUBICLE_TOKEN": desktop.token,
            "CUBICLE_WORKER_TOKEN": worker_token, "ANTHROPIC_API_KEY": "sk-ant-image-test",
            "ANTHROPIC_BASE_URL": api.url,
        })
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, timeout=60)
        except AssertionError as error:
            raise AssertionError(f"{error}\n{container.output()}") from None
        assert [p for p in container.processes() if p["uid"] == 0] == []
        # The console and its live view's noVNC are served from the image.
        console = httpx.get(url + "/", timeout=10)
        assert console.status_code == 200 and "cubicle console" in console.text
        assert httpx.get(url + "/console/novnc/core/rfb.js", timeout=10).status_code == 200
        assert container.run("test", "-f", "/usr/share/novnc/core/input/keysymdef.js").returncode == 0

        headers = {"Authorization": f"Bearer {worker_token}"}
        created = httpx.post(url + "/runs", json={"task": "Look at the screen.", "model": MODEL}, headers=headers, timeout=60)
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        deadline = time.monotonic() + 60
        while (shown := httpx.get(f"{url}/runs/{run_id}", headers=headers, timeout=30).json())["active"]:
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        assert api.failure is None, api.failure
        assert shown["status"] == "finished", shown
        results = [event for event in shown["events"] if event["type"] == "result"]
        assert [event["is_error"] for event in results] == [False, False], results
        assert results[0]["image"], "the screenshot step saved no image"
        assert results[1]["text"].strip() == "cubicle"
        assert shows_panel(seen["screenshot"]), "the model was not sent the desktop's screen"
    finally:
        container.remove()
        api.close()


def test_the_desktop_stops_when_its_first_process_is_told_to(desktop):
    """What `docker stop` does: SIGTERM to the entrypoint's process (PID 1 in a container) and
    nothing else; the desktop and every app must end with it."""
    programs = desktop.container.processes()
    first = [p for p in programs if "cubicle desktop" in p["command"]]
    assert len(first) == 1, programs
    os.kill(first[0]["pid"], signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while (left := desktop.container.processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], left
