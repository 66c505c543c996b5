"""The browser toolset (CubicleBrowser) on a real desktop's Chromium, driven by the real SDK's
tool_runner against the scripted Messages API. Its effects are checked as a person would see
them: a web server of the test's own (on 127.0.0.1) records every request, form and upload
that reaches it, and the desktop's own API shows the window and its colours.

The module runs a desktop of its own, with its Chromium on a free DevTools port, so the
browser window stays off the desktop the other tests share.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.parser
import email.policy
import io
import json
import re
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anthropic
import pytest
from anthropic.tools.browser import BetaToolsetCallContext
from PIL import Image
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from cubicle.agent.scripted_api import (
    ScriptedAPI,
    message,
    text,
    tool_results,
    tool_use,
)
from cubicle.anthropic import (
    AsyncCubicleBrowser,
    CubicleBrowser,
    CubicleComputer,
    URLRules,
)
from cubicle.bench.browser import element_page, measure_read_page
from cubicle.client import DesktopClient
from support import free_port, run_tool_runner, running_desktop, wait_until
from support import text_of_result as text_of
from support import tool_results_after_each_turn as results

MODEL = "claude-sonnet-5"
ALL_MEMBERS_ON = {name: {"enabled": True} for name in ("file_upload", "javascript_exec", "read_console", "read_network")}
HOME_GREEN = (46, 139, 87)
SECOND_BLUE = (30, 144, 255)
MAGENTA = (255, 0, 255)

PAGES = {
    "/": """<title>Cubicle test home</title>
<body style="background: rgb(46, 139, 87); margin: 0; min-height: 100vh">
<h1>Home</h1>
<p>The test's own home page.</p>
<a href="/second">Second page</a>
<a href="/second?popup=1" target="_blank">Second in a new tab</a>
<a href="/denied/secret">Denied link</a>
<a href="/to-denied">Redirect link</a>
<script>console.log("home loaded", 7); console.warn("careful");</script>
</body>""",
    "/second": """<title>Second page</title><body style="background: rgb(30, 144, 255); margin: 0; min-height: 100vh">
<h1>Second</h1></body>""",
    "/form": """<title>Form page</title>
<body style="margin: 0">
<form method="post" action="/submit">
<label>Name <input name="name"></label>
<label>Email <input name="email" type="email"></label>
<label>Colour <select name="colour"><option>Red</option><option>Green</option><option>Blue</option></select></label>
<label><input type="checkbox" name="agree"> I agree</label>
<label>Notes <textarea name="notes"></textarea></label>
<button>Send</button>
</form>
<input id="typed" aria-label="Typed here" style="display: block; margin: 40px; width: 400px; height: 60px;
 background: rgb(255, 0, 255); border: none; font-size: 24px">
</body>""",
    "/upload": """<title>Upload page</title>
<form method="post" action="/uploaded" enctype="multipart/form-data">
<label>Document <input type="file" name="doc"></label>
<button>Upload</button>
</form>""",
    "/dialog": """<title>Dialog page</title>
<button onclick="document.title = confirm('Delete everything?') ? 'answered yes' : 'answered no'">Ask</button>""",
    "/denied/secret": "<title>Secret</title>never to be seen",
    "/download": '<title>Download page</title><a href="/report.csv">Get the report</a>',
    # Every pointer and key event it hears, written on the page.
    "/input": """<title>Input page</title>
<body style="margin: 0; height: 3000px">
<div id="box" style="position: absolute; left: 100px; top: 100px; width: 200px; height: 120px;
 background: rgb(255, 165, 0)">Box</div>
<input id="slider" type="range" min="0" max="100" value="0" aria-label="Volume"
 style="position: absolute; left: 100px; top: 300px; width: 400px; margin: 0">
<textarea id="pad" aria-label="Pad" style="position: absolute; left: 100px; top: 360px; width: 400px; height: 100px">
</textarea>
<pre id="log" style="position: absolute; left: 600px; top: 100px"></pre>
<p style="position: absolute; top: 2800px">Bottom marker</p>
<script>
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
const box = document.getElementById("box");
for (const kind of ["mousedown", "mouseup", "click", "dblclick", "contextmenu", "auxclick", "mouseenter"]) {
  box.addEventListener(kind, (e) => log(`${kind} button=${e.button} detail=${e.detail} shift=${e.shiftKey}`));
}
box.addEventListener("contextmenu", (e) => e.preventDefault());
box.addEventListener("mouseleave", () => log("mouseleave"));
document.addEventListener("keydown", (e) => { if (e.key === "Shift") log(`keydown Shift`); });
document.addEventListener("keyup", (e) => { if (e.key === "Shift") log("keyup Shift"); });
</script>
</body>""",
}


@dataclass
class Site:
    """The test's web server: its pages, and everything that reached it."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    forms: list[dict[str, list[str]]] = field(default_factory=list)
    uploads: list[tuple[str, bytes]] = field(default_factory=list)
    url: str = ""

    def paths(self) -> list[str]:
        """The paths asked for, but the favicon Chromium fetches by itself."""
        return [path for _, path in self.requests if path != "/favicon.ico"]

    def saw(self, path: str) -> bool:
        return path in self.paths()


