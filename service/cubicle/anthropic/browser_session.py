"""The desktop's Chromium as the browser toolset sees it, over CDP with Playwright's async API:
one attachment, its tabs and what its pages do on their own. The members
(browser_members.py) act through it; CubicleBrowser (sync) and AsyncCubicleBrowser share it.

Playwright attaches to the running browser (`connect_over_cdp` through the desktop's /cdp,
`no_defaults`: no download, focus or media overrides on a browser a person shares) and uses
its default context: its pages are the tabs, named t1, t2 ... in the order they were seen, a
name never reused. What only the desktop knows (where its files are) comes from Chromium's
own command line. Page reading and form filling run in the page (page_agent.js), one
evaluation per call. Everything the model should hear about later (a dismissed dialog, a
refused navigation, a tab a page opened, a download) waits in `changes` for the next
browser_state.
"""
from __future__ import annotations

import asyncio
import re
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from anthropic.tools import ToolError
from anthropic.tools.browser import (
    BetaBrowserState,
    BetaDialogDismissed,
    BetaNavigationRefused,
    TabMissingError,
)

from cubicle import imaging

from .browser_policy import DesktopFilePolicy, URLRules

if TYPE_CHECKING:
    from playwright.async_api import (
        Browser,
        BrowserContext,
        Page,
        Playwright,
        Request,
    )

    from cubicle.client import AsyncDesktopClient

