"""The README's `docker compose up`, run for real on the Docker engine: both images built from
this checkout, a fresh .env made by scripts/make-env, a scripted Messages API beside the
stack (the only stand-in: the model API cannot be reached from here), and everything checked as
a user and as a program on the desktop would see it.

The stack is a compose project of its own (its own name, free host ports, its own volumes),
with one small override file: the worker's ANTHROPIC_BASE_URL pointing at the scripted API on
the Docker bridge's address. It is taken down with its volumes at the end.
"""

from __future__ import annotations

import io
import ipaddress
import json
import re
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
from PIL import Image
from websockets.sync.client import connect

from cubicle.agent.scripted_api import ScriptedAPI, last_image, message, text, tool_use
from cubicle.client import DesktopClient
from engines import compose_environment, docker_client
from support import ROOT, free_port, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.image, pytest.mark.timeout(2400)]
MODEL = "claude-haiku-4-5"


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


def bridge_address() -> str:
    """The host's address on Docker's default bridge (docker0): containers reach it as
    host-gateway. Docker's own record of the bridge leaves the gateway out."""
    subnet = docker_client().networks.get("bridge").attrs["IPAM"]["Config"][0]["Subnet"]
    return str(next(ipaddress.ip_network(subnet).hosts()))


@dataclass
class Stack:
    project: str
    env_file: Path
    override: Path
    settings: dict[str, str]
    api: ScriptedAPI

    def compose(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        command = ["docker", "compose", "-p", self.project, "--project-directory", str(ROOT),
                   "-f", str(ROOT / "docker-compose.yml"), "-f", str(self.override), "--env-file", str(self.env_file)]
        environment = {k: v for k, v in compose_environment().items() if not k.startswith("CUBICLE_") or k == "CUBICLE_PIP_CERT"}
        done = subprocess.run(command + list(args), capture_output=True, text=True, timeout=timeout, env=environment, cwd=ROOT)
        assert done.returncode == 0, f"docker compose {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
        return done

    def container(self, service: str):
        return docker_client().containers.get(f"{self.project}-{service}-1")

    @property
    def desktop_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['DESKTOP_PORT']}"

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.settings['AGENT_PORT']}"

    def worker(self, method: str, path: str, token: str | None = None, **options) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.settings['CUBICLE_WORKER_TOKEN']}"}
        return httpx.request(method, self.worker_url + path, headers=headers, timeout=60, **options)

    def desktop(self) -> DesktopClient:
        return DesktopClient(self.desktop_url, self.settings["CUBICLE_TOKEN"], timeout=120)