def serve_site() -> tuple[Site, ThreadingHTTPServer]:
    site = Site()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            site.requests.append(("GET", self.path))
            path = urllib.parse.urlsplit(self.path).path
            if path == "/to-denied":
                self.send_response(302)
                self.send_header("Location", "/denied/secret")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if path == "/report.csv":
                data = b"month,total\njanuary,42\n"
                self.send_response(200)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Disposition", 'attachment; filename="report.csv"')
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            if path == "/many":
                count = int(urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["n"][0])
                body = "<title>Many</title>" + "".join(f"<button>Button {n}</button>" for n in range(count))
                return self._page(body)
            if path not in PAGES:
                self.send_error(404)
                return
            self._page(PAGES[path])

        def do_POST(self):
            site.requests.append(("POST", self.path))
            body = self.rfile.read(int(self.headers["Content-Length"] or 0))
            if self.path == "/submit":
                site.forms.append(urllib.parse.parse_qs(body.decode(), keep_blank_values=True))
                return self._page("<title>Submitted</title>Thank you.")
            if self.path == "/uploaded":
                parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(
                    b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body)
                for part in parsed.iter_parts():
                    site.uploads.append((part.get_filename() or "", part.get_payload(decode=True) or b""))
                return self._page("<title>Uploaded</title>Got it.")
            self.send_error(404)

        def _page(self, html: str) -> None:
            data = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return site, server


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_desktop(tmp_path_factory):
    """A desktop of this module's own, its Chromium's DevTools on a free port."""
    with contextlib.ExitStack() as stack:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("CDP_PORT", str(free_port()))  # read by `cubicle desktop` as it starts
            running = stack.enter_context(running_desktop(tmp_path_factory.mktemp("browser-desktop")))
        yield running


@pytest.fixture(scope="module")
def desktop_api(own_desktop):
    with DesktopClient(own_desktop.url, own_desktop.token, timeout=60) as api:
        yield api


@pytest.fixture(scope="module")
def served():
    site, server = serve_site()
    yield site
    server.shutdown()
    server.server_close()


@pytest.fixture
def site(served):
    served.requests.clear()
    served.forms.clear()
    served.uploads.clear()
    return served


class Permissions:
    """The confirm hook: what a person would approve. Everything, unless a test says no."""

    def __init__(self):
        self.refused: set[str] = set()
        self.asked: list[str] = []

    def __call__(self, context) -> bool:
        self.asked.append(context.member)
        return context.member not in self.refused


@pytest.fixture(scope="module")
def permissions():
    return Permissions()


@pytest.fixture(scope="module")
def browser(own_desktop, served, permissions):
    rules = URLRules(deny=[f"{served.url}/denied"])
    with CubicleBrowser(own_desktop.url, own_desktop.token, confirm=permissions, url_policy=rules,
                        configs=ALL_MEMBERS_ON) as toolset:
        toolset.connect()
        yield toolset


@pytest.fixture(autouse=True)
def fresh_start(browser, permissions):
    """Each test starts with everything permitted and one tab, whatever the last one left."""
    permissions.refused.clear()
    permissions.asked.clear()
    context = BetaToolsetCallContext(tool_use=None)
    tabs = state_of({"content": browser.call(context, "list_tabs", {})})["tabs"]
    for tab in tabs[1:]:
        browser.call(context, "close_tab", {"tab_id": tab["tab_id"]})
    permissions.asked.clear()


# -- helpers --------------------------------------------------------------------------------


def run(tools: list, turns: list) -> ScriptedAPI:
    return run_tool_runner(tools, turns, "Work in the browser.")


def state_of(result: dict[str, Any]) -> dict[str, Any]:
    return next(block for block in result["content"] if block["type"] == "browser_state")


def image_of(result: dict[str, Any]) -> Image.Image:
    block = next(block for block in result["content"] if block["type"] == "image")
    return Image.open(io.BytesIO(base64.b64decode(block["source"]["data"]))).convert("RGB")


def ref_in(listing: str, needle: str) -> str:
    """The ref of the first line of a read_page/find listing that holds `needle`."""
    for line in listing.splitlines():
        if needle in line:
            found = re.search(r"\[(ref_\d+)\]", line)
            if found:
                return found.group(1)
    raise AssertionError(f"no line with {needle!r} in:\n{listing}")


def ref_target(request: dict[str, Any], needle: str) -> dict[str, str]:
    """The element of the newest listing the model was sent that shows `needle`: what a model
    would pick from what it has read."""
    for msg in reversed(request["messages"]):
        if msg["role"] != "user" or not isinstance(msg["content"], list):
            continue
        for result in msg["content"]:
            if result.get("type") == "tool_result" and not result.get("is_error"):
                with contextlib.suppress(AssertionError):
                    return {"type": "ref", "ref": ref_in(text_of(result), needle)}
    raise AssertionError(f"no listing the model was sent shows {needle!r}")


