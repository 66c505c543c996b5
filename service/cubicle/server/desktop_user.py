"""What the desktop's API does as the desktop user: its shell, its files, the programs it starts.

In the desktop image the API server runs as a user of its own, because it holds the token, and
these run as the desktop user in the session's container, behind `cubicle runner` (runner.py)
on a unix socket; the server reaches them through `RunnerUser`. Where the two are one user
anyway (a server started alone with `cubicle serve`, tests of single parts) `LocalUser` does the
same in the server's own process. Both speak the API's own models, so the routes cannot tell.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Protocol

import httpx

from cubicle import accessibility as t
from cubicle import actions as a
from cubicle.web.errors import ApiError
from cubicle.x11.apps import Launcher

from . import atspi
from .chromium import DesktopChromium
from .files import FileAccess, FileContent
from .shell import ShellSession

RUNNER_BASE_URL = "http://runner"  # any host: the transport goes to the socket
_RUNNER_SLACK_S = 30.0  # on top of a command's own timeout


def app_log_path() -> str | None:
    """Where started programs' output goes: apps.log in the state folder, if there is one."""
    state_dir = os.environ.get("CUBICLE_STATE_DIR")
    return os.path.join(state_dir, "apps.log") if state_dir else None


class DesktopUser(Protocol):
    async def run_shell(self, command: str, timeout: float) -> a.ShellResult: ...
    async def restart_shell(self) -> None: ...
    async def read_file(self, path: str) -> a.FileInfo: ...
    async def write_file(self, request: a.WriteFile) -> a.FileWritten: ...
    async def launch(self, argv: list[str]) -> int: ...
    async def ensure_browser(self) -> str: ...
    async def read_accessibility(self, request: t.TreeRequest) -> t.AccessibilityTree: ...
    async def alive(self) -> bool: ...
    async def close(self) -> None: ...


class LocalUser:
    """The desktop user's shell, files and programs in this very process."""

    def __init__(self, display: str, cdp_port: int = 9222):
        self.shell = ShellSession(display)
        self.files = FileAccess.from_environment()
        self.launcher = Launcher(display, app_log_path())
        self.chromium = DesktopChromium(self.launcher, cdp_port)

    async def run_shell(self, command: str, timeout: float) -> a.ShellResult:
        return a.ShellResult(**vars(await self.shell.run(command, timeout)))

    async def restart_shell(self) -> None:
        await self.shell.restart()

    async def read_file(self, path: str) -> a.FileInfo:
        found = await asyncio.to_thread(self.files.read, path)
        if isinstance(found, FileContent):
            return a.FileInfo(path=found.path, type="file", size=found.size, content=found.content)
        return a.FileInfo(
            path=found.path, type="directory", entries=[a.DirectoryEntry(**vars(entry)) for entry in found.entries],
            total=found.total, truncated=found.truncated,
        )

    async def write_file(self, request: a.WriteFile) -> a.FileWritten:
        path, size = await asyncio.to_thread(self.files.write, request.path, request.content, request.create_dirs)
        return a.FileWritten(path=path, size=size)

    async def launch(self, argv: list[str]) -> int:
        return await asyncio.to_thread(self.launcher.launch, argv)

    async def ensure_browser(self) -> str:
        """Chromium on the display, started if it is not running; its DevTools WebSocket URL."""
        return await self.chromium.ensure()

    async def read_accessibility(self, request: t.TreeRequest) -> t.AccessibilityTree:
        """The apps' accessibility tree, read over the accessibility bus (which lets in only
        the desktop user: that is why this is done here)."""
        try:
            return await atspi.read_tree(request)
        except atspi.AccessibilityUnavailable as error:
            raise ApiError(503, "accessibility_unavailable", str(error)) from None
        except atspi.WindowNotAccessible as error:
            raise ApiError(404, "window_not_accessible", str(error)) from None

    async def alive(self) -> bool:
        return True

    async def close(self) -> None:
        self.shell.close()  # no shell outlives the server


def socket_address(spec: str) -> str:
    """'@name' is a socket in the abstract namespace (shared by the containers of one network
    namespace, the server's and the session's); anything else a path."""
    return "\0" + spec[1:] if spec.startswith("@") else spec


class RunnerUser:
    """The same, carried out by `cubicle runner` as the desktop user, over its unix socket."""

    def __init__(self, socket_spec: str):
        transport = httpx.AsyncHTTPTransport(uds=socket_address(socket_spec))
        self._http = httpx.AsyncClient(transport=transport, base_url=RUNNER_BASE_URL,
                                       timeout=httpx.Timeout(60.0, connect=5.0))

    async def _call(self, method: str, path: str, timeout: float | None = None, **options: Any) -> Any:
        try:
            response = await self._http.request(method, path, timeout=timeout or httpx.USE_CLIENT_DEFAULT, **options)
        except httpx.HTTPError as error:
            raise ApiError(503, "runner_unavailable", (
                "The desktop user's runner (which runs shell commands, file access and programs as the desktop "
                f"user) is not answering ({type(error).__name__}); it is restarted by itself: retry in a few seconds."
            )) from None
        body = response.json()
        if response.status_code >= 400:
            refusal = body.get("error") or {}
            raise ApiError(response.status_code, refusal.get("code", "runner_error"), refusal.get("message", response.text))
        return body

    async def run_shell(self, command: str, timeout: float) -> a.ShellResult:
        body = await self._call("POST", "/shell/run", timeout=timeout + _RUNNER_SLACK_S,
                                json={"command": command, "timeout": timeout})
        return a.ShellResult.model_validate(body)

    async def restart_shell(self) -> None:
        await self._call("POST", "/shell/restart")

    async def read_file(self, path: str) -> a.FileInfo:
        return a.FileInfo.model_validate(await self._call("GET", "/files", params={"path": path}))

    async def write_file(self, request: a.WriteFile) -> a.FileWritten:
        return a.FileWritten.model_validate(await self._call("PUT", "/files", json=request.model_dump()))

    async def launch(self, argv: list[str]) -> int:
        return int((await self._call("POST", "/launch", json={"argv": argv}))["pid"])

    async def ensure_browser(self) -> str:
        return str((await self._call("POST", "/browser", timeout=60.0))["websocket"])

    async def read_accessibility(self, request: t.TreeRequest) -> t.AccessibilityTree:
        body = await self._call("POST", "/accessibility", timeout=request.timeout_ms / 1000 + _RUNNER_SLACK_S,
                                json=request.model_dump(exclude_none=True))
        return t.AccessibilityTree.model_validate(body)

    async def alive(self) -> bool:
        try:
            return (await self._http.get("/health", timeout=1.0)).status_code == 200
        except httpx.HTTPError:
            return False

    async def close(self) -> None:
        await self._http.aclose()
