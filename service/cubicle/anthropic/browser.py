"""Claude's browser toolset (browser_toolset_20260801) on a cubicle desktop's Chromium, as the
`anthropic` SDK's own driver classes:

    browser = CubicleBrowser(url, token, confirm=ask_a_human, url_policy=URLRules(deny=["*.bank.example"]),
                             configs={"file_upload": {"enabled": True}})
    client.beta.messages.tool_runner(..., tools=[browser, CubicleComputer(url, token, confirm=ask_a_human)])

The browser is an ordinary window on the desktop (people see it in the viewer and can take
over; the computer toolset acts on the same window), driven over the desktop's token-checked
WS /cdp with Playwright's `connect_over_cdp`; only the Python package is needed here.

The SDK parses each member's input, asks `confirm` (required for javascript_exec and
file_upload), runs `url_policy` on navigate and `file_policy` on uploads, and renders
results. This driver serves every member (browser_members.py, on browser_session.py):

- Screenshots are the viewport at the largest size the toolset models take as they are;
  coordinates are the last screenshot's pixels, mapped back to the viewport exactly.
- read_page / find list elements with refs (`[ref_7]`) that later calls target.
- A `URLRules` given as `url_policy` is also enforced on every request the browser makes, so
  a denied address is never loaded, however it is reached; a refused main-frame navigation
  is reported to the model.
- file_upload sends files of the desktop (where Chromium runs), vetted by `DesktopFilePolicy`
  (default: the desktop user's home, never the browser's profile).
- Dialogs are dismissed and reported. `close()` lets go of the browser; it stays open on the
  desktop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from anthropic import NOT_GIVEN
from anthropic.tools.browser import (
    BetaAbstractBrowserToolset20260801,
    BetaAsyncAbstractBrowserToolset20260801,
    BetaBrowserMemberResult,
    BetaBrowserState,
    BetaToolsetCallContext,
)

from cubicle.client import AsyncDesktopClient, DesktopClient

from .browser_members import BrowserMembers
from .browser_policy import DesktopFilePolicy, URLRules
from .browser_session import BrowserSession

__all__ = ["AsyncCubicleBrowser", "CubicleBrowser", "cdp_endpoint"]

T = TypeVar("T")


def cdp_endpoint(desktop_url: str) -> str:
    """The desktop's WS /cdp for its http(s) URL."""
    base = desktop_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base[len("https://"):] + "/cdp"
    if base.startswith("http://"):
        return "ws://" + base[len("http://"):] + "/cdp"
    raise ValueError(f"a desktop URL starts with http:// or https://, not {desktop_url!r}")


def _address(desktop: str | DesktopClient | AsyncDesktopClient, token: str | None) -> tuple[str, str | None]:
    if isinstance(desktop, str):
        return desktop, token
    return desktop.base_url, token or desktop.token  # one desktop, one set of credentials


def _session(url: str, token: str | None, url_policy: Any, file_policy: Any,
             image_size: tuple[int, int] | None) -> BrowserSession:
    return BrowserSession(
        cdp_endpoint(url), {"Authorization": f"Bearer {token}"} if token else {},
        desktop=AsyncDesktopClient(url, token, timeout=60.0),
        url_rules=url_policy if isinstance(url_policy, URLRules) else None,
        file_policy=file_policy, image_limits=image_size)


class _LoopThread:
    """An event loop of its own for the synchronous class: Playwright's async API runs there,
    so one implementation serves both classes, and the sync one also works where the
    caller's thread already runs a loop (where Playwright's sync API refuses to)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cubicle-browser", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class CubicleBrowser(BetaAbstractBrowserToolset20260801):
    """The browser toolset on a cubicle desktop, for the SDK's synchronous tool runner.

    `desktop` is the desktop's URL (with its `token`), or a DesktopClient whose address and
    token to use. `url_policy` is the SDK's hook; a `URLRules` there also guards every request.
    `file_policy` defaults to `DesktopFilePolicy()` (the desktop user's home). `image_size`
    caps screenshots (default: the largest the toolset models take unscaled). Members that
    are off by default in the SDK (file_upload, javascript_exec, read_console, read_network)
    are turned on with `configs`."""

    def __init__(self, desktop: str | DesktopClient, token: str | None = None, *, confirm: Any = None,
                 configs: Any = None, url_policy: Any = NOT_GIVEN, file_policy: Any = None, tool_configs: Any = None,
                 image_size: tuple[int, int] | None = None):
        file_policy = DesktopFilePolicy() if file_policy is None else file_policy
        super().__init__(configs=configs, confirm=confirm, url_policy=url_policy, file_policy=file_policy,
                         tool_configs=tool_configs)
        url, token = _address(desktop, token)
        self._loop = _LoopThread()
        self.session = _session(url, token, url_policy, file_policy, image_size)
        self._members = BrowserMembers(self.session)

    def connect(self) -> None:
        """Attach to the desktop's browser now (starting it if need be) rather than at the first call."""
        self._loop.run(self.session.connect())

    def execute(self, context: BetaToolsetCallContext, name: Any, input: Any) -> BetaBrowserMemberResult:
        return self._loop.run(self._members.call(name, input))

    def _browser_state(self, context: BetaToolsetCallContext) -> BetaBrowserState:
        return self._loop.run(self.session.state())

    def close(self) -> None:
        super().close()
        try:
            self._loop.run(self.session.close())
            if self.session.desktop is not None:
                self._loop.run(self.session.desktop.close())
        finally:
            self._loop.stop()


class AsyncCubicleBrowser(BetaAsyncAbstractBrowserToolset20260801):
    """The same for the SDK's async tool runner (an AsyncAnthropic client)."""

    def __init__(self, desktop: str | AsyncDesktopClient, token: str | None = None, *, confirm: Any = None,
                 configs: Any = None, url_policy: Any = NOT_GIVEN, file_policy: Any = None, tool_configs: Any = None,
                 image_size: tuple[int, int] | None = None):
        file_policy = DesktopFilePolicy() if file_policy is None else file_policy
        super().__init__(configs=configs, confirm=confirm, url_policy=url_policy, file_policy=file_policy,
                         tool_configs=tool_configs)
        url, token = _address(desktop, token)
        self.session = _session(url, token, url_policy, file_policy, image_size)
        self._members = BrowserMembers(self.session)

    async def connect(self) -> None:
        await self.session.connect()

    async def execute(self, context: BetaToolsetCallContext, name: Any, input: Any) -> BetaBrowserMemberResult:
        return await self._members.call(name, input)

    async def _browser_state(self, context: BetaToolsetCallContext) -> BetaBrowserState:
        return await self.session.state()

    async def close(self) -> None:
        await super().close()
        await self.session.close()
        if self.session.desktop is not None:
            await self.session.desktop.close()