def browser_call(name: str, tool_input: dict[str, Any] | None = None):
    return lambda request: message(tool_use(name, tool_input or {}, toolset="browser"))


def browser_call_on(name: str, needle: str, **fields):
    """A member call whose target is the element of the last listing that holds `needle`."""
    return lambda request: message(tool_use(name, {"target": ref_target(request, needle), **fields}, toolset="browser"))


def chromium_titles(api: DesktopClient) -> list[str]:
    return [window.title for window in api.windows() if window.wm_class == "Chromium"]


def screen_colour(api: DesktopClient, x: int = 640, y: int = 450) -> tuple[int, int, int]:
    shot = api.screenshot()
    return Image.open(io.BytesIO(shot.data)).convert("RGB").getpixel((x, y))


def screen_showing(api: DesktopClient, colour: tuple[int, int, int]) -> Image.Image | None:
    """The desktop's screenshot if it shows this colour somewhere."""
    image = Image.open(io.BytesIO(api.screenshot().data)).convert("RGB")
    found = any(image.getpixel((x, y)) == colour for x in range(0, image.width, 8) for y in range(0, image.height, 8))
    return image if found else None


def box_of(image: Image.Image, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """The bounding box of the pixels of exactly this colour."""
    pixels = image.load()
    xs, ys = [], []
    for y in range(image.height):
        for x in range(image.width):
            if pixels[x, y] == colour:
                xs.append(x)
                ys.append(y)
    assert xs, f"no pixel of {colour} on the image"
    return min(xs), min(ys), max(xs), max(ys)


# -- navigating, reading, clicking ------------------------------------------------------------


def test_navigate_read_and_click_by_ref(browser, site, desktop_api):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/"}),
        browser_call("read_page", {}),
        browser_call_on("left_click", 'link "Second page"'),
        browser_call("screenshot"),
        browser_call("get_page_text"),
    ])
    navigated, read, clicked, shot, page_text = (turn[0] for turn in results(api))
    assert not any(result.get("is_error") for result in (navigated, read, clicked, shot, page_text))
    assert "Navigated to " + site.url + "/" in text_of(navigated) and "Cubicle test home" in text_of(navigated)
    listing = text_of(read)
    assert re.search(r'\[ref_\d+\] heading "Home" level=1', listing), listing
    assert re.search(r'\[ref_\d+\] link "Second page" href="/second"', listing), listing
    # The page navigated as a person would see it: the server got the GETs, the window shows the second page.
    assert site.paths()[:2] == ["/", "/second"]
    assert state_of(clicked)["tabs"][0]["url"] == site.url + "/second"
    wait_until(lambda: "Second page - Chromium" in chromium_titles(desktop_api), 10, "the window title")
    wait_until(lambda: screen_colour(desktop_api) == SECOND_BLUE, 10, "the second page's colour on the screen")
    # What the model saw: its screenshot is the page, at the viewport's size.
    image = image_of(shot)
    assert image.getpixel((image.width // 2, image.height // 2)) == SECOND_BLUE
    assert page_text_lines(page_text)[:3] == ["Second page", site.url + "/second", ""]


def page_text_lines(result: dict[str, Any]) -> list[str]:
    return text_of(result).splitlines()


def test_read_page_honours_filter_depth_and_ref_and_keeps_refs(browser, site):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/form"}),
        browser_call("read_page", {"filter": "interactive"}),
        browser_call("read_page", {"depth": 0}),
        browser_call("read_page", {}),
        lambda request: message(tool_use("read_page", {"ref": ref_target(request, "] form")["ref"]}, toolset="browser")),
        browser_call("find", {"query": "email"}),
        browser_call("find", {"query": "no such thing anywhere"}),
    ])
    _, interactive, shallow, whole, subtree, found, nothing = (text_of(turn[0]) for turn in results(api))
    assert 'textbox "Name"' in interactive and 'combobox "Colour"' in interactive and 'button "Send"' in interactive
    assert "text " not in interactive and "label" not in interactive  # interactive elements only
    assert not re.search(r"^\s", interactive, re.MULTILINE), interactive  # none holds another
    assert not re.search(r"^\s", shallow, re.MULTILINE), shallow  # depth 0: nothing indented
    assert "deeper elements not shown" in shallow
    assert re.search(r'^  \[ref_\d+\] label "Name"', whole, re.MULTILINE), whole  # inside the form
    assert re.match(r"\[ref_\d+\] form\n  \[ref_\d+\] label", subtree) and 'button "Send"' in subtree, subtree
    assert 'textbox "Typed here"' not in subtree  # outside the form
    # The same element keeps its ref from one call to the next.
    assert ref_in(interactive, 'textbox "Email"') == ref_in(whole, 'textbox "Email"') == ref_in(found, 'textbox "Email"')
    assert nothing.startswith("Nothing on the page matches")


