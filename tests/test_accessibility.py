"""GET /accessibility on the real desktop: the trees that galculator (GTK 3), LibreOffice Calc,
Firefox and Chromium publish on the session's accessibility bus, read by the runner.

What is checked is what a client relies on: a named button is found, and a click at the
centre of its box really presses it; a Calc cell is found by the text typed into it; an app
that does not answer is reported within the deadline instead of hanging the route; the limits
and the coordinate space hold; bad input is refused without reading anything.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator

import pytest

from cubicle.accessibility import AccessibilityTree, AccessibleNode
from cubicle.client import CubicleError
from support import wait_until

WINDOW_ROLES = {"frame", "dialog", "window", "alert", "file chooser", "color chooser", "font chooser"}


def walk(node: AccessibleNode) -> Iterator[AccessibleNode]:
    yield node
    for child in node.children:
        yield from walk(child)


def every_node(tree: AccessibilityTree) -> Iterator[AccessibleNode]:
    for app in tree.apps:
        yield from walk(app)


def centre(node: AccessibleNode) -> tuple[int, int]:
    assert node.box is not None, node
    return node.box.x + node.box.width // 2, node.box.y + node.box.height // 2


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def stop_program(client, launched, pids: set[int] = frozenset()) -> None:
    """Close the launched program's window, and kill what of it still runs after a while."""
    if launched.window is not None:
        with contextlib.suppress(CubicleError):
            client.close_window(launched.window.id)
    everyone = {launched.pid, *pids}
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not any(map(running, everyone)), 20, "the program to quit", 0.2)
    for pid in everyone:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def galculator(client):
    launched = client.launch("galculator", timeout=30)
    assert launched.window is not None
    yield launched
    stop_program(client, launched)


def galculator_display(client, window_id: int) -> str:
    tree = client.accessibility(window=window_id)
    # The display is the one text node with a box (the other one, for formula entry, is hidden).
    shown = [node for node in every_node(tree) if node.role == "text" and node.box is not None]
    assert len(shown) == 1, shown
    return shown[0].text or ""


def test_a_named_button_of_a_gtk_app_is_found_and_a_click_at_its_box_presses_it(client, galculator):
    tree = client.accessibility(window=galculator.window.id)
    assert tree.scope == "window" and tree.window == galculator.window.id
    assert [app.pid for app in tree.apps] == [galculator.pid] and tree.apps[0].role == "application"
    frames = tree.apps[0].children
    assert len(frames) == 1 and frames[0].role == "frame" and frames[0].name == "galculator"
    seven = [node for node in every_node(tree) if node.name == "7" and "button" in node.role]
    assert len(seven) == 1, seven
    assert {"showing", "enabled"} <= set(seven[0].states)
    assert any(action.name.lower() == "click" for action in seven[0].actions or [])
    window = galculator.window
    x, y = centre(seven[0])
    assert window.x <= x < window.x + window.width and window.y <= y < window.y + window.height
    assert galculator_display(client, window.id) == "0"

    client.click(x, y)
    wait_until(lambda: galculator_display(client, window.id) == "7", 10, "the display to show 7")
    client.click(x, y)
    wait_until(lambda: galculator_display(client, window.id) == "77", 10, "the display to show 77")


def test_the_whole_desktop_and_the_focused_window(client, galculator):
    client.activate(galculator.window.id)
    desktop = client.accessibility()
    assert desktop.scope == "desktop" and desktop.window is None
    assert galculator.pid in [app.pid for app in desktop.apps]
    assert desktop.nodes == sum(1 for _ in every_node(desktop))
    focused = client.accessibility(focused=True)
    assert focused.scope == "focused" and focused.window == galculator.window.id
    assert [app.pid for app in focused.apps] == [galculator.pid]