TEXT_LIMIT = 50_000  # characters of read_page, get_page_text and javascript_exec
FIND_LIMIT = 20
LOG_LIMIT = 1000  # console and network entries kept per tab between reads
ACTION_TIMEOUT_MS = 5_000  # an element that cannot be acted on by then is reported, not waited for
NAVIGATION_TIMEOUT_MS = 30_000
PAGE_ANSWER_S = 20.0
WHEEL_NOTCH_PX = 100
PROFILE_SUFFIX = "/.config/cubicle-chromium"  # cubicle.server.chromium puts the profile there
_PAGE_AGENT = resources.files("cubicle.anthropic").joinpath("page_agent.js").read_text(encoding="utf-8")
REF = re.compile(r"^ref_\d+$")
# Two frames drawn; a hidden tab draws none, so it does not wait.
_SETTLE_JS = ("document.visibilityState !== 'visible' || "
              "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:500]


class _Space:
    """The model's coordinates: the last screenshot's size, over the viewport (CSS px) it showed."""

    def __init__(self, limits: tuple[int, int] | None):
        self.limits = limits
        self.image: tuple[int, int] | None = None
        self.viewport: tuple[int, int] | None = None

    def fit(self, viewport: tuple[int, int]) -> tuple[int, int]:
        width, height = viewport
        if self.limits:
            return imaging.scaled_size(width, height, *self.limits)
        return imaging.model_image_size(width, height, large=True)

    def to_viewport(self, x: int, y: int) -> tuple[float, float]:
        assert self.image is not None and self.viewport is not None
        width, height = self.image
        if not (0 <= x < width and 0 <= y < height):
            raise ToolError(f"The point ({x}, {y}) is outside the {width}x{height} screenshot; "
                            "use coordinates of the last screenshot.")
        if self.image == self.viewport:
            return float(x), float(y)
        return imaging.to_screen(x, y, self.image, self.viewport)


class Tab:
    def __init__(self, tab_id: str, page: Page):
        self.id = tab_id
        self.page = page
        self.title = ""
        self.next_ref = 1  # per tab, never reset: a ref from before a navigation is stale, not another element
        self.console: list[str] = []
        self.network: dict[int, dict[str, Any]] = {}
        self.dropped = {"console": 0, "network": 0}


class BrowserSession:
    """One attachment to the desktop's Chromium: its tabs, what its pages do on their own, and
    the helpers the members (browser_members.py) act through."""

    def __init__(self, endpoint: str, headers: dict[str, str], *, desktop: AsyncDesktopClient | None,
                 url_rules: URLRules | None, file_policy: Any, image_limits: tuple[int, int] | None):
        self.endpoint = endpoint
        self.headers = headers
        self.desktop = desktop
        self.url_rules = url_rules
        self.file_policy = file_policy
        self.space = _Space(image_limits)
        self.changes: list[Any] = []
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._tabs: dict[str, Tab] = {}
        self._by_page: dict[int, Tab] = {}
        self._active: Tab | None = None
        self._tab_numbers = 0
        self._connecting = asyncio.Lock()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._browser_session: Any = None
        self._default_context_id: str | None = None
        self._uncounted_targets = 0  # page targets that never become tabs (hidden ones)

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        async with self._connecting:
            if self._browser is not None and self._browser.is_connected():
                return
            try:
                from playwright.async_api import async_playwright
            except ImportError:
                raise ToolError("The browser toolset needs the playwright package on this machine "
                                "(pip install playwright; no browser download is needed).") from None
            if self._playwright is None:
                self._playwright = await async_playwright().start()
            try:
                browser = await self._playwright.chromium.connect_over_cdp(
                    self.endpoint, headers=self.headers, no_defaults=True, timeout=60_000)
            except Exception as error:  # noqa: BLE001 - whatever it was, the model reads why and may retry
                raise ToolError(f"The desktop's browser could not be reached ({first_line(error)}); "
                                "try again in a moment.") from None
            self._browser = browser
            self._context = browser.contexts[0]
            self._tabs.clear()
            self._by_page.clear()
            self._active = None
            self._context.on("page", self._on_new_page)
            session = self._browser_session = await browser.new_browser_cdp_session()
            await self._watch_downloads(session)
            if self.url_rules is not None:
                await self._guard_requests(session)
            for page in self._context.pages:
                self._adopt(page)
            if not self._tabs:
                self._adopt(await self._context.new_page())
            self._active = self._active or next(reversed(self._tabs.values()))
            others = set((await session.send("Target.getBrowserContexts")).get("browserContextIds", []))
            self._default_context_id = next((target.get("browserContextId") for target in await self._page_targets()
                                             if target.get("browserContextId") not in others), None)
            self._uncounted_targets = 0
            await self._bind_file_policy(session)

    async def _bind_file_policy(self, session: Any) -> None:
        """The desktop user's home (the default upload root) and the profile (never uploaded),
        from the command line the desktop started Chromium with."""
        if not isinstance(self.file_policy, DesktopFilePolicy):
            return
        command_line = (await session.send("SystemInfo.getInfo")).get("commandLine", "")
        found = re.search(r"--user-data-dir=(.+?)(?= --|$)", command_line)
        profile = found.group(1) if found else ""
        if profile.endswith(PROFILE_SUFFIX):
            self.file_policy.bind_desktop(profile[: -len(PROFILE_SUFFIX)] or "/", profile)

    async def close(self) -> None:
        """Lets go of the browser (which stays open on the desktop) and stops Playwright."""
        if self._playwright is not None:
            try:
                # Disconnects only: connect_over_cdp did not launch the browser, so it is not closed.
                if self._browser is not None:
                    await self._browser.close()
            finally:
                await self._playwright.stop()
        self._playwright = self._browser = self._context = None

    # -- tabs --------------------------------------------------------------------------------

    def _adopt(self, page: Page) -> Tab:
        known = self._by_page.get(id(page))
        if known is not None:
            return known
        self._tab_numbers += 1
        tab = Tab(f"t{self._tab_numbers}", page)
        self._tabs[tab.id] = tab
        self._by_page[id(page)] = tab
        page.on("dialog", self._on_dialog)
        page.on("console", lambda message: self._console(tab, _console_line(message)))
        page.on("pageerror", lambda error: self._console(tab, f"[uncaught] {first_line(error)}"))
        page.on("request", lambda request: self._on_request(tab, request))
        page.on("requestfinished", lambda request: self._on_request_done(tab, request, None))
        page.on("requestfailed", lambda request: self._on_request_done(tab, request, request.failure or "failed"))
        page.on("close", lambda _: self._forget(tab))
        return tab

    def _on_new_page(self, page: Page) -> None:
        """A tab the page opened (a link to a new window, window.open): Chromium shows it in front."""
        if id(page) in self._by_page:
            return
        tab = self._adopt(page)
        self._active = tab
        self.changes.append({"type": "tab_opened", "tab_id": tab.id})

    def _forget(self, tab: Tab) -> None:
        self._tabs.pop(tab.id, None)
        self._by_page.pop(id(tab.page), None)
        if self._active is tab:
            self._active = next(reversed(self._tabs.values()), None)

    def tab(self, tab_id: str | None) -> Tab:
        if tab_id:
            if tab_id not in self._tabs:
                raise TabMissingError()
            return self._tabs[tab_id]
        if self._active is None:
            raise ToolError("No tab is open; open one with new_tab.")
        return self._active

    @property
    def tabs(self) -> list[Tab]:
        return list(self._tabs.values())

    @property
    def active(self) -> Tab | None:
        return self._active

    @property
    def connected(self) -> bool:
        return self._browser is not None and self._browser.is_connected()

    async def open_tab(self) -> Tab:
        """A new tab, in front."""
        assert self._context is not None
        tab = self._adopt(await self._context.new_page())
        await self.activate(tab)
        return tab

    async def activate(self, tab: Tab) -> None:
        self._active = tab
        await tab.page.bring_to_front()

    async def close_tab(self, tab: Tab) -> None:
        await tab.page.close()
        self._forget(tab)
        if self._active is not None:
            await self._active.page.bring_to_front()

    def entry(self, tab: Tab) -> dict[str, Any]:
        return {"tab_id": tab.id, "title": tab.title, "url": tab.page.url, "active": tab is self._active}

    async def state(self) -> BetaBrowserState:
        tabs = list(self._tabs.values())
        if self._browser is None or not self._browser.is_connected():
            tabs = []
        titles = await asyncio.gather(*(asyncio.wait_for(tab.page.title(), 2.0) for tab in tabs),
                                      return_exceptions=True)
        for tab, title in zip(tabs, titles):
            if isinstance(title, str):  # a busy or closing page keeps its last title
                tab.title = title
        changes, self.changes = self.changes, []
        return BetaBrowserState(tabs=[self.entry(tab) for tab in tabs], state_changes=changes)

    # -- what pages do on their own ----------------------------------------------------------

    async def _on_dialog(self, dialog: Any) -> None:
        self.changes.append(BetaDialogDismissed(kind=dialog.type, message=dialog.message[:1000]))
        try:
            await dialog.dismiss()
        except Exception:  # noqa: BLE001,S110 - the page went away with its dialog
            pass

    async def _watch_downloads(self, session: Any) -> None:
        """Downloads go where Chromium puts them for a person (~/Downloads on the desktop);
        the model hears that they started and how they ended."""
        urls: dict[str, str] = {}

        def began(event: dict[str, Any]) -> None:
            urls[event["guid"]] = event["url"]
            self.changes.append({"type": "download_started", "download_id": event["guid"], "url": event["url"]})

        def progressed(event: dict[str, Any]) -> None:
            guid, state = event["guid"], event.get("state")
            url = urls.get(guid, "")
            if state == "completed":
                change = {"type": "download_completed", "download_id": guid, "url": url,
                          "size_bytes": int(event.get("totalBytes") or event.get("receivedBytes") or 0)}
                if event.get("filePath"):
                    change["path"] = event["filePath"]  # shown only if the file policy lets the model see it
                self.changes.append(change)
            elif state == "canceled":
                self.changes.append({"type": "download_failed", "download_id": guid, "url": url, "error": "canceled"})

        session.on("Browser.downloadWillBegin", began)
        session.on("Browser.downloadProgress", progressed)
        await session.send("Browser.setDownloadBehavior", {"behavior": "default", "eventsEnabled": True})

    async def _guard_requests(self, session: Any) -> None:
        """Every request of the browser, each redirect hop and a new tab's first one included,
        waits for `_vet` (Fetch on the browser's own session: Playwright's routing lets
        redirects through unasked, and starts on a new tab only after its first request)."""
        session.on("Fetch.requestPaused", lambda event: self._spawn(self._vet(session, event)))
        await session.send("Fetch.enable", {"patterns": [{"urlPattern": "*", "requestStage": "Request"}]})

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)

    async def _vet(self, session: Any, event: dict[str, Any]) -> None:
        """One request: on its way unless the URL rules deny it; a denied one never leaves the browser."""
        assert self.url_rules is not None
        request_id = event["requestId"]
        try:
            if not self.url_rules.denies(event["request"]["url"]):
                await session.send("Fetch.continueRequest", {"requestId": request_id})
                return
            main_frame = event.get("resourceType") == "Document" and await self._is_main_frame(session, event)
            if main_frame:
                self.changes.append(BetaNavigationRefused())
            # "Aborted", as if stopped: the tab keeps its page rather than showing an error page
            await session.send("Fetch.failRequest", {"requestId": request_id,
                                                     "errorReason": "Aborted" if main_frame else "BlockedByClient"})
        except Exception:  # noqa: BLE001,S110 - the request or the connection went away meanwhile
            pass

    async def _is_main_frame(self, session: Any, event: dict[str, Any]) -> bool:
        """A tab's main frame has the id of its target."""
        targets = (await session.send("Target.getTargets")).get("targetInfos", [])
        return any(target.get("targetId") == event.get("frameId") for target in targets)

    def _console(self, tab: Tab, line: str) -> None:
        if len(tab.console) >= LOG_LIMIT:
            tab.console.pop(0)
            tab.dropped["console"] += 1
        tab.console.append(line)

    def _on_request(self, tab: Tab, request: Request) -> None:
        if len(tab.network) >= LOG_LIMIT:
            tab.network.pop(next(iter(tab.network)))
            tab.dropped["network"] += 1
        tab.network[id(request)] = {"request": request, "started": time.monotonic(), "outcome": None}

    async def _on_request_done(self, tab: Tab, request: Request, failure: str | None) -> None:
        entry = tab.network.get(id(request))
        if entry is None:
            return
        took = (time.monotonic() - entry["started"]) * 1000
        if failure is not None:
            entry["outcome"] = f"failed ({failure}), {took:.0f} ms"
            return
        response = await request.response()
        mime = (response.headers.get("content-type", "") if response else "").split(";")[0] or "-"
        status = response.status if response else "-"
        entry["outcome"] = f"{status} {mime}, {took:.0f} ms"

    # -- helpers -----------------------------------------------------------------------------

    async def agent(self, tab: Tab, op: str, **fields: Any) -> dict[str, Any]:
        answer = await evaluate(tab, _PAGE_AGENT, {"op": op, "next": tab.next_ref, **fields})
        tab.next_ref = max(tab.next_ref, int(answer.get("next") or 0))
        if answer.get("error") == "stale":
            raise ToolError(f"{fields.get('ref')} is not on the page any more (the page changed or navigated); "
                            "call read_page or find for fresh refs.")
        if answer.get("error"):
            raise ToolError(answer["error"])
        return answer

    async def element(self, tab: Tab, ref: str) -> Any:
        if not REF.match(ref or ""):
            raise ToolError(f"{ref!r} is not an element ref; refs look like ref_12 and come from read_page or find.")
        locator = tab.page.locator(f'[data-cubicle-ref="{ref}"]').first
        if await locator.count() == 0:
            raise ToolError(f"{ref} is not on the page any more (the page changed or navigated); "
                            "call read_page or find for fresh refs.")
        return locator

    async def point(self, tab: Tab, target: Any) -> tuple[float, float]:
        await self.ensure_space(tab)
        return self.space.to_viewport(target.x, target.y)

    async def ensure_space(self, tab: Tab) -> None:
        if self.space.image is None:  # no screenshot yet: the one it would have taken
            viewport = await self.viewport(tab)
            self.space.image, self.space.viewport = self.space.fit(viewport), viewport

    async def viewport(self, tab: Tab) -> tuple[int, int]:
        width, height = await evaluate(tab, "[innerWidth, innerHeight]")
        return int(width), int(height)

    async def settled(self, tab: Tab) -> None:
        """After input: a tab it opened is known, a navigation it started has loaded, and the
        page has drawn the change."""
        await self._tabs_caught_up()
        page = tab.page
        try:
            await page.wait_for_load_state("load", timeout=NAVIGATION_TIMEOUT_MS)
            await asyncio.wait_for(page.evaluate(_SETTLE_JS), 1.0)
        except Exception:  # noqa: BLE001,S110 - closed by the action, or hidden (no frames drawn): nothing to wait for
            pass

    async def cdp_session(self, tab: Tab) -> Any:
        """A CDP session of its own on the tab's page (detach it when done)."""
        assert self._context is not None
        return await self._context.new_cdp_session(tab.page)

    async def cdp(self, tab: Tab, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One CDP command to the tab's page."""
        session = await self.cdp_session(tab)
        try:
            return await session.send(method, params or {})
        finally:
            await session.detach()


    async def _page_targets(self) -> list[dict[str, Any]]:
        targets = (await self._browser_session.send("Target.getTargets")).get("targetInfos", [])
        return [target for target in targets if target.get("type") == "page" and (
            self._default_context_id is None or target.get("browserContextId") == self._default_context_id)]

    async def _tabs_caught_up(self, timeout: float = 2.0) -> None:
        """Chromium knows of a tab (a link's target=_blank, window.open) a moment before
        Playwright reports it: wait for it, so this call's report has it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                count = len(await self._page_targets())
            except Exception:  # noqa: BLE001 - disconnected: the next call reconnects
                return
            waiting = count - self._uncounted_targets - len(self._tabs)
            if waiting <= 0:
                self._uncounted_targets = max(0, count - len(self._tabs))
                return
            if time.monotonic() > deadline:
                self._uncounted_targets = count - len(self._tabs)
                return
            await asyncio.sleep(0.02)

async def evaluate(tab: Tab, script: str, argument: Any = None) -> Any:
    """A script in the page, within PAGE_ANSWER_S: a page stuck in a loop of its own must not hold the run."""
    try:
        return await asyncio.wait_for(tab.page.evaluate(script, argument), PAGE_ANSWER_S)
    except TimeoutError:
        raise ToolError(f"The page did not answer within {PAGE_ANSWER_S:.0f} s (a script of its own keeps it busy); "
                        "wait, reload it, or take a screenshot.") from None


def _console_line(message: Any) -> str:
    location = message.location or {}
    where = f" ({location.get('url')}:{location.get('lineNumber')})" if location.get("url") else ""
    return f"[{message.type}] {message.text[:2000]}{where}"