def test_a_form_filled_and_submitted_reaches_the_server(browser, site):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/form"}),
        browser_call("read_page", {"filter": "interactive"}),
        browser_call_on("form_input", 'textbox "Name"', value="Ada Lovelace"),
        lambda request: message(
            tool_use("form_input", {"target": ref_target(request, 'textbox "Email"'), "value": "ada@example.org"},
                     toolset="browser"),
            tool_use("form_input", {"target": ref_target(request, 'combobox "Colour"'), "value": "Blue"},
                     toolset="browser"),
            tool_use("form_input", {"target": ref_target(request, 'checkbox "I agree"'), "value": True},
                     toolset="browser"),
            tool_use("form_input", {"target": ref_target(request, 'textbox "Notes"'), "value": "line one\nline two"},
                     toolset="browser")),
        browser_call("find", {"query": "send"}),
        browser_call_on("left_click", 'button "Send"'),
    ])
    turns = results(api)
    assert all(not result.get("is_error") for turn in turns for result in turn), turns
    assert "Selected \"Blue\"." in text_of(turns[3][1]) and "is checked" in text_of(turns[3][2])
    assert site.forms == [{"name": ["Ada Lovelace"], "email": ["ada@example.org"], "colour": ["Blue"],
                           "agree": ["on"], "notes": ["line one\r\nline two"]}]
    assert state_of(turns[-1][0])["tabs"][0]["title"] == "Submitted"


def test_a_file_from_the_desktop_is_uploaded(browser, site, own_desktop, desktop_api):
    home = own_desktop.state_dir / "home"
    path = str(home / "uploads" / "report.txt")
    desktop_api.write_file(path, "quarterly numbers: 42\n", create_dirs=True)
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/upload"}),
        browser_call("find", {"query": "document"}),
        browser_call_on("file_upload", "type=file", paths=[path]),
        browser_call("read_page", {"filter": "interactive"}),
        browser_call_on("left_click", 'button "Upload"'),
    ])
    _, _, uploaded, listing, submitted = (turn[0] for turn in results(api))
    assert not uploaded.get("is_error"), uploaded
    assert text_of(uploaded).startswith("Uploaded.")
    assert 'files="report.txt"' in text_of(listing)
    assert site.uploads == [("report.txt", b"quarterly numbers: 42\n")]
    assert state_of(submitted)["tabs"][0]["title"] == "Uploaded"


def test_file_upload_outside_the_allowed_folders_is_refused(browser, site, permissions):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/upload"}),
        browser_call("find", {"query": "document"}),
        browser_call_on("file_upload", "type=file", paths=["/etc/hostname"]),
        browser_call_on("file_upload", "type=file", paths=["/tmp/../etc/passwd"]),
        browser_call_on("file_upload", "type=file", paths=["notes.txt"]),
    ])
    for refused in (turn[0] for turn in results(api)[2:]):
        assert refused.get("is_error"), refused
    outside, dotted, relative = (text_of(turn[0]) for turn in results(api)[2:])
    assert "outside the folders" in outside and "'..'" in dotted and "absolute" in relative
    assert "file_upload" not in permissions.asked  # the file policy refused them before confirm was asked


def test_tabs_are_opened_listed_switched_and_closed(browser, site, desktop_api):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/"}),
        browser_call("new_tab"),
        browser_call("navigate", {"url": site.url + "/second"}),
        browser_call("list_tabs"),
        lambda request: message(tool_use("switch_tab", {"tab_id": first_tab(request)}, toolset="browser")),
        lambda request: message(tool_use("close_tab", {"tab_id": second_tab(request)}, toolset="browser")),
    ])
    _, opened, _, listed, switched, closed = (turn[0] for turn in results(api))
    opened_state = state_of(opened)
    new_id = opened_state["tabs"][-1]["tab_id"]
    assert {"type": "tab_opened", "tab_id": new_id} in opened_state["state_changes"]
    assert [tab["active"] for tab in opened_state["tabs"]] == [False, True]
    tabs = state_of(listed)["tabs"]
    assert [(tab["title"], tab["active"]) for tab in tabs] == [("Cubicle test home", False), ("Second page", True)]
    assert [tab["active"] for tab in state_of(switched)["tabs"]] == [True, False]
    assert [tab["tab_id"] for tab in state_of(closed)["tabs"]] == [tabs[0]["tab_id"]]
    assert site.saw("/second")
    # On the screen: one tab again, the first page in front.
    wait_until(lambda: chromium_titles(desktop_api) == ["Cubicle test home - Chromium"], 10, "the window title")
    wait_until(lambda: screen_colour(desktop_api) == HOME_GREEN, 10, "the home page's colour")


def first_tab(request: dict[str, Any]) -> str:
    return state_of(tool_results(request)[0])["tabs"][0]["tab_id"]


def second_tab(request: dict[str, Any]) -> str:
    return state_of(tool_results(request)[0])["tabs"][1]["tab_id"]


def test_a_tab_the_page_opens_is_reported_and_can_be_closed(browser, site):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/"}),
        browser_call("find", {"query": "new tab"}),
        browser_call_on("left_click", "Second in a new tab"),
        lambda request: message(tool_use("close_tab", {"tab_id": second_tab(request)}, toolset="browser")),
    ])
    clicked, closed = results(api)[2][0], results(api)[3][0]
    state = state_of(clicked)
    assert len(state["tabs"]) == 2 and state["tabs"][1]["active"]
    assert {"type": "tab_opened", "tab_id": state["tabs"][1]["tab_id"]} in state.get("state_changes", [])
    wait_until(lambda: site.saw("/second?popup=1"), 10, "the popup's request")
    assert len(state_of(closed)["tabs"]) == 1


