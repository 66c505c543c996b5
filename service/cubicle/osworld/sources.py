"""Where OSWorld's machines come from: cubicle desktops that serve OSWorld's protocol, from the
fleet (FleetDesktops), from the Docker engine directly (DockerDesktops), or as processes on
this host (LocalDesktops). Each gives a desktop, a fresh one in its place (OSWorld's
"revert to snapshot"), and takes it away.

How OSWorld's client reaches port 5000 of a desktop that publishes no port: from where the
desktop's private network is reachable. The fleet tells a caller holding its token the
private address of a desktop made with osworld: true (a Docker bridge's container address is
routed from the engine's host; a Pod's address within the cluster); DockerDesktops reads it
from the engine; LocalDesktops listens on 127.0.0.1. So OSWorld runs on the fleet's host (or
in the cluster), and nothing without a credential is reachable from anywhere else.
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
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

READY_TIMEOUT_S = 180.0


class SourceError(Exception):
    """A desktop could not be had: the message says why."""


@dataclass(frozen=True)
class Desktop:
    id: str
    osworld: str  # host:port of its OSWorld server
    api: str | None = None  # its cubicle API (with `token`), for anything beyond OSWorld's protocol
    token: str | None = None
    width: int = 1920
    height: int = 1080


class DesktopSource(Protocol):
    def start(self, width: int, height: int) -> Desktop: ...

    def reset(self, desktop: Desktop) -> Desktop:
        """A fresh desktop in its place (same size); the old one is gone."""

    def stop(self, desktop: Desktop) -> None: ...


def wait_until_serving(address: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until the OSWorld server at host:port answers (it starts after the window manager)."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"http://{address}/platform", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        time.sleep(0.1)
    raise SourceError(f"the desktop's OSWorld server at {address} did not answer within {timeout_s:g} s ({last})")


class FleetDesktops:
    """Desktops from a cubicle fleet (`cubicle fleet serve`), made with osworld: true.

    OSWorld's requests go to the desktop directly, not through the fleet, so the fleet would see
    the desktop idle: its idle timeout is off, and every reset renews its TTL (ttl_s from then)."""

    def __init__(self, url: str, token: str, ttl_s: int = 4 * 3600, labels: dict[str, str] | None = None,
                 office: bool | None = None):
        from cubicle.fleet.client import FleetClient

        self.fleet = FleetClient(url, token)
        self.ttl_s = ttl_s
        self.labels = {"purpose": "osworld", **(labels or {})}
        self.office = office

    def _desktop(self, view, token: str | None) -> Desktop:
        if not view.osworld:
            raise SourceError(f"the fleet gave desktop {view.id} without an OSWorld address: is the fleet older than "
                              "osworld: true?")
        wait_until_serving(view.osworld)
        return Desktop(view.id, view.osworld, view.urls.api, token, view.width, view.height)

    def start(self, width: int, height: int) -> Desktop:
        options: dict = {"width": width, "height": height, "osworld": True, "ttl_s": self.ttl_s,
                         "idle_timeout_s": None, "labels": self.labels}
        if self.office is not None:
            options["office"] = self.office
        view = self.fleet.create(**options)
        try:
            return self._desktop(view, view.token)
        except SourceError:
            self.fleet.delete(view.id)
            raise

    def reset(self, desktop: Desktop) -> Desktop:
        view = self.fleet.reset(desktop.id)
        self.fleet.keepalive(desktop.id, self.ttl_s)
        return self._desktop(view, desktop.token)

    def stop(self, desktop: Desktop) -> None:
        from cubicle.client import CubicleError

        try:
            self.fleet.delete(desktop.id)
        except CubicleError as error:
            if error.status != 404:  # already gone is what was wanted
                raise

    def close(self) -> None:
        self.fleet.close()


class DockerDesktops:
    """Desktops on this Docker engine without a fleet, made as the fleet's Docker backend makes
    them (cubicle.fleet.backends.docker: two containers of the image, unprivileged, on a network
    of their own, no port published), the session serving OSWorld's protocol."""

    def __init__(self, image: str = "cubicle-desktop", name: str | None = None, state_dir: str | None = None):
        from cubicle.fleet.backends import Limits
        from cubicle.fleet.backends.docker import DockerBackend

        self.image = image
        self.name = name or f"osworld-{secrets.token_hex(4)}"
        self.limits = Limits()
        self.backend = DockerBackend(self.name, Path(state_dir or tempfile.mkdtemp(prefix="cubicle-osworld-")))

    def start(self, width: int, height: int) -> Desktop:
        from cubicle.fleet.backends import DesktopSpec, osworld_address
        from cubicle.web import new_token
        from cubicle.web.auth import token_digest

        ref, token = f"{self.name}-{secrets.token_hex(6)}", new_token()
        spec = DesktopSpec(ref=ref, image=self.image, width=width, height=height, token_digest=token_digest(token),
                           operator_digest=token_digest(new_token()), limits=self.limits, osworld=True)
        self.backend.create(spec)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while (address := self.backend.address(ref)) is None:
                if self.backend.state(ref) in ("failed", "gone") or time.monotonic() > deadline:
                    raise SourceError(f"the desktop {ref} stopped or got no address; see `docker logs {ref}-session`")
                time.sleep(0.1)
            osworld = osworld_address(address)
            wait_until_serving(osworld, max(1.0, deadline - time.monotonic()))
        except BaseException:
            self.backend.delete(ref)
            raise
        return Desktop(ref, osworld, address, token, width, height)

    def reset(self, desktop: Desktop) -> Desktop:
        self.stop(desktop)
        return self.start(desktop.width, desktop.height)

    def stop(self, desktop: Desktop) -> None:
        self.backend.delete(desktop.id)

    def close(self) -> None:
        self.backend.close()


