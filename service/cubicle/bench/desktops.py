"""The desktop a bench measures: one it starts itself (`cubicle desktop` on a free display,
ports and token of its own) or a running one at `--url`, and `with_desktop`, which runs a
bench on it and stops what it started whatever happens.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from cubicle.client import CubicleError, DesktopClient
from cubicle.session import display_in_use, x_server_socket

# What a bench may fail with that needs one line, not a traceback: anything else is a bug.
EXPECTED_FAILURES: tuple[type[BaseException], ...] = (RuntimeError, OSError, httpx.HTTPError, CubicleError)


@dataclass
class Desktop:
    url: str
    token: str | None
    display: str  # ":N", for programs that talk to its X server directly
    process: subprocess.Popen | None = None  # set when the bench started the desktop itself
    state_dir: Path | None = None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # `cubicle desktop` runs supervisord in a session of its own and stops it in order on SIGTERM.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def free_display(first: int = 60) -> int:
    for number in range(first, first + 200):
        if display_in_use(number) is None and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError(f"no free X display number between :{first} and :{first + 199}")


def free_ports(count: int) -> list[int]:
    # Hold every socket until all are chosen, so the ports differ from one another.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def start_desktop(timeout: float = 60.0) -> Desktop:
    display = free_display()
    port, vnc_port = free_ports(2)
    token = secrets.token_urlsafe(24)
    state_dir = Path(tempfile.mkdtemp(prefix="cubicle-bench-"))
    with open(state_dir / "desktop.out", "wb") as log:  # the desktop keeps its own copy of the file
        process = subprocess.Popen(
            [sys.executable, "-m", "cubicle", "desktop", "--display", str(display), "--port", str(port),
             "--vnc-port", str(vnc_port), "--state-dir", str(state_dir)],
            env={**os.environ, "CUBICLE_TOKEN": token},
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches only the bench, which then stops it
        )
    desktop = Desktop(f"http://127.0.0.1:{port}", token, f":{display}", process, state_dir)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = (state_dir / "desktop.out").read_text(errors="replace").strip()
            raise RuntimeError(f"the desktop exited with code {process.returncode}: {output}")
        try:
            if httpx.get(desktop.url + "/health", timeout=2).status_code == 200:
                return desktop
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            desktop.stop()
            raise RuntimeError(f"the desktop was not healthy after {timeout:.0f} s; logs in {state_dir}")
        time.sleep(0.1)


def attach_desktop(url: str) -> Desktop:
    token = os.environ.get("CUBICLE_TOKEN")
    try:
        with DesktopClient(url, token) as client:
            display = client.screen().display
    except httpx.HTTPError as error:
        raise RuntimeError(f"cannot reach the desktop at {url}: {error}") from None
    # The benches read the desktop's processes and run X programs against it: it must be local.
    if not display.startswith(":") or x_server_socket(int(display[1:].split(".")[0])) is None:
        raise RuntimeError(f"the desktop at {url} uses display {display!r}, which does not answer on this machine; "
                           "run the bench where the desktop runs")
    return Desktop(url.rstrip("/"), token, display)


def with_desktop(url: str | None, body: Callable[[Desktop], int],
                 expected: tuple[type[BaseException], ...] = EXPECTED_FAILURES) -> int:
    """Run a bench's `body` on a desktop it starts (or the one at `url`) and return its exit
    status; stop that desktop whatever happens. A SIGTERM ends it the way Ctrl-C does.
    `expected` failures get one line; anything else is a bug and keeps its traceback."""
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    desktop: Desktop | None = None
    keep_desktop_logs = False
    try:
        if url is None:
            print("starting a desktop ...", file=sys.stderr)
            desktop = start_desktop()
        else:
            desktop = attach_desktop(url)
        return body(desktop)
    except KeyboardInterrupt:
        print("\ncubicle bench: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 -- every failure is reported, and the desktop kept for its logs
        if not isinstance(error, expected):
            traceback.print_exc()
        keep_desktop_logs = desktop is not None and desktop.state_dir is not None
        where = f"; desktop logs in {desktop.state_dir}" if keep_desktop_logs and desktop is not None else ""
        print(f"cubicle bench: {error}{where}", file=sys.stderr)
        return 1
    finally:
        if desktop is not None:
            desktop.stop()
            if desktop.state_dir is not None and not keep_desktop_logs:
                shutil.rmtree(desktop.state_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_handler)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