def test_console_network_dialogs_and_scripts(browser, site, permissions):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/"}),
        browser_call("read_console"),
        browser_call("read_network"),
        browser_call("read_console"),
        browser_call("javascript_exec", {"text": "const links = document.querySelectorAll('a'); links.length * 2"}),
        browser_call("javascript_exec", {"text": "({title: document.title, items: [1, 'two', null]})"}),
        browser_call("javascript_exec", {"text": "await fetch('/second').then(r => r.status)"}),
        browser_call("navigate", {"url": site.url + "/dialog"}),
        browser_call("find", {"query": "ask"}),
        browser_call_on("left_click", 'button "Ask"'),
    ])
    turns = [turn[0] for turn in results(api)]
    console, network, console_again, count, value, fetched, _, _, asked = turns[1:]
    assert "[log] home loaded 7" in text_of(console) and "[warning] careful" in text_of(console)
    assert f"GET {site.url}/ -> 200 text/html" in text_of(network)
    assert text_of(console_again) == "No console messages since the last read."
    assert text_of(count) == "8"
    assert json.loads(text_of(value)) == {"title": "Cubicle test home", "items": [1, "two", None]}
    assert text_of(fetched) == "200"
    assert 'A confirm dialog "Delete everything?" was dismissed.' in text_of(asked)
    assert state_of(asked)["tabs"][0]["title"] == "answered no"
    assert {"javascript_exec", "read_console", "navigate"} <= set(permissions.asked)  # confirm saw every call


def test_a_download_lands_in_the_desktop_users_downloads(browser, site, own_desktop, desktop_api):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/download"}),
        browser_call("find", {"query": "report"}),
        browser_call_on("left_click", 'link "Get the report"'),
        browser_call("wait", {"duration": 1}),
    ])
    changes = [change for turn in results(api)[2:] for change in state_of(turn[0]).get("state_changes", [])]
    # (a download that starts and ends within one call is reported once, as completed: the SDK keeps the latest)
    assert [change["type"] for change in changes] == ["download_completed"], changes
    completed = next(change for change in changes if change["type"] == "download_completed")
    assert completed["url"] == site.url + "/report.csv" and completed["size_bytes"] == 23
    assert "path" not in completed  # the file policy keeps download paths from the model by default
    saved = desktop_api.read_file(str(own_desktop.state_dir / "home" / "Downloads" / "report.csv"))
    assert saved.content == "month,total\njanuary,42\n"


