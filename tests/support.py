"""What the tests share besides fixtures: polling, free ports and displays, an ASGI app served
in a thread, a real desktop started on demand, the input-recording test app, screenshot
comparison, and the browser's settings. The fixtures in conftest.py are built from these;
test modules import them from here (`from support import ...`)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx
from PIL import Image, ImageChops

from apps.recorder_log import read_records, wait_for_record

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-" + os.urandom(8).hex()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_display() -> int:
    for number in range(40, 200):
        if not os.path.exists(f"/tmp/.X11-unix/X{number}") and not os.path.exists(f"/tmp/.X{number}-lock"):
            return number
    raise RuntimeError("no free X display number between 40 and 200")


def wait_until(predicate, timeout: float = 30.0, what: str = "condition", interval: float = 0.05):
    """Poll until `predicate()` is truthy and return its value; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(interval)


class Serving:
    """An ASGI app under uvicorn, in a thread of this process, on a free port."""

    def __init__(self, app):
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.server.started, 20, "the app to listen", 0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


# -- a real desktop: the same supervisord graph `cubicle desktop` runs for users ----------------


@dataclass
class RunningDesktop:
    url: str
    token: str
    display: str
    state_dir: Path
    process: subprocess.Popen
    vnc_port: int

    def env(self) -> dict[str, str]:
        return dict(os.environ, DISPLAY=self.display, LANG="C.UTF-8")

    def supervisorctl(self, *args: str) -> str:
        conf = self.state_dir / "supervisord.sock"
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-s", f"unix://{conf}", *args],
            capture_output=True, text=True, timeout=30,
        )
        return result.stdout + result.stderr


def wait_healthy(url: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url + "/health", timeout=2)
            last = response.json()
            if response.status_code == 200:
                return last
        except (httpx.HTTPError, ValueError) as error:
            last = repr(error)
        time.sleep(0.2)
    raise AssertionError(f"desktop at {url} not healthy after {timeout}s: {last}")


@contextlib.contextmanager
def running_desktop(state_dir: Path, size: str = "1280x800", args: tuple[str, ...] = ()):
    """`cubicle desktop` on a free display and ports (and `args`), stopped (with everything it
    started) on exit. A test that calls this itself (not through a fixture) is marked `desktop`."""
    number, port, vnc_port = free_display(), free_port(), free_port()
    env = dict(os.environ, CUBICLE_TOKEN=TOKEN)
    env.pop("DISPLAY", None)
    with open(state_dir / "desktop.out", "wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "cubicle", "desktop", "--display", str(number), "--port", str(port),
             "--vnc-port", str(vnc_port), "--size", size, "--state-dir", str(state_dir), *args],
            env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )
    running = RunningDesktop(f"http://127.0.0.1:{port}", TOKEN, f":{number}", state_dir, process, vnc_port)
    try:
        wait_healthy(running.url)
        yield running
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


# -- the input-recording test app (tests/apps/recorder.py) -------------------------------------


@dataclass
class Recorder:
    log: Path
    process: subprocess.Popen
    ready: dict

    @property
    def origin(self) -> tuple[int, int]:
        return self.ready["root_x"], self.ready["root_y"]

    def at(self, x: int, y: int) -> tuple[int, int]:
        """Screen coordinates of a point given relative to the recorder's canvas."""
        return self.ready["root_x"] + x, self.ready["root_y"] + y

    def records(self, kind: str | None = None) -> list[dict]:
        found = read_records(self.log)
        return [r for r in found if kind is None or r["type"] == kind]

    def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        return wait_for_record(self.log, predicate, timeout)

    def clear(self) -> None:
        """Forget what was recorded so far (the app appends; we truncate)."""
        with open(self.log, "r+") as handle:
            handle.truncate(0)


def start_recorder(desktop: RunningDesktop, tmp_path: Path, *args: str) -> Recorder:
    log = tmp_path / "recorder.jsonl"
    with open(tmp_path / "recorder.err", "wb") as errors:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "apps" / "recorder.py"), "--log", str(log), *args],
            env=desktop.env(), stdout=subprocess.DEVNULL, stderr=errors,
        )
    ready = wait_for_record(log, lambda r: r["type"] == "ready", 20)
    return Recorder(log, process, ready)


# -- screenshots -----------------------------------------------------------------------------------

CLOCK_WIDTH = 100  # the panel's clock, bottom right: it may turn a minute during a test
PANEL_HEIGHT = 32


def pixel(image_bytes: bytes, x: int, y: int) -> tuple[int, int, int]:
    return Image.open(BytesIO(image_bytes)).convert("RGB").getpixel((x, y))


def changed_outside_the_clock(before: Image.Image, after: Image.Image) -> tuple[int, int, int, int] | None:
    """The bounding box of what differs, with the clock's corner of the panel left out."""
    width, height = before.size
    masked = []
    for image in (before, after):
        copy = image.copy()
        copy.paste((0, 0, 0), (width - CLOCK_WIDTH, height - PANEL_HEIGHT, width, height))
        masked.append(copy)
    return ImageChops.difference(*masked).getbbox()


# -- a real browser: Debian's chromium, driven by playwright (never a downloaded browser) --------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]
VIEWPORT = {"width": 1000, "height": 700}


# -- the SDK's tool runner against the scripted Messages API ----------------------------------

TOOL_RUNNER_MODEL = "claude-sonnet-5"


def run_tool_runner(tools: list, turns: list, prompt: str):
    """The real SDK's tool runner with `tools` over the scripted `turns` (then a final text),
    against cubicle's scripted Messages API; the API, with every request it got."""
    import anthropic

    from cubicle.agent.scripted_api import ScriptedAPI, message, text

    api = ScriptedAPI([*turns, lambda request: message(text("Done."))])
    try:
        with anthropic.Anthropic(api_key="sk-ant-test", base_url=api.url, max_retries=0) as client:
            runner = client.beta.messages.tool_runner(model=TOOL_RUNNER_MODEL, max_tokens=1024, tools=tools,
                                                      messages=[{"role": "user", "content": prompt}])
            runner.until_done()
    finally:
        api.close()
    assert api.failure is None, api.failure
    return api


def tool_results_after_each_turn(api) -> list[list[dict]]:
    """The tool results the model was sent after each of its turns."""
    from cubicle.agent.scripted_api import tool_results

    return [tool_results(request) for request in api.requests[1:]]


def text_of_result(result: dict) -> str:
    """A tool result's text (its string content, or its text blocks joined)."""
    content = result["content"]
    if isinstance(content, str):
        return content
    return "\n".join(block["text"] for block in content if block["type"] == "text")