def test_boxes_in_a_coordinate_space_are_the_screen_boxes_scaled(client, galculator):
    screen = client.screen()
    space = (screen.width // 2, screen.height // 2)
    in_screen = client.accessibility(window=galculator.window.id)
    in_space = client.accessibility(window=galculator.window.id, coordinate_space=space)
    assert in_space.coordinate_space is not None and (in_space.coordinate_space.width, in_space.coordinate_space.height) == space
    pairs = [(a, b) for a, b in zip(every_node(in_screen), every_node(in_space)) if a.box is not None]
    assert len(pairs) > 20
    for screen_node, space_node in pairs:
        assert (screen_node.role, screen_node.name) == (space_node.role, space_node.name)
        assert abs(space_node.box.x - screen_node.box.x / 2) <= 1 and abs(space_node.box.y - screen_node.box.y / 2) <= 1
        assert abs(space_node.box.width - screen_node.box.width / 2) <= 1.5


def test_limits_cut_the_tree_and_say_so(client, galculator):
    shallow = client.accessibility(window=galculator.window.id, max_depth=1)
    app = shallow.apps[0]
    assert [child.children for child in app.children] == [[]] and app.children[0].children_omitted
    assert "max_depth" in shallow.truncated_by and shallow.truncated
    few = client.accessibility(window=galculator.window.id, max_nodes=5)
    assert few.nodes <= 5 and "max_nodes" in few.truncated_by
    whole = client.accessibility(window=galculator.window.id)
    assert not whole.truncated and whole.nodes > 50


def test_visible_and_interactive_only(client, galculator):
    visible = client.accessibility(window=galculator.window.id, visible_only=True)
    below_app = [node for app in visible.apps for child in app.children for node in walk(child)]
    assert below_app and all("showing" in node.states for node in below_app)
    # The menus' items are in the tree, but not on the screen.
    whole = client.accessibility(window=galculator.window.id)
    assert any(node.role == "menu item" for node in every_node(whole))
    assert not any(node.role == "menu item" for node in below_app)
    interactive = client.accessibility(window=galculator.window.id, interactive_only=True)
    kept = [node for app in interactive.apps for child in app.children for node in walk(child)]
    assert any(node.name == "7" for node in kept)
    for node in kept:
        assert node.actions or {"focusable", "editable", "selectable", "checkable"} & set(node.states) \
            or node.role in WINDOW_ROLES, node
    assert not any(node.role in ("panel", "filler") for node in kept)


def test_details_add_attributes_and_interfaces(client, galculator):
    tree = client.accessibility(window=galculator.window.id, details=True)
    seven = next(node for node in every_node(tree) if node.name == "7")
    assert {"Action", "Component"} <= set(seven.interfaces or [])
    plain = client.accessibility(window=galculator.window.id)
    assert all(node.interfaces is None and node.attributes is None for node in every_node(plain))


def test_an_app_that_does_not_answer_is_listed_unreadable_within_the_deadline(client, galculator):
    mousepad = client.launch("mousepad", timeout=30)
    try:
        os.kill(galculator.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            tree = client.accessibility(app_timeout_ms=500, timeout_ms=4000)
            elapsed = time.monotonic() - started
            hung = [entry for entry in tree.unreadable if entry.pid == galculator.pid]
            assert len(hung) == 1 and "did not answer within 500 ms" in hung[0].reason, tree.unreadable
            assert elapsed < 3.0, elapsed
            assert mousepad.pid in [app.pid for app in tree.apps]  # the others are read all the same
            assert galculator.pid not in [app.pid for app in tree.apps if not hung[0].partial]
            # Its window alone: answered at once too, with the app said to be unreadable.
            started = time.monotonic()
            alone = client.accessibility(window=galculator.window.id, app_timeout_ms=300)
            assert time.monotonic() - started < 2.0
            assert alone.apps == [] and [entry.pid for entry in alone.unreadable] == [galculator.pid]
        finally:
            os.kill(galculator.pid, signal.SIGCONT)
        # Woken up, it answers again.
        assert galculator_display(client, galculator.window.id) == "0"
    finally:
        stop_program(client, mousepad)


def test_a_window_without_a_tree_is_a_404_that_says_why(desktop, client, tmp_path):
    before = {w.id for w in client.windows()}
    launched = client.launch(["xterm", "-title", "cubicle-no-tree"], timeout=30)
    try:
        window = launched.window or wait_until(
            lambda: next((w for w in client.windows() if w.id not in before and w.title == "cubicle-no-tree"), None),
            20, "the xterm window")
        with pytest.raises(CubicleError) as refused:
            client.accessibility(window=window.id)
        assert refused.value.status == 404 and refused.value.code == "window_not_accessible"
        assert "publishes no" in refused.value.message
    finally:
        stop_program(client, launched)


@pytest.mark.parametrize(("params", "code"), [
    ({"window": "12", "focused": "true"}, "invalid_request"),
    ({"coordinate_space": "0x100"}, "invalid_coordinate_space"),
    ({"coordinate_space": "100x100000"}, "invalid_coordinate_space"),
    ({"max_nodes": "0"}, "invalid_request"),
    ({"max_depth": "101"}, "invalid_request"),
    ({"timeout_ms": "5"}, "invalid_request"),
    ({"window": "not-a-window"}, "invalid_window_id"),
    ({"depth": "3"}, "invalid_request"),
])
def test_bad_input_is_refused(desktop, params, code):
    import httpx

    response = httpx.get(desktop.url + "/accessibility", params=params, headers={"Authorization": f"Bearer {desktop.token}"},
                         timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code, response.text


def test_an_unknown_window_is_a_404(client):
    with pytest.raises(CubicleError) as refused:
        client.accessibility(window=0x7FFFFFF)
    assert refused.value.status == 404 and refused.value.code == "window_not_found"


# -- LibreOffice Calc ---------------------------------------------------------------------------

QUIET_PROFILE = """<?xml version="1.0" encoding="UTF-8"?>
<oor:items xmlns:oor="http://openoffice.org/2001/registry" xmlns:xs="http://www.w3.org/2001/XMLSchema"
 xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="ShowTipOfTheDay" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Office.Common/Misc"><prop oor:name="FirstRun" oor:op="fuse"><value>false</value></prop></item>
<item oor:path="/org.openoffice.Setup/Office"><prop oor:name="ooSetupInstCompleted" oor:op="fuse"><value>true</value></prop></item>
<item oor:path="/org.openoffice.Setup/Product"><prop oor:name="ooSetupLastVersion" oor:op="fuse"><value>7.4</value></prop></item>
</oor:items>
"""


def cells(tree: AccessibilityTree) -> dict[str, AccessibleNode]:
    return {node.name: node for node in every_node(tree) if node.role == "table cell"}


def test_a_calc_cell_is_found_by_the_text_typed_into_it(client, tmp_path):
    # A profile of its own, without the tip of the day or the "what's new" bar (a soffice of its own, too).
    profile = tmp_path / "libreoffice"
    (profile / "user").mkdir(parents=True)
    (profile / "user" / "registrymodifications.xcu").write_text(QUIET_PROFILE)
    before = {w.id for w in client.windows()}
    launched = client.launch(["libreoffice", f"-env:UserInstallation={profile.as_uri()}", "--calc", "--norestore"],
                             timeout=120)
    pids: set[int] = set()
    try:
        window = launched.window
        assert window is not None and "LibreOffice Calc" in window.title, window
        pids.add(window.pid)
        client.activate(window.id)

        def focused_cell() -> str | None:
            tree = client.accessibility(window=window.id, timeout_ms=20000, app_timeout_ms=5000, visible_only=True)
            return next((node.name for node in every_node(tree) if node.role == "table cell" and "focused" in node.states),
                        None)

        # The document window shows before the sheet takes keys: its cell cursor says when it does.
        assert wait_until(focused_cell, 60, "the sheet to have the focus", 0.5) == "A1"

        # LibreOffice 7.4 learns where its window is on the screen from a pointer event over it: until
        # then the boxes of its document area are off by the height of its menu bar (the sheet overlaps
        # the formula bar). A person's hand, or a model's first move, gives it one.
        def sheet_below_the_formula_bar() -> bool:
            client.act({"action": "mouse_move", "coordinate": [window.x + window.width // 2 + secrets.randbelow(50),
                                                                window.y + window.height // 2]})
            tree = client.accessibility(window=window.id, timeout_ms=20000, visible_only=True)
            bar = next(node for node in every_node(tree) if node.name == "Formula Tool Bar")
            table = next(node for node in every_node(tree) if node.role == "table")
            return table.box.y >= bar.box.y + bar.box.height

        wait_until(sheet_below_the_formula_bar, 30, "LibreOffice to know where its window is", 0.5)
        text = f"Cubicle{secrets.randbelow(10**6):06d}"  # as Calc's autocorrect leaves it (it capitalises a first letter)
        client.type(text + "\n")

        def typed_cell() -> AccessibleNode | None:
            tree = client.accessibility(window=window.id, timeout_ms=20000, app_timeout_ms=5000, visible_only=True)
            return next((node for node in every_node(tree) if node.role == "table cell" and node.text == text), None)

        cell = wait_until(typed_cell, 30, f"a cell holding {text!r}", 0.5)
        assert cell.name == "A1" and cell.box is not None
        # Only the cells on the screen are read, not the sheet's 2^31.
        tree = client.accessibility(window=window.id, timeout_ms=20000, app_timeout_ms=5000)
        shown = cells(tree)
        assert 20 < len(shown) < 5000 and "B3" in shown
        sheet = next(node for node in every_node(tree) if node.role == "table")
        assert sheet.children_omitted and sheet.children_omitted > 1_000_000
        # A click at the centre of B3's box puts the cursor there: what is typed next lands in B3.
        client.click(*centre(shown["B3"]))
        client.type("Second\n")
        def holding() -> dict[str, str]:
            tree = client.accessibility(window=window.id, timeout_ms=20000, visible_only=True)
            return {name: node.text for name, node in cells(tree).items() if node.text}

        wait_until(lambda: holding().get("B3") == "Second", 30,
                   f"B3 to hold 'Second' (B3 at {shown['B3'].box}, the sheet at {sheet.box}; {holding()})", 0.5)
    finally:
        # Its own profile, thrown away: no need to answer "Save changes?" first.
        for pid in pids | {launched.pid}:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(w.id not in before for w in client.windows()), 30, "LibreOffice's windows gone")


# -- the browsers -------------------------------------------------------------------------------

PAGE = """<!doctype html><title>cubicle a11y page</title>
<h1>A page to read</h1><button onclick="document.title = 'pressed'">Press here</button>"""


def page_button(client, window_id: int) -> AccessibleNode | None:
    tree = client.accessibility(window=window_id, timeout_ms=10000, app_timeout_ms=3000)
    found = [node for node in every_node(tree) if node.role == "push button" and node.name == "Press here"]
    return found[0] if found and found[0].box else None


def press_the_page_button(client, launched) -> None:
    assert launched.window is not None
    window = wait_until(lambda: next((w for w in client.windows() if w.id == launched.window.id
                                      and "cubicle a11y page" in w.title), None), 30, "the page to load", 0.2)
    button = wait_until(lambda: page_button(client, window.id), 30, "the page's button in the tree", 0.5)
    assert "showing" in button.states
    client.click(*centre(button))
    wait_until(lambda: any(w.id == window.id and w.title.startswith("pressed") for w in client.windows()),
               15, "the page's title to change", 0.2)


def test_a_button_in_a_chromium_page_is_found_and_pressed(client, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(PAGE)
    launched = client.launch(
        ["chromium", "--no-sandbox", "--test-type", "--no-first-run", "--no-default-browser-check",
         f"--user-data-dir={tmp_path / 'chromium'}", "--force-renderer-accessibility", "--disable-dev-shm-usage",
         page.as_uri()], timeout=60)
    try:
        press_the_page_button(client, launched)
    finally:
        stop_program(client, launched)


def test_a_button_in_a_firefox_page_is_found_and_pressed(client, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(PAGE)
    profile = tmp_path / "firefox"
    profile.mkdir()
    (profile / "user.js").write_text("\n".join(f'user_pref("{name}", {value});' for name, value in {
        "browser.shell.checkDefaultBrowser": "false", "browser.aboutwelcome.enabled": "false",
        "datareporting.policy.dataSubmissionEnabled": "false", "toolkit.telemetry.reportingpolicy.firstRun": "false",
        "browser.startup.homepage_override.mstone": '"ignore"', "security.sandbox.warn_unprivileged_namespaces": "false",
    }.items()) + "\n")
    launched = client.launch(["firefox-esr", "--no-remote", "--profile", str(profile), page.as_uri()], timeout=90)
    try:
        press_the_page_button(client, launched)
    finally:
        stop_program(client, launched)