def test_pointer_keyboard_scroll_and_zoom_members(browser, site):
    box = {"type": "coordinate", "x": 200, "y": 160}  # the viewport is not scaled: CSS pixels
    def log_lines(result: dict[str, Any]) -> list[str]:  # the page's own record of what it heard
        page = text_of(result).split("\n\n", 1)[1]
        return page.split("Box\n", 1)[1].split("\n\n", 1)[0].splitlines()

    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/input"}),
        browser_call("screenshot"),
        browser_call("hover", {"target": box}),
        browser_call("double_click", {"target": box}),
        browser_call("right_click", {"target": box}),
        browser_call("middle_click", {"target": box, "modifiers": "shift"}),
        browser_call("triple_click", {"target": box}),
        browser_call("left_mouse_down", {"target": box}),
        browser_call("left_mouse_up", {"target": box}),
        browser_call("mouse_move", {"target": {"type": "coordinate", "x": 50, "y": 50}}),
        browser_call("hold_key", {"text": "shift", "duration": 0.2}),
        browser_call("get_page_text"),
        browser_call("left_click_drag", {"from": {"type": "coordinate", "x": 105, "y": 308},
                                         "target": {"type": "coordinate", "x": 499, "y": 308}}),
        browser_call("left_click", {"target": {"type": "coordinate", "x": 300, "y": 400}}),
        browser_call("type", {"text": "Hello world"}),
        browser_call("key", {"text": "ctrl+a BackSpace"}),
        browser_call("type", {"text": "Bye"}),
        browser_call("key", {"text": "Return", "repeat": 2}),
        browser_call("read_page", {"filter": "interactive"}),
        browser_call("zoom", {"region": [100, 100, 300, 220]}),
        browser_call("scroll", {"target": {"type": "coordinate", "x": 640, "y": 300}, "scroll_direction": "down",
                                "scroll_amount": 5}),
        browser_call("javascript_exec", {"text": "scrollY"}),
        browser_call("find", {"query": "bottom marker"}),
        browser_call_on("scroll_to", "Bottom marker"),
        browser_call("read_page", {}),
        browser_call("wait", {"duration": 0.2}),
    ])
    turns = [turn[0] for turn in results(api)]
    assert not [turn for turn in turns if turn.get("is_error")], [text_of(t) for t in turns if t.get("is_error")]
    assert log_lines(turns[11]) == [
        "mouseenter button=0 detail=0 shift=false",
        "mousedown button=0 detail=1 shift=false", "mouseup button=0 detail=1 shift=false",
        "click button=0 detail=1 shift=false", "mousedown button=0 detail=2 shift=false",
        "mouseup button=0 detail=2 shift=false", "click button=0 detail=2 shift=false",
        "dblclick button=0 detail=2 shift=false",
        "mousedown button=2 detail=1 shift=false", "contextmenu button=2 detail=0 shift=false",
        "mouseup button=2 detail=1 shift=false", "auxclick button=2 detail=1 shift=false",
        "keydown Shift", "mousedown button=1 detail=1 shift=true", "mouseup button=1 detail=1 shift=true",
        "auxclick button=1 detail=1 shift=true", "keyup Shift",
        "mousedown button=0 detail=1 shift=false", "mouseup button=0 detail=1 shift=false",
        "click button=0 detail=1 shift=false", "mousedown button=0 detail=2 shift=false",
        "mouseup button=0 detail=2 shift=false", "click button=0 detail=2 shift=false",
        "dblclick button=0 detail=2 shift=false", "mousedown button=0 detail=3 shift=false",
        "mouseup button=0 detail=3 shift=false", "click button=0 detail=3 shift=false",
        "mousedown button=0 detail=1 shift=false", "mouseup button=0 detail=1 shift=false",
        "click button=0 detail=1 shift=false",
        "mouseleave", "keydown Shift", "keyup Shift",
    ], log_lines(turns[11])
    controls = text_of(turns[18])
    assert 'slider "Volume" value="100"' in controls, controls
    assert 'textbox "Pad" value="Bye\\n\\n" focused' in controls, controls
    zoomed = image_of(turns[19])
    assert zoomed.getpixel((zoomed.width // 2, zoomed.height // 10)) == (255, 165, 0)
    assert zoomed.width > 200 * 2  # enlarged
    assert int(text_of(turns[21])) == 500  # five notches of 100 px
    assert "Bottom marker" in text_of(turns[24]) and "Box" not in text_of(turns[24])  # only what is in view
    assert text_of(turns[25]).startswith("Waited 0.2s.")


# -- refusals: the model hears why, and nothing happens ----------------------------------------


def test_bad_input_an_unknown_member_and_a_denied_confirm_do_nothing(browser, site, permissions, own_desktop,
                                                                    desktop_api):
    permissions.refused |= {"javascript_exec", "file_upload"}
    path = str(own_desktop.state_dir / "home" / "not-to-be-sent.txt")
    desktop_api.write_file(path, "private\n")
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/upload"}),
        # bad input: the SDK refuses it, and the rest of the turn is not run
        lambda request: message(
            tool_use("left_click", {"target": {"type": "coordinate", "x": "left", "y": 3}}, toolset="browser"),
            tool_use("navigate", {"url": site.url + "/should-not-load"}, toolset="browser")),
        browser_call("frobnicate", {"url": site.url + "/should-not-load"}),
        browser_call("javascript_exec", {"text": f"location.href = '{site.url}/js-ran'"}),
        browser_call("find", {"query": "document"}),
        browser_call_on("file_upload", "type=file", paths=[path]),
        browser_call("read_page", {"filter": "interactive"}),
    ])
    turns = results(api)
    bad, halted = turns[1]
    unknown, = turns[2]
    denied_script, = turns[3]
    denied_upload = turns[5][0]
    for refused in (bad, halted, unknown, denied_script, denied_upload):
        assert refused.get("is_error") is True, refused
    assert "invalid input for browser member 'left_click'" in text_of(bad)
    assert text_of(halted) == "Not executed: an earlier action in this turn failed."
    assert "frobnicate" in text_of(unknown)
    assert "did not grant permission to run 'javascript_exec'" in text_of(denied_script)
    assert "did not grant permission to run 'file_upload'" in text_of(denied_upload)
    # Nothing was done: no request reached the server after the page itself, the file input is empty.
    assert site.paths() == ["/upload"]
    assert "files=" not in text_of(turns[6][0])
    assert chromium_titles(desktop_api) == ["Upload page - Chromium"]


def test_a_url_the_rules_deny_is_never_loaded(browser, site, desktop_api):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/denied/secret"}),
        browser_call("navigate", {"url": site.url + "/"}),
        browser_call("find", {"query": "denied link"}),
        browser_call_on("left_click", 'link "Denied link"'),
        browser_call("find", {"query": "redirect link"}),
        browser_call_on("left_click", 'link "Redirect link"'),
        browser_call("javascript_exec", {"text": "await fetch('/denied/secret').then(r => r.status, e => String(e))"}),
        browser_call("get_page_text"),
    ])
    turns = [turn[0] for turn in results(api)]
    refused, _, _, clicked, _, redirected, fetched, page_text = turns
    assert refused.get("is_error") and "not allowed here" in text_of(refused)
    assert "A navigation was refused." in text_of(clicked)
    assert "A navigation was refused." in text_of(redirected)
    assert "Failed to fetch" in text_of(fetched)
    assert "Home" in text_of(page_text)  # still on the home page
    assert site.saw("/to-denied")  # the redirect itself was allowed, its target was not
    assert not [path for path in site.paths() if path.startswith("/denied")], site.paths()
    assert "Secret - Chromium" not in chromium_titles(desktop_api)


