"""The browser toolset's members, each `async def <name>(input)` on one BrowserSession: what
the model asks for, done in the desktop's Chromium the way a person would (clicks land where
the screenshot showed, keys go to the focused element, a navigation waits for its page).
`call` runs one and puts what went wrong in the model's terms.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from typing import Any

from anthropic.tools import ToolError
from anthropic.tools.browser import (
    BetaBrowserNavigateResult,
    BetaNavigationRefused,
    BetaScreenshotResult,
)

from cubicle import imaging

from .browser_keys import chord_keys, playwright_keys, playwright_modifiers
from .browser_policy import navigable_url, refusal
from .browser_session import (
    ACTION_TIMEOUT_MS,
    FIND_LIMIT,
    NAVIGATION_TIMEOUT_MS,
    REF,
    TEXT_LIMIT,
    WHEEL_NOTCH_PX,
    BrowserSession,
    Tab,
    evaluate,
    first_line,
)

_HISTORY = ("back", "forward", "reload")
# Objects whose JSON says nothing ({}): a script's value of these kinds reads as its description.
_DESCRIBED = frozenset({"node", "error", "proxy", "date", "regexp", "map", "set", "weakmap", "weakset", "promise",
                        "typedarray", "arraybuffer", "dataview", "iterator", "generator"})


class BrowserMembers:
    """Every member of browser_toolset_20260801, on one session."""

    def __init__(self, session: BrowserSession):
        self.session = session

    async def call(self, name: str, input: Any) -> Any:
        if not self.session.connected:
            await self.session.connect()
        member = None if name.startswith("_") or name in ("call", "session") else getattr(self, name, None)
        if member is None:
            raise ToolError(f"The browser toolset has no member {name!r}.")
        try:
            return await member(input)
        except ToolError:
            raise
        except Exception as error:
            from playwright.async_api import Error as PlaywrightError

            if isinstance(error, PlaywrightError):
                raise ToolError(first_line(error)) from None
            raise

    async def _click(self, input: Any, button: str = "left", count: int = 1) -> None:
        tab = self.session.tab(input.tab_id)
        modifiers = playwright_modifiers(getattr(input, "modifiers", None))
        if input.target.type == "ref":
            locator = await self.session.element(tab, input.target.ref)
            try:
                await locator.click(button=button, click_count=count, modifiers=modifiers,  # type: ignore[arg-type]
                                    timeout=ACTION_TIMEOUT_MS)
            except Exception as error:  # noqa: BLE001
                raise ToolError(f"{input.target.ref} could not be clicked ({first_line(error)}); it may be hidden, "
                                "covered or disabled: take a screenshot.") from None
        else:
            x, y = await self.session.point(tab, input.target)
            for key in modifiers:
                await tab.page.keyboard.down(key)
            try:
                await tab.page.mouse.click(x, y, button=button, click_count=count)  # type: ignore[arg-type]
            finally:
                for key in reversed(modifiers):
                    await tab.page.keyboard.up(key)
        await self.session.settled(tab)

    async def navigate(self, input: Any) -> BetaBrowserNavigateResult:
        tab = self.session.tab(input.tab_id)
        page = tab.page
        word = input.url.strip().lower()
        try:
            if word in _HISTORY:
                if word != "reload" and not await self._can_go(tab, word):
                    raise ToolError(f"There is no page to go {word} to in this tab.")
                go = {"back": page.go_back, "forward": page.go_forward, "reload": page.reload}[word]
                response = await go(wait_until="load", timeout=NAVIGATION_TIMEOUT_MS)
            else:
                url = navigable_url(input.url)
                if self.session.url_rules is not None and self.session.url_rules.denies(url):
                    raise ToolError(refusal(input.url))
                response = await page.goto(url, wait_until="load", timeout=NAVIGATION_TIMEOUT_MS)
        except ToolError:
            raise
        except Exception as error:  # noqa: BLE001
            message = first_line(error)
            changes = self.session.changes
            if "ERR_ABORTED" in message and changes and isinstance(changes[-1], BetaNavigationRefused):
                raise ToolError(f"{refusal(input.url)} (the page tried to load a refused address)") from None
            if "Timeout" in message:
                raise ToolError(f"The page did not finish loading within {NAVIGATION_TIMEOUT_MS // 1000} s; "
                                "take a screenshot to see how far it got.") from None
            raise ToolError(f"Could not load {input.url[:300]}: {message}") from None
        tab.title = await page.title()
        return BetaBrowserNavigateResult(url=page.url, status=response.status if response else None, title=tab.title)

    async def _can_go(self, tab: Tab, direction: str) -> bool:
        history = await self.session.cdp(tab, "Page.getNavigationHistory")
        index, entries = history["currentIndex"], len(history["entries"])
        return index > 0 if direction == "back" else index < entries - 1

    async def list_tabs(self, input: Any) -> list[dict[str, Any]]:
        return [self.session.entry(tab) for tab in self.session.tabs]

    async def new_tab(self, input: Any) -> dict[str, Any]:
        return self.session.entry(await self.session.open_tab())

    async def switch_tab(self, input: Any) -> dict[str, Any]:
        tab = self.session.tab(input.tab_id)
        await self.session.activate(tab)
        return self.session.entry(tab)

    async def close_tab(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        if len(self.session.tabs) == 1:
            raise ToolError(f"{tab.id} is the only tab: closing it would close the browser window. "
                            "Navigate it elsewhere instead.")
        await self.session.close_tab(tab)

    async def read_page(self, input: Any) -> str:
        tab = self.session.tab(input.tab_id)
        depth = 15 if input.depth is None else input.depth
        if depth < 0:
            raise ToolError("depth must be 0 or more (default 15).")
        if input.ref is not None and not REF.match(input.ref):
            raise ToolError(f"{input.ref!r} is not an element ref; refs look like ref_12.")
        answer = await self.session.agent(tab, "readPage", depth=depth, filter=input.filter, ref=input.ref,
                                          maxChars=TEXT_LIMIT)
        return answer["text"]

    async def find(self, input: Any) -> str:
        tab = self.session.tab(input.tab_id)
        if not input.query.strip():
            raise ToolError("The query is empty; say what to look for, e.g. 'search box' or 'Sign in button'.")
        answer = await self.session.agent(tab, "find", query=input.query, limit=FIND_LIMIT)
        return answer["text"] or f"Nothing on the page matches {input.query[:200]!r}."

    async def get_page_text(self, input: Any) -> str:
        return (await self.session.agent(self.session.tab(input.tab_id), "pageText", maxChars=TEXT_LIMIT))["text"]

    async def form_input(self, input: Any) -> str | None:
        tab = self.session.tab(input.tab_id)
        await self.session.element(tab, input.target.ref)
        answer = await self.session.agent(tab, "formInput", ref=input.target.ref, value=input.value)
        await self.session.settled(tab)
        return answer.get("done")

    async def file_upload(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        if input.document_ids:
            raise ToolError("file_upload on this desktop takes paths of files on the desktop, not document ids.")
        paths = list(input.paths or [])
        if not paths:
            raise ToolError("Give the paths of the files to upload (absolute paths on the desktop).")
        ref = input.target.ref
        await self.session.element(tab, ref)
        found = await self.session.agent(tab, "locate", ref=ref, scroll=True)
        if found["tag"] != "input" or found["type"] != "file":
            raise ToolError(f"{ref} is a <{found['tag']}>, not a file input; find the element read_page shows "
                            "with type=file.")
        if len(paths) > 1 and not found["multiple"]:
            raise ToolError(f"{ref} takes one file; {len(paths)} were given.")
        for path in paths:
            await self._check_desktop_file(path)
        cdp = await self.session.cdp_session(tab)
        try:
            element = (await cdp.send("Runtime.evaluate", {
                "expression": f'document.querySelector(\'[data-cubicle-ref="{ref}"]\')'})).get("result", {})
            if not element.get("objectId"):
                raise ToolError(f"{ref} is not on the page any more; call read_page or find for fresh refs.")
            # Chromium reads the files itself, on the desktop: Playwright's set_input_files would
            # read them here and send their bytes.
            await cdp.send("DOM.setFileInputFiles", {"files": paths, "objectId": element["objectId"]})
        finally:
            await cdp.detach()
        await self.session.settled(tab)

    async def _check_desktop_file(self, path: str) -> None:
        if self.session.desktop is None:
            return
        from cubicle.client import CubicleError

        folder, _, name = path.rpartition("/")
        try:
            listing = await self.session.desktop.read_file(folder or "/")
        except CubicleError as error:
            raise ToolError(f"{path} cannot be read on the desktop: {error.message}") from None
        entry = next((e for e in listing.entries or [] if e.name == name), None)
        if entry is None and not listing.truncated:
            raise ToolError(f"There is no file {path} on the desktop.")
        if entry is not None and entry.type != "file":
            raise ToolError(f"{path} is a {entry.type}, not a file.")

    async def scroll_to(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        locator = await self.session.element(tab, input.target.ref)
        try:
            await locator.scroll_into_view_if_needed(timeout=ACTION_TIMEOUT_MS)
        except Exception as error:  # noqa: BLE001
            raise ToolError(f"{input.target.ref} could not be scrolled into view ({first_line(error)}).") from None
        await self.session.settled(tab)

    async def screenshot(self, input: Any) -> BetaScreenshotResult:
        tab = self.session.tab(input.tab_id)
        await self.session.activate(tab)  # a tab behind another draws nothing: look at it as a person would
        viewport = await self.session.viewport(tab)
        size = self.session.space.fit(viewport)
        data = await tab.page.screenshot(type="png", caret="initial", scale="css", timeout=10_000)
        image_size = viewport
        if size != viewport:
            from PIL import Image

            image = Image.open(io.BytesIO(data)).convert("RGB")
            data = imaging.encode_png(imaging.resize(image, size))
            image_size = size
        self.session.space.image, self.session.space.viewport = image_size, viewport
        return BetaScreenshotResult(data=base64.b64encode(data).decode("ascii"), media_type="image/png")

    async def zoom(self, input: Any) -> BetaScreenshotResult:
        tab = self.session.tab(input.tab_id)
        region = list(input.region)
        if len(region) != 4:
            raise ToolError("region is [x0, y0, x1, y1] in the screenshot's coordinates.")
        await self.session.ensure_space(tab)
        x0, y0, x1, y1 = region
        width, height = self.session.space.image or (0, 0)
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ToolError(f"region {region} is not a box inside the {width}x{height} screenshot "
                            "(x0 < x1, y0 < y1).")
        viewport = self.session.space.viewport or (width, height)
        sx, sy = viewport[0] / width, viewport[1] / height
        clip = {"x": x0 * sx, "y": y0 * sy, "width": (x1 - x0) * sx, "height": (y1 - y0) * sy}
        out = imaging.fitted_size(x1 - x0, y1 - y0, width, height)
        scroll = await evaluate(tab, "[visualViewport.pageLeft, visualViewport.pageTop]")
        # Chromium renders the region at the larger scale: text stays sharp.
        shot = await self.session.cdp(tab, "Page.captureScreenshot", {"format": "png", "clip": {
            **clip, "x": clip["x"] + scroll[0], "y": clip["y"] + scroll[1], "scale": out[0] / clip["width"]}})
        return BetaScreenshotResult(data=shot["data"], media_type="image/png")

    async def left_click(self, input: Any) -> None:
        await self._click(input)

    async def right_click(self, input: Any) -> None:
        await self._click(input, "right")

    async def middle_click(self, input: Any) -> None:
        await self._click(input, "middle")

    async def double_click(self, input: Any) -> None:
        await self._click(input, count=2)

    async def triple_click(self, input: Any) -> None:
        await self._click(input, count=3)

    async def hover(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        if input.target.type == "ref":
            locator = await self.session.element(tab, input.target.ref)
            try:
                await locator.hover(timeout=ACTION_TIMEOUT_MS)
            except Exception as error:  # noqa: BLE001
                raise ToolError(f"{input.target.ref} could not be hovered ({first_line(error)}).") from None
        else:
            await tab.page.mouse.move(*await self.session.point(tab, input.target))
        await self.session.settled(tab)

    async def left_click_drag(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        start, end = await self.session.point(tab, input.from_), await self.session.point(tab, input.target)
        mouse = tab.page.mouse
        await mouse.move(*start)
        await mouse.down()
        await mouse.move(*end, steps=10)
        await mouse.up()
        await self.session.settled(tab)

    async def left_mouse_down(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        await tab.page.mouse.move(*await self.session.point(tab, input.target))
        await tab.page.mouse.down()

    async def left_mouse_up(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        await tab.page.mouse.move(*await self.session.point(tab, input.target))
        await tab.page.mouse.up()
        await self.session.settled(tab)

    async def mouse_move(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        await tab.page.mouse.move(*await self.session.point(tab, input.target))

    async def scroll(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        amount = 3 if input.scroll_amount is None else input.scroll_amount
        if not 1 <= amount <= 10:
            raise ToolError("scroll_amount is 1 to 10 wheel notches (default 3).")
        x, y = await self.session.point(tab, input.target)
        dx, dy = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}[input.scroll_direction]
        await tab.page.mouse.move(x, y)
        await tab.page.mouse.wheel(dx * amount * WHEEL_NOTCH_PX, dy * amount * WHEEL_NOTCH_PX)
        await self.session.settled(tab)

    async def type(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        await tab.page.keyboard.type(input.text)
        await self.session.settled(tab)

    async def key(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        keys = playwright_keys(input.text)
        repeat = 1 if input.repeat is None else input.repeat
        if not 1 <= repeat <= 100:
            raise ToolError("repeat is 1 to 100.")
        for _ in range(repeat):
            for key in keys:
                await tab.page.keyboard.press(key)
        await self.session.settled(tab)

    async def hold_key(self, input: Any) -> None:
        tab = self.session.tab(input.tab_id)
        if not 0 <= input.duration <= 30:
            raise ToolError("duration is 0 to 30 seconds.")
        held = chord_keys(input.text.strip())
        for key in held:
            await tab.page.keyboard.down(key)
        try:
            await asyncio.sleep(input.duration)
        finally:
            for key in reversed(held):
                await tab.page.keyboard.up(key)
        await self.session.settled(tab)

    async def wait(self, input: Any) -> None:
        if not 0 <= input.duration <= 30:
            raise ToolError("duration is 0 to 30 seconds.")
        await asyncio.sleep(input.duration)

    async def read_console(self, input: Any) -> str:
        tab = self.session.tab(input.tab_id)
        lines, tab.console = tab.console, []
        dropped, tab.dropped["console"] = tab.dropped["console"], 0
        if dropped:
            lines.insert(0, f"[{dropped} earlier messages dropped]")
        return "\n".join(lines) or "No console messages since the last read."

    async def read_network(self, input: Any) -> str:
        tab = self.session.tab(input.tab_id)
        lines, pending = [], 0
        for key, entry in list(tab.network.items()):
            if entry["outcome"] is None:
                pending += 1
                continue
            request = entry["request"]
            lines.append(f"{request.method} {request.url[:500]} -> {entry['outcome']}")
            del tab.network[key]
        dropped, tab.dropped["network"] = tab.dropped["network"], 0
        if dropped:
            lines.insert(0, f"[{dropped} earlier requests dropped]")
        if pending:
            lines.append(f"[{pending} requests still pending]")
        return "\n".join(lines) or "No requests since the last read."

    async def javascript_exec(self, input: Any) -> str:
        tab = self.session.tab(input.tab_id)
        cdp = await self.session.cdp_session(tab)
        try:
            # replMode: the value of the last statement, top-level await, let/const allowed again
            answer = await cdp.send("Runtime.evaluate", {
                "expression": input.text, "awaitPromise": True, "replMode": True, "userGesture": True,
                "objectGroup": "cubicle", "timeout": NAVIGATION_TIMEOUT_MS})
            thrown = answer.get("exceptionDetails")
            if thrown:
                description = (thrown.get("exception") or {}).get("description") or thrown.get("text") or "an error"
                raise ToolError(f"The script threw: {description.splitlines()[0][:2000]}")
            text = await _rendered(cdp, answer.get("result") or {})
        finally:
            await cdp.detach()
        await self.session.settled(tab)
        return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + f"... [cut at {TEXT_LIMIT:,} characters]"


async def _rendered(cdp: Any, result: dict[str, Any]) -> str:
    """A script's value as JSON; an element, a function or what JSON cannot hold, as its description."""
    if "unserializableValue" in result:
        return str(result["unserializableValue"])  # NaN, Infinity, -0, 12n
    if result.get("type") == "undefined":
        return "undefined"
    if "value" in result:
        return json.dumps(result["value"], ensure_ascii=False)
    described = result.get("description") or result.get("type") or "undefined"
    if result.get("type") != "object" or result.get("subtype") in _DESCRIBED or not result.get("objectId"):
        return described  # a function, a symbol, an element, an error
    try:
        copied = await cdp.send("Runtime.callFunctionOn", {
            "objectId": result["objectId"], "functionDeclaration": "function () { return this; }",
            "returnByValue": True})
    except Exception:  # noqa: BLE001 - cyclic, or too deep to copy
        return described
    value = copied.get("result", {})
    return json.dumps(value["value"], ensure_ascii=False) if "value" in value else described