class LocalDesktops:
    """`cubicle desktop --osworld` processes on this host, each on a free display and free
    ports, its OSWorld server on 127.0.0.1: a developer's machine or CI, without images. The
    desktops' programs run as this user, with this user's files."""

    def __init__(self, state_root: str | None = None, python: str = sys.executable):
        # Short: supervisord's control socket is a file in there, and a socket's path is short.
        self._own_root = state_root is None
        self.state_root = Path(state_root or tempfile.mkdtemp(prefix="cubicle-osw-"))
        self.python = python
        self._processes: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()
        self._displays: set[int] = set()

    def _free_display(self) -> int:
        from cubicle.session import display_in_use

        with self._lock:
            for number in range(60, 400):
                if number not in self._displays and not os.path.exists(f"/tmp/.X11-unix/X{number}") \
                        and display_in_use(number) is None:
                    self._displays.add(number)
                    return number
        raise SourceError("no free X display number between :60 and :399")

    def start(self, width: int, height: int) -> Desktop:
        display = self._free_display()
        port, vnc_port, osworld_port = _free_ports(3)
        state = self.state_root / f"d{display}-{secrets.token_hex(2)}"
        state.mkdir(parents=True)
        token = secrets.token_urlsafe(32)
        environment = {**os.environ, "CUBICLE_TOKEN": token}
        environment.pop("DISPLAY", None)
        with open(state / "desktop.out", "wb") as output:
            process = subprocess.Popen(
                [self.python, "-m", "cubicle", "desktop", "--display", str(display), "--port", str(port),
                 "--vnc-port", str(vnc_port), "--size", f"{width}x{height}", "--state-dir", str(state), "--osworld",
                 "--osworld-host", "127.0.0.1", "--osworld-port", str(osworld_port)],
                env=environment, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        desktop = Desktop(f"{display}", f"127.0.0.1:{osworld_port}", f"http://127.0.0.1:{port}", token, width, height)
        with self._lock:
            self._processes[desktop.id] = process
        try:
            wait_until_serving(desktop.osworld)
        except SourceError as error:
            self.stop(desktop)
            raise SourceError(f"{error}; see {state}/") from None
        return desktop

    def reset(self, desktop: Desktop) -> Desktop:
        self.stop(desktop)
        return self.start(desktop.width, desktop.height)

    def stop(self, desktop: Desktop) -> None:
        with self._lock:
            process = self._processes.pop(desktop.id, None)
            self._displays.discard(int(desktop.id))
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)  # `cubicle desktop` stops everything it started
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(30)

    def close(self) -> None:
        with self._lock:
            running = list(self._processes)
        for desktop_id in running:
            self.stop(Desktop(desktop_id, ""))
        if self._own_root:
            shutil.rmtree(self.state_root, ignore_errors=True)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