# -- /cdp ------------------------------------------------------------------------------------------


def cdp_attempt(url: str, first: str | None = None, **options) -> str:
    """'answered' if a CDP command got an answer, else how the socket was refused."""
    try:
        with connect(url, open_timeout=10, close_timeout=5, max_size=None, **options) as ws:
            try:
                if first is not None:
                    ws.send(first)
                ws.send(json.dumps({"id": 1, "method": "Browser.getVersion"}))
                answer = json.loads(ws.recv(timeout=15))
            except ConnectionClosed as closed:  # refused, maybe before the CDP command was even sent
                return f"close {closed.rcvd.code if closed.rcvd else None}"
            return "answered" if answer.get("id") == 1 and "product" in answer.get("result", {}) else f"other {answer}"
    except InvalidStatus as refused:
        return f"http {refused.response.status_code}"


def test_cdp_refuses_a_missing_wrong_or_query_string_token(own_desktop, browser):
    ws = own_desktop.url.replace("http://", "ws://") + "/cdp"
    token = own_desktop.token
    wrong = token[:-1] + ("x" if token[-1] != "x" else "y")
    assert cdp_attempt(ws) == "close 4401"
    assert cdp_attempt(ws, additional_headers={"Authorization": f"Bearer {wrong}"}) == "http 401"
    assert cdp_attempt(ws, json.dumps({"token": wrong})) == "close 4401"
    assert cdp_attempt(ws + f"?token={token}&access_token={token}") == "close 4401"
    assert cdp_attempt(ws, subprotocols=[f"bearer.{token}"]) == "close 4401"  # no subprotocol way on /cdp
    # The right token, either way, does get the browser to answer.
    assert cdp_attempt(ws, additional_headers={"Authorization": f"Bearer {token}"}) == "answered"
    assert cdp_attempt(ws, json.dumps({"token": token})) == "answered"
    # CDP is text: a binary message ends the session (1008), it is not passed to the browser.
    with connect(ws, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10) as socket, \
            pytest.raises(ConnectionClosed) as closed:
        socket.send(b"\x00\x01")
        socket.recv(timeout=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


# -- the computer toolset on the same window ----------------------------------------------------


def test_the_computer_toolset_types_into_the_page_the_browser_reads(browser, site, own_desktop, desktop_api):
    run([browser], [browser_call("navigate", {"url": site.url + "/form"})])
    wait_until(lambda: "Form page - Chromium" in chromium_titles(desktop_api), 10, "the form page on the screen")
    shot = wait_until(lambda: screen_showing(desktop_api, MAGENTA), 10, "the magenta input on the screen")
    left, top, right, bottom = box_of(shot, MAGENTA)
    x, y = (left + right) // 2, (top + bottom) // 2
    computer = CubicleComputer(own_desktop.url, own_desktop.token, confirm=lambda context: True)
    try:
        api = run([computer, browser], [
            lambda request: message(
                tool_use("left_click", {"coordinate": [x, y]}, toolset="computer"),
                tool_use("type", {"text": "typed by the computer toolset"}, toolset="computer")),
            browser_call("find", {"query": "typed here"}),
        ])
    finally:
        computer.close()
    clicked, typed = results(api)[0]
    assert not clicked.get("is_error") and not typed.get("is_error"), (clicked, typed)
    assert 'value="typed by the computer toolset"' in text_of(results(api)[1][0])


def test_coordinates_of_a_scaled_screenshot_land_exactly(own_desktop, site):
    """A screenshot smaller than the viewport: the model's coordinates in it are mapped back."""
    with CubicleBrowser(own_desktop.url, own_desktop.token, image_size=(640, 400)) as small:
        api = run([small], [
            browser_call("navigate", {"url": site.url + "/form"}),
            browser_call("screenshot"),
            lambda request: message(tool_use("left_click", {"target": magenta_corner(request)}, toolset="browser")),
            browser_call("type", {"text": "clicked at half size"}),
            browser_call("find", {"query": "typed here"}),
        ])
    image = image_of(results(api)[1][0])
    assert image.width == 640 and image.height <= 400
    assert 'value="clicked at half size"' in text_of(results(api)[4][0])


def magenta_corner(request: dict[str, Any]) -> dict[str, Any]:
    """The input's last column and row in the screenshot: off by a pixel would miss it."""
    _, _, right, bottom = box_of(image_of(tool_results(request)[0]), MAGENTA)
    return {"type": "coordinate", "x": right, "y": bottom}


# -- the async twin, and a big page --------------------------------------------------------------


def test_the_async_browser_under_the_async_tool_runner(own_desktop, site):
    async def scenario() -> ScriptedAPI:
        api = ScriptedAPI([browser_call("navigate", {"url": site.url + "/second"}), browser_call("read_page", {}),
                           lambda request: message(text("Done."))])
        try:
            async with AsyncCubicleBrowser(own_desktop.url, own_desktop.token) as toolset:
                client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=api.url, max_retries=0)
                runner = client.beta.messages.tool_runner(model=MODEL, max_tokens=1024, tools=[toolset],
                                                          messages=[{"role": "user", "content": "Look."}])
                await runner.until_done()
        finally:
            api.close()
        return api

    api = asyncio.run(scenario())
    assert api.failure is None, api.failure
    navigated, read = (turn[0] for turn in results(api))
    assert "Second page" in text_of(navigated) and 'heading "Second" level=1' in text_of(read)
    assert site.saw("/second")