def read_settings(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("compose")
    env_file = workdir / ".env"
    subprocess.run([str(ROOT / "scripts/make-env"), str(env_file)], check=True, capture_output=True, timeout=30)
    settings = read_settings(env_file)
    settings.update(DESKTOP_PORT=str(free_port()), AGENT_PORT=str(free_port()), FLEET_PORT=str(free_port()),
                    ANTHROPIC_API_KEY="sk-ant-image-" + secrets.token_hex(12))
    env_file.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    api = ScriptedAPI([], host=bridge_address())
    override = workdir / "scripted-api.yml"
    override.write_text(json.dumps({"services": {"agent": {
        "environment": {"ANTHROPIC_BASE_URL": f"http://scripted-api.internal:{api.port}"},
        "extra_hosts": ["scripted-api.internal:host-gateway"]}}}))
    running = Stack(f"cubicle-test-{secrets.token_hex(3)}", env_file, override, settings, api)
    try:
        running.compose("up", "--build", "--detach", "--wait", "--wait-timeout", "300")
        yield running
    finally:
        subprocess.run(["docker", "compose", "-p", running.project, "down", "--volumes", "--remove-orphans", "--timeout", "30"],
                       capture_output=True, timeout=300)
        api.close()


# -- the images -------------------------------------------------------------------------------


def test_the_images_run_as_their_users_with_healthchecks(stack):
    client = docker_client()
    desktop = client.images.get("cubicle-desktop").attrs["Config"]
    assert desktop["User"] == "cubicle" and "8000/tcp" in desktop["ExposedPorts"]
    assert desktop["Healthcheck"]["Test"][0] == "CMD" and "/health" in " ".join(desktop["Healthcheck"]["Test"])
    agent = client.images.get("cubicle-agent").attrs["Config"]
    assert agent["User"] == "cubicle" and "8001/tcp" in agent["ExposedPorts"]
    assert agent["Cmd"][:3] == ["cubicle", "agent", "serve"]
    assert stack.container("desktop").attrs["State"]["Health"]["Status"] == "healthy"


def test_the_agent_image_has_no_x(stack):
    out = docker_client().containers.run("cubicle-agent", ["sh", "-c", "dpkg-query -W libx11-6 xvfb; python3 -c "
                                         "'import cubicle.agent.service, cubicle.fleet.service, anthropic, docker, kubernetes'"
                                         " && echo imports-ok"], remove=True, stderr=True)
    assert b"no packages found matching libx11-6" in out and b"imports-ok" in out


# -- the desktop, as its users see it ---------------------------------------------------------


def test_a_screenshot_through_the_api_shows_the_panel(stack):
    with stack.desktop() as desktop:
        screen = wait_until(lambda: (s := Image.open(io.BytesIO(desktop.screenshot().data))) and shows_panel(s) and s,
                            30, "the panel to show")
    assert screen.size == (1280, 800)
    assert httpx.get(stack.desktop_url + "/screenshot", timeout=10).status_code == 401


def test_apps_open_their_windows_without_first_run_pages(stack):
    with stack.desktop() as desktop:
        launched = desktop.launch("xterm", timeout=30)
        assert launched.window is not None and launched.window.wm_class == "XTerm"
        desktop.close_window(launched.window.id)
        writer = desktop.launch(["libreoffice", "--writer"], timeout=90)
        firefox = desktop.launch("firefox-esr", timeout=90)
        assert writer.window is not None and firefox.window is not None
        titles = lambda: [w.title for w in desktop.windows()]  # noqa: E731
        wait_until(lambda: any("LibreOffice Writer" in t for t in titles()) and "Mozilla Firefox" in titles(), 90,
                   "Writer and Firefox to show their windows")
        time.sleep(5)  # the tip of the day and Firefox's welcome page would come now
        shown = titles()
        assert "Mozilla Firefox" in shown and not any("Tip of the Day" in t for t in shown), shown
        for window in desktop.windows():
            if window.wm_class in ("libreoffice-writer", "firefox-esr"):
                desktop.close_window(window.id)


def test_each_desktop_process_runs_as_the_user_of_its_half(stack):
    def users(service: str) -> dict[str, set[str]]:
        # ps runs on the host, which names uids its own way: numbers, then (and Docker needs pid).
        top = stack.container(service).top(ps_args="-eo pid,uid,args")
        found: dict[str, set[str]] = {}
        for user, command in ((p[1], p[2]) for p in top["Processes"]):
            found.setdefault(user, set()).add(command)
        return found

    session, server = users("desktop"), users("desktop-server")
    assert set(session) == {"1000"}, session  # cubicle: Xvfb, openbox, tint2, x11vnc, the runner, the apps
    session_commands = " ".join(session["1000"])
    for program in ("supervisord", "Xvfb", "openbox", "tint2", "x11vnc", "cubicle runner"):
        assert program in session_commands, (program, session_commands)
    assert "cubicle serve" not in session_commands
    assert set(server) == {"1001"}, server  # cubicle-server: the API alone, and its supervisord
    assert "cubicle serve" in " ".join(server["1001"])
    with stack.desktop() as desktop:
        assert desktop.shell("id -un; command -v sudo || echo no-sudo").output.split() == ["cubicle", "no-sudo"]


SNOOP = r"""
for f in /var/lib/cubicle/token /var/lib/cubicle-server/token /var/lib/cubicle-server/token.rotated; do
    echo "== $f"; cat "$f" 2>&1
done
echo "== environ"; for p in /proc/[0-9]*; do tr '\0' '\n' < "$p/environ" 2>/dev/null; done | sort -u
echo "== processes"; ps -eo user=,pid=,args=
echo "== mem"; for p in /proc/[0-9]*; do head -c 1 "$p/mem" >/dev/null 2>&1 && echo "readable $p"; done
echo "== supervisord"; /opt/cubicle/bin/python -m supervisor.supervisorctl -s unix:///var/lib/cubicle/supervisord.sock status 2>&1
echo "== logs"; cat /var/lib/cubicle/*.log 2>&1 | tail -n 200
echo "== files"; find / -xdev -type f -readable \( -name '*token*' -o -name '*.env' -o -name '*secret*' \) 2>/dev/null | grep -v '^/proc' | head -50
"""


def test_nothing_the_desktop_user_can_read_opens_the_worker_or_holds_a_token(stack):
    """From inside the desktop as the model's bash acts: the token files, every process's
    environment and memory, supervisord's socket and the logs give nothing usable."""
    with stack.desktop() as desktop:
        seen = desktop.shell(SNOOP, timeout=120).output
    for name in ("CUBICLE_TOKEN", "CUBICLE_WORKER_TOKEN", "CUBICLE_FLEET_TOKEN", "ANTHROPIC_API_KEY"):
        assert stack.settings[name] not in seen, f"{name} is readable on the desktop"
    assert "Permission denied" in seen.split("== /var/lib/cubicle-server/token\n")[1].split("==")[0]
    assert "cubicle-server" not in seen.split("== processes")[1].split("== mem")[0]  # the server is not even visible
    # Every token-like string found there, tried against the worker from inside the desktop.
    candidates = sorted(set(re.findall(r"[A-Za-z0-9_\-]{20,}", seen)))[:300]
    probe = ("import json, sys, urllib.request as u\n"
             "codes = []\n"
             "for t in json.load(sys.stdin):\n"
             "    r = u.Request('http://agent:8001/runs', headers={'Authorization': 'Bearer ' + t})\n"
             "    try: codes.append(u.urlopen(r, timeout=5).status)\n"
             "    except Exception as e: codes.append(getattr(e, 'code', str(type(e).__name__)))\n"
             "print(json.dumps(codes))\n")
    with stack.desktop() as desktop:
        desktop.write_file("/var/lib/cubicle/home/probe.py", probe)
        desktop.write_file("/var/lib/cubicle/home/candidates.json", json.dumps(candidates))
        codes = json.loads(desktop.shell("python3 ~/probe.py < ~/candidates.json", timeout=300).output)
    assert codes and set(codes) == {401}, codes
    # The worker answers the right token, so the probe could have told the difference.
    assert stack.worker("GET", "/runs").status_code == 200


def test_the_viewer_and_the_docs_are_served_and_the_bridge_reaches_vnc(stack):
    for path in ("/view", "/view/novnc/core/rfb.js", "/docs"):
        assert httpx.get(stack.desktop_url + path, timeout=30).status_code == 200, path
    with connect(stack.desktop_url.replace("http://", "ws://") + "/vnc", open_timeout=10) as socket:
        socket.send(json.dumps({"token": stack.settings["CUBICLE_TOKEN"]}))
        assert socket.recv(timeout=10)[:12] == b"RFB 003.008\n"


# -- the worker -------------------------------------------------------------------------------


def test_the_worker_carries_out_a_run_on_the_desktop_and_the_volumes_outlive_down_and_up(stack):
    seen: dict = {}

    def bash_turn(request):
        seen["screenshot"] = last_image(request)
        return message(tool_use("bash", {"command": "id -un; echo kept > ~/kept.txt"}))

    stack.api.turns[:] = [lambda r: message(tool_use("computer", {"action": "screenshot"})), bash_turn,
                          lambda r: message(text("Done."))]
    created = stack.worker("POST", "/runs", json={"task": "Look, then write a file.", "model": MODEL})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    shown = wait_until(lambda: (r := stack.worker("GET", f"/runs/{run_id}").json())["active"] is False and r, 120,
                       "the run to end")
    assert stack.api.failure is None, stack.api.failure
    assert shown["status"] == "finished", shown
    results = [e for e in shown["events"] if e["type"] == "result"]
    assert [e["is_error"] for e in results] == [False, False] and results[1]["text"].split()[0] == "cubicle"
    assert shows_panel(seen["screenshot"]), "the model was not sent the desktop's screen"
    # The console and its live view's noVNC come from the agent image.
    assert "cubicle console" in httpx.get(stack.worker_url + "/", timeout=10).text
    assert httpx.get(stack.worker_url + "/console/novnc/core/rfb.js", timeout=10).status_code == 200
    # An approval, like every other route, takes the worker's token only.
    refused = stack.worker("POST", f"/runs/{run_id}/approvals/toolu_x", token=stack.settings["CUBICLE_TOKEN"],
                           json={"approve": True})
    assert refused.status_code == 401

    stack.compose("down", "--timeout", "30")  # volumes kept
    assert all(c.status != "running" for c in docker_client().containers.list(
        all=True, filters={"label": f"com.docker.compose.project={stack.project}"}))
    stack.compose("up", "--detach", "--wait", "--wait-timeout", "300")
    with stack.desktop() as desktop:
        assert desktop.read_file("/var/lib/cubicle/home/kept.txt").content == "kept\n"
    assert run_id in [run["id"] for run in stack.worker("GET", "/runs").json()["runs"]]


def test_the_worker_refuses_to_start_with_the_desktops_token(stack):
    try:
        docker_client().containers.run("cubicle-agent", remove=True, environment={
            "CUBICLE_TOKEN": "s" * 32, "CUBICLE_WORKER_TOKEN": "s" * 32})
        raise AssertionError("the worker started with the desktop's token")
    except docker.errors.ContainerError as refused:
        assert refused.exit_status == 2 and b"is the desktop's token" in refused.stderr
