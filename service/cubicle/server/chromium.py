"""The desktop's Chromium, started on demand for the browser toolset (WS /cdp).

It is an ordinary window on the X display, started as the desktop user, so people see it in
the viewer and can take over, and the computer toolset acts on the same window. Its DevTools
listen on 127.0.0.1 only; the API's token-checked /cdp route is the way in from outside.

What answers on the DevTools port must be this Chromium: the process listening on it must
be a Chromium of this profile (read from /proc once per browser), so another program on that
port (another desktop's Chromium on a shared host, say) is refused with a clear error rather
than driven by mistake.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from cubicle.web.errors import ApiError
from cubicle.x11.apps import Launcher

PROGRAM = "chromium"
START_TIMEOUT_S = 30.0
_PROBE_TIMEOUT_S = 2.0
_SINGLETON_FILES = ("SingletonLock", "SingletonSocket", "SingletonCookie")


def profile_dir(home: str | None = None) -> Path:
    return Path(home or os.path.expanduser("~")) / ".config" / "cubicle-chromium"


def chromium_argv(port: int, profile: Path) -> list[str]:
    return [
        PROGRAM,
        "--remote-debugging-address=127.0.0.1",
        f"--remote-debugging-port={port}",
        f"--user-data-dir={profile}",
        # Chromium's own sandbox needs user namespaces or a setuid helper, neither of which an
        # unprivileged container has; the container is the sandbox here.
        "--no-sandbox",
        "--test-type",  # no "unsupported command-line flag" infobar about --no-sandbox
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--password-store=basic",  # no keyring prompt on the screen
        "--hide-crash-restore-bubble",  # the desktop stops it by signal; no "restore pages?" after that
        "--disable-dev-shm-usage",  # a container's /dev/shm is small
        "--force-renderer-accessibility",  # pages in GET /accessibility (ACCESSIBILITY_ENABLED: its own UI)
        "--start-maximized",
        "about:blank",
    ]


class DesktopChromium:
    """Starts Chromium when nothing answers on its DevTools port yet, and says where its
    browser endpoint is."""

    def __init__(self, launcher: Launcher, port: int, home: str | None = None):
        self.launcher = launcher
        self.port = port
        self.profile = profile_dir(home)
        self._lock = asyncio.Lock()  # two /cdp connections at once start one browser
        self._known: str | None = None  # the endpoint last found to be ours (unique per browser run)

    async def ensure(self) -> str:
        """The browser's DevTools WebSocket URL (ws://127.0.0.1:<port>/devtools/browser/<id>),
        once it answers."""
        async with self._lock:
            running = await asyncio.to_thread(self._endpoint)
            if running:
                return running
            await asyncio.to_thread(self._clear_stale_lock)
            pid = await asyncio.to_thread(self.launcher.launch, chromium_argv(self.port, self.profile))
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                running = await asyncio.to_thread(self._endpoint)
                if running:
                    return running
                if not _alive(pid):
                    raise ApiError(503, "browser_failed", (
                        "Chromium exited right after it was started; its output is in apps.log in the "
                        "desktop's state folder."))
                await asyncio.sleep(0.1)
            raise ApiError(503, "browser_failed", (
                f"Chromium did not open its DevTools port 127.0.0.1:{self.port} within {START_TIMEOUT_S:.0f} s "
                "(a Chromium already running on this profile without it?); try again, or restart the desktop."))

    def _endpoint(self) -> str | None:
        """The endpoint of our Chromium if it answers; None if nothing listens."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/version", timeout=_PROBE_TIMEOUT_S) as answer:
                version = json.loads(answer.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None
        endpoint = version.get("webSocketDebuggerUrl") if isinstance(version, dict) else None
        if isinstance(endpoint, str) and (endpoint == self._known or self._listener_is_ours()):
            self._known = endpoint
            return endpoint
        raise ApiError(409, "cdp_port_taken", (
            f"Another program answers on the DevTools port 127.0.0.1:{self.port}, not the desktop's Chromium. "
            "Stop it, or start the desktop with another --cdp-port."))

    def _listener_is_ours(self) -> bool:
        """Whether a process started with this profile holds the socket listening on the port."""
        sockets = {f"socket:[{inode}]" for inode in _listening_inodes(self.port)}
        flag = f"--user-data-dir={self.profile}".encode()
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if flag not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
                    continue
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") in sockets for fd in os.listdir(f"/proc/{pid}/fd")):
                    return True
            except OSError:
                continue  # gone, or another user's
        return False

    def _clear_stale_lock(self) -> None:
        """A profile lock left by a Chromium of another host name (a re-created container
        with the same state folder) would make the new one show a dialog and wait."""
        try:
            owner = os.readlink(self.profile / "SingletonLock")
        except OSError:
            return
        if owner.rpartition("-")[0] != socket.gethostname():
            for name in _SINGLETON_FILES:
                try:
                    os.unlink(self.profile / name)
                except OSError:
                    pass


def _listening_inodes(port: int) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(fields[9])
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