def test_read_page_on_a_big_page_is_capped_and_timed(browser, site, own_desktop):
    api = run([browser], [
        browser_call("navigate", {"url": site.url + "/many?n=1000"}),
        browser_call("read_page", {"filter": "all"}),
        browser_call("navigate", {"url": site.url + "/many?n=3000"}),
        browser_call("read_page", {"filter": "all"}),
    ])
    thousand, capped = text_of(results(api)[1][0]), text_of(results(api)[3][0])
    assert thousand.count("[ref_") == 1000
    assert len(capped) <= 50_000 + 300 and "cut at 50,000 characters" in capped
    timing = measure_read_page(own_desktop.url, own_desktop.token, elements=1000, rounds=3)
    assert timing["refs_listed"] > 500 and timing["read_page"]["median_ms"] > 0
    assert element_page(10).startswith("data:text/html")
    print(f"read_page on 1,000 elements: median {timing['read_page']['median_ms']:.1f} ms")


def test_the_worker_runs_with_the_browser_and_its_policy_keeps_denied_urls_unloaded(own_desktop, site, tmp_path):
    """POST /runs {"browser": true}: the worker offers the browser toolset beside the computer;
    the policy file's [urls] deny list is the browser's URL rules, and its hold on a member
    is the SDK's confirm hook, answered by a human's decision."""
    import anthropic
    import httpx

    from cubicle.agent.policy import Policy
    from cubicle.agent.runs import RunStore
    from cubicle.agent.service import create_worker_app
    from support import Serving, wait_until

    page = site.url + "/"
    turns = [
        lambda r: message(tool_use("navigate", {"url": page}, toolset="browser")),
        lambda r: message(tool_use("navigate", {"url": f"{site.url}/denied/secret"}, toolset="browser")),
        lambda r: message(tool_use("javascript_exec", {"text": "document.title"}, toolset="browser")),
        lambda r: message(text("Done.")),
    ]
    api = ScriptedAPI(turns)
    policy = Policy.from_text(f'[[hold]]\ntool = "browser"\nactions = ["javascript_exec"]\nreason = "scripts"\n'
                              f'[urls]\ndeny = ["{site.url}/denied/"]\n')
    worker_token = "worker-browser-" + "w" * 20
    app = create_worker_app(worker_token, RunStore(tmp_path / "runs"), policy=policy,
                            anthropic_factory=lambda: anthropic.Anthropic(api_key="sk-ant-b-" + "k" * 20,
                                                                          base_url=api.url, max_retries=0))
    serving = Serving(app)
    url, headers = f"http://127.0.0.1:{serving.port}", {"Authorization": f"Bearer {worker_token}"}
    try:
        created = httpx.post(url + "/runs", headers=headers, timeout=120, json={
            "task": "Look at the site.", "model": "claude-opus-5", "browser": True,
            "desktop": own_desktop.url, "desktop_token": own_desktop.token})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]
        held = wait_until(lambda: (r := httpx.get(f"{url}/runs/{run_id}", headers=headers, timeout=30).json())["pending"]
                          and r, 120, "the script to wait for approval")
        (pending,) = held["pending"]
        assert pending["tool"] == "browser" and pending["name"] == "javascript_exec" and pending["reason"] == "scripts"
        denied = httpx.post(f"{url}/runs/{run_id}/approvals/{pending['approval_id']}", headers=headers,
                            json={"approve": False, "note": "no scripts"}, timeout=30)
        assert denied.status_code == 200
        shown = wait_until(lambda: (r := httpx.get(f"{url}/runs/{run_id}", headers=headers, timeout=30).json())["active"]
                           is False and r, 120, "the run to end")
        assert shown["status"] == "finished", shown
        tools = api.requests[0]["tools"]
        assert {t["type"] for t in tools} >= {"computer_toolset_20260801", "browser_toolset_20260801"}
        results = [e for e in shown["events"] if e["type"] == "result"]
        assert [r["is_error"] for r in results] == [False, True, True]
        assert "not allowed here" in results[1]["text"] and "A human denied this action (scripts): no scripts" in results[2]["text"]
        assert site.saw("/") and not any(path.startswith("/denied") for path in site.paths())
        actions = [(e["tool"], e["name"]) for e in shown["events"] if e["type"] == "action"]
        assert actions == [("browser", "navigate")] * 2 + [("browser", "javascript_exec")]
    finally:
        serving.stop()
        api.close()
