"""The MCP face, driven by real MCP clients (the SDK's over streamable HTTP and over stdio, the
MCP Inspector's CLI) on a real desktop: effects checked by the recorder app, by what apps
write, and against the desktop's own HTTP API."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from PIL import Image, ImageChops

from cubicle import imaging
from cubicle.client import CubicleError
from mcp_clients import image_of, inspector, ok, over_http, over_stdio, stdio_parameters, text_of, token_file
from support import wait_until

SCREEN = (1280, 800)
RED = (255, 0, 0)  # the recorder's top-left corner square, 40x40
MIXED = "Grüße, café — naïve ñ\n中文输入法 日本語のテキスト カタカナ\t😀🚀🎉 ça marche!\n"
# name: (read-only, destructive, idempotent, open world); destructive and idempotent say
# something only of a tool that is not read-only.
ANNOTATIONS = {
    "screenshot": (True, None, True, False), "zoom": (True, None, True, False), "wait": (True, None, True, False),
    "cursor_position": (True, None, True, False), "list_windows": (True, None, True, False),
    "get_clipboard": (True, None, True, False), "read_file": (True, None, True, False),
    "accessibility_tree": (True, None, True, False),
    **{name: (False, True, False, False) for name in (
        "left_click", "right_click", "middle_click", "double_click", "triple_click", "left_click_drag",
        "left_mouse_down", "left_mouse_up", "scroll", "type", "key", "hold_key")},
    "mouse_move": (False, False, True, False), "activate_window": (False, False, True, False),
    "close_window": (False, True, True, False), "launch": (False, False, False, False),
    "set_clipboard": (False, True, True, False), "write_file": (False, True, True, False),
    "shell": (False, True, False, True),
}


def run(coroutine):
    return asyncio.run(coroutine)


def red_square_in(picture: Image.Image, near: tuple[int, int], radius: int = 60) -> list[tuple[int, int]]:
    x0, y0 = near
    return [(x, y) for x in range(max(0, x0 - radius), min(picture.width, x0 + radius))
            for y in range(max(0, y0 - radius), min(picture.height, y0 + radius)) if picture.getpixel((x, y)) == RED]


def typed_into(recorder, count: int) -> str:
    """The characters of the first `count` key presses the recorder saw."""
    presses = wait_until(lambda: len(recorder.records("key_press")) >= count, 20, f"{count} key presses") and \
        recorder.records("key_press")
    return "".join(record["char"] for record in presses[:count])


def wait_for_file(path: Path, expected: str, timeout: float = 20.0) -> None:
    deadline, content = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        content = path.read_text(encoding="utf-8") if path.exists() else None
        if content == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} holds {content!r}, expected {expected!r}")


def annotations_of(tool) -> tuple:
    hints = tool.annotations
    return hints.read_only_hint, hints.destructive_hint, hints.idempotent_hint, hints.open_world_hint


def test_the_desktop_loads_the_mcp_sdk_only_once_mcp_is_asked_for():
    # Some 25 MB and a second or more of imports that a desktop nobody reaches over MCP is spared.
    code = ("import sys; from cubicle.server.app import create_app; create_app('t' * 32, ':199'); "
            "print(sorted(name for name in sys.modules if name.split('.')[0] in ('mcp', 'mcp_types')))")
    loaded = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60,
                            check=True)
    assert loaded.stdout.strip() == "[]"


def test_both_transports_list_every_tool_with_honest_annotations(desktop, tmp_path):
    async def listed(session):
        async with session as mcp:
            tools = (await mcp.list_tools()).tools
            shot = ok(await mcp.call_tool("screenshot", {}))
            return tools, shot

    for session in (over_http(desktop.url, desktop.token), over_stdio(desktop.url, token_file(tmp_path, desktop.token))):
        tools, shot = run(listed(session))
        assert {tool.name: annotations_of(tool) for tool in tools} == ANNOTATIONS
        for tool in tools:
            schema = tool.input_schema
            assert schema["type"] == "object" and schema["additionalProperties"] is False, tool.name
            assert "action" not in schema["properties"], tool.name
            assert tool.description and tool.title, tool.name
        assert image_of(shot).size == SCREEN  # 1280x800 is within what a model takes as it is
        assert "Coordinates in your later calls are pixels of this screenshot" in text_of(shot)


def test_a_click_on_what_a_scaled_screenshot_shows_lands_on_it(desktop, recorder):
    async def scenario():
        async with over_http(desktop.url, desktop.token) as mcp:
            shot = ok(await mcp.call_tool("screenshot", {"max_width": 777}))
            picture = image_of(shot)
            assert picture.size == (777, 486)
            x, y = recorder.at(20, 20)
            pixels = red_square_in(picture, (x * 777 // 1280, y * 486 // 800))
            assert pixels, "the red square must show in the scaled screenshot"
            xs, ys = [p[0] for p in pixels], [p[1] for p in pixels]
            for point in [(min(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys)), (max(xs), min(ys))]:
                recorder.clear()
                ok(await mcp.call_tool("left_click", {"coordinate": list(point)}))
                recorder.wait_for(lambda r: r["type"] == "release")
                press = recorder.records("press")[0]
                assert 0 <= press["x"] < 40 and 0 <= press["y"] < 40, (point, press)
                where = ok(await mcp.call_tool("cursor_position", {})).structured_content
                assert (where["x"], where["y"]) == point  # read back in the same space, exactly

    run(scenario())


def test_every_pointer_member_acts_where_the_scaled_screenshot_shows(desktop, recorder):
    space = (640, 400)

    def seen(x: int, y: int) -> list[int]:
        """Where the screenshot shows canvas pixel (x, y)."""
        return list(imaging.from_screen(*recorder.at(x, y), space, SCREEN))

    def landed(point: list[int]) -> tuple[int, int]:
        return imaging.to_screen(*point, space, SCREEN)

    here, start, end = seen(100, 100), seen(200, 150), seen(400, 300)

    async def scenario():
        async with over_http(desktop.url, desktop.token) as mcp:
            assert image_of(ok(await mcp.call_tool("screenshot", {"max_width": 640}))).size == space
            for name in ("right_click", "middle_click", "double_click", "triple_click"):
                ok(await mcp.call_tool(name, {"coordinate": here}))
            ok(await mcp.call_tool("left_click", {"coordinate": here, "text": "ctrl"}))
            ok(await mcp.call_tool("scroll", {"scroll_direction": "down", "scroll_amount": 2, "coordinate": here}))
            ok(await mcp.call_tool("left_click_drag", {"start_coordinate": start, "coordinate": end}))
            ok(await mcp.call_tool("left_mouse_down", {"coordinate": start}))
            ok(await mcp.call_tool("mouse_move", {"coordinate": seen(300, 200)}))
            ok(await mcp.call_tool("left_mouse_up", {"coordinate": end}))

    run(scenario())
    recorder.wait_for(lambda r: r["type"] == "release" and (r["x_root"], r["y_root"]) == landed(end)
                      and len(recorder.records("release")) == 10)
    presses = [(r["button"], (r["x_root"], r["y_root"]), "control" in r["modifiers"]) for r in recorder.records("press")]
    assert presses == [(3, landed(here), False), (2, landed(here), False)] + [(1, landed(here), False)] * 5 + [
        (1, landed(here), True), (1, landed(start), False), (1, landed(start), False)]
    assert [(r["x_root"], r["y_root"]) for r in recorder.records("release")[-2:]] == [landed(end)] * 2
    scrolls = recorder.records("scroll")
    assert [(r["direction"], (r["x_root"], r["y_root"])) for r in scrolls] == [("down", landed(here))] * 2
    # The second drag passed through the point it was moved to, button held.
    assert landed(seen(300, 200)) in [(r["x_root"], r["y_root"]) for r in recorder.records("motion")]


def test_sessions_keep_their_own_spaces_and_their_batches_never_interleave(desktop, client, recorder):
    target = recorder.at(300, 200)
    sizes = {"a": {"max_width": 640}, "b": {"max_width": 1000}, "c": {}}

    async def session(letter: str, started: asyncio.Barrier, clicked: asyncio.Barrier):
        async with over_http(desktop.url, desktop.token) as mcp:
            picture = image_of(ok(await mcp.call_tool("screenshot", sizes[letter])))
            point = imaging.from_screen(*target, picture.size, SCREEN)
            await started.wait()
            ok(await mcp.call_tool("left_click", {"coordinate": list(point)}))
            await clicked.wait()
            for _ in range(3):
                ok(await mcp.call_tool("type", {"text": letter * 60}))
            return picture.size, imaging.to_screen(*point, picture.size, SCREEN)

    async def scenario():
        started, clicked = asyncio.Barrier(3), asyncio.Barrier(3)
        return await asyncio.gather(*(session(letter, started, clicked) for letter in sizes))

    outcomes = run(scenario())
    assert [size for size, _ in outcomes] == [(640, 400), (1000, 625), SCREEN]
    presses = sorted((r["x_root"], r["y_root"]) for r in recorder.records("press"))
    assert presses == sorted(landed for _, landed in outcomes)  # each where its own space put it
    for x, y in presses:
        assert abs(x - target[0]) <= 1 and abs(y - target[1]) <= 1  # half a pixel of the coarsest space
    typed = typed_into(recorder, 540)
    assert sorted(typed) == sorted("abc" * 180)
    # Nine batches of 60, each whole: a batch of one session never runs inside another's.
    assert all(len(set(typed[i:i + 60])) == 1 for i in range(0, 540, 60)), typed


def test_unicode_typed_over_stdio_is_exactly_what_the_app_saves(desktop, client, tmp_path):
    target = tmp_path / "typed.txt"

    async def scenario():
        async with over_stdio(desktop.url, token_file(tmp_path, desktop.token)) as mcp:
            launched = ok(await mcp.call_tool("launch", {"command": ["xterm", "-e", "sh", "-c", f"cat > {target}"],
                                                         "timeout": 30}))
            window = launched.structured_content["window"]
            assert window is not None, text_of(launched)
            ok(await mcp.call_tool("activate_window", {"window_id": window["id"]}))
            ok(await mcp.call_tool("type", {"text": MIXED}))
            ok(await mcp.call_tool("key", {"text": "ctrl+d"}))  # end of input: cat writes and exits
            wait_for_file(target, MIXED)
            listed = ok(await mcp.call_tool("list_windows", {})).structured_content["windows"]
            if window["id"] in [w["id"] for w in listed]:
                ok(await mcp.call_tool("close_window", {"window_id": window["id"]}))

    run(scenario())


def test_a_zoom_is_the_region_at_full_resolution_and_keeps_the_space(desktop, client, recorder):
    async def scenario():
        async with over_http(desktop.url, desktop.token) as mcp:
            assert image_of(ok(await mcp.call_tool("screenshot", {"max_width": 640}))).size == (640, 400)
            zoom = ok(await mcp.call_tool("zoom", {"region": [0, 0, 320, 200]}))
            # The same screen area from the API at one image pixel per screen pixel.
            full = client.screenshot(region=(0, 0, 640, 400), max_width=640, max_height=400)
            assert (full.width, full.height) == (640, 400)
            zoomed = image_of(zoom)
            assert zoomed.size == (640, 400)
            assert ImageChops.difference(zoomed, Image.open(io.BytesIO(full.data)).convert("RGB")).getbbox() is None
            assert red_square_in(zoomed, recorder.at(20, 20)), "the recorder's red square, at full size"
            assert "still refer to your 640x400 screenshot" in text_of(zoom)
            ok(await mcp.call_tool("mouse_move", {"coordinate": [320, 200]}))
            listed = ok(await mcp.call_tool("list_windows", {})).structured_content["windows"]
            return client.cursor(), listed

    cursor, listed = run(scenario())
    assert (cursor.x, cursor.y) == imaging.to_screen(320, 200, (640, 400), SCREEN) == (641, 401)
    # Window geometry in the same space: the recorder's, halved, edges rounded outward.
    (window,) = [w for w in client.windows() if w.title == "cubicle-recorder"]
    (seen,) = [w for w in listed if w["id"] == window.id]
    assert (seen["x"], seen["y"]) == (window.x // 2, window.y // 2)
    assert (seen["x"] + seen["width"], seen["y"] + seen["height"]) == (-(-(window.x + window.width) // 2),
                                                                       -(-(window.y + window.height) // 2))



def test_bad_calls_are_tool_errors_in_the_apis_words_and_change_nothing(desktop, client, recorder):
    space = (640, 400)
    bad_actions = [
        {"action": "left_click", "coordinate": [640, 10]},
        {"action": "left_click_drag", "start_coordinate": [10, 10], "coordinate": [20, 20], "path": [[15, 15], [900, 1]]},
        {"action": "key", "text": "ctrl+nosuchkey"},
        {"action": "type", "text": "a\x00b"},
        {"action": "scroll", "scroll_direction": "sideways", "coordinate": [5, 5]},
        {"action": "left_click", "coordinate": ["5", 10]},
        {"action": "left_click", "coordinates": [5, 10]},
        {"action": "hold_key", "text": "shift", "duration": 301},
        {"action": "zoom", "region": [10, 10, 10, 20]},
    ]

    def api_says(action: dict) -> str:
        with pytest.raises(CubicleError) as refused:
            client.act(action, coordinate_space=space)
        response = refused.value.response
        failed = [r.error.message for r in response.results if r.status == "error"] if response else []
        return failed[0] if failed else refused.value.message.removeprefix("actions[0].")

    expected = [api_says(action) for action in bad_actions]
    with pytest.raises(CubicleError) as no_window:
        client.activate(999_999_999)
    with pytest.raises(CubicleError) as small:
        client.screenshot(max_width=5)
    with pytest.raises(CubicleError) as relative:
        client.read_file("relative/path")
    cursor, windows = client.cursor(), client.windows()
    recorder.clear()

    async def scenario():
        async with over_http(desktop.url, desktop.token) as mcp:
            assert image_of(ok(await mcp.call_tool("screenshot", {"max_width": 640}))).size == space
            answers = []
            for action in bad_actions:
                arguments = {key: value for key, value in action.items() if key != "action"}
                answers.append(await mcp.call_tool(action["action"], arguments))
            others = [await mcp.call_tool("activate_window", {"window_id": 999_999_999}),
                      await mcp.call_tool("screenshot", {"max_width": 5}),
                      await mcp.call_tool("read_file", {"path": "relative/path"}),
                      await mcp.call_tool("activate_window", {"window_id": True}),
                      await mcp.call_tool("left_click", {"action": "right_click", "coordinate": [5, 5]})]
            with pytest.raises(MCPError, match="Unknown tool 'computer_click'"):
                await mcp.call_tool("computer_click", {"x": 1, "y": 2})
            return answers, others

    answers, others = run(scenario())
    assert all(answer.is_error for answer in answers + others)
    assert [text_of(answer) for answer in answers] == expected
    assert [text_of(answer) for answer in others[:3]] == [no_window.value.message, small.value.message,
                                                          relative.value.message]
    assert text_of(others[3]) == "window_id: true is not a number; send a number."
    assert text_of(others[4]) == "action: unknown field (the tool's name is the action)"
    assert expected[0] == "Coordinates (640, 10) are outside display bounds (640x400)."
    # Nothing reached the desktop: no input, the pointer and the windows as they were.
    assert recorder.records("press") == recorder.records("motion") == recorder.records("key_press") == []
    assert client.cursor() == cursor
    assert [(w.id, w.focused) for w in client.windows()] == [(w.id, w.focused) for w in windows]


def test_a_request_without_a_session_is_served_in_the_default_space(desktop, recorder):
    async def scenario():
        async with over_http(desktop.url, desktop.token, mode="2026-07-28") as mcp:
            refused = await mcp.call_tool("screenshot", {"max_width": 640})
            shot = ok(await mcp.call_tool("screenshot", {}))
            ok(await mcp.call_tool("left_click", {"coordinate": list(recorder.at(50, 60))}))
            return refused, shot

    refused, shot = run(scenario())
    assert refused.is_error and "belongs to no MCP session" in text_of(refused)
    assert image_of(shot).size == SCREEN
    press = recorder.wait_for(lambda r: r["type"] == "press")
    assert (press["x"], press["y"]) == (50, 60)


def test_without_or_with_a_wrong_token_nothing_is_served(desktop, tmp_path):
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}}
    accept = {"Accept": "application/json, text/event-stream"}
    for headers, url in [({}, desktop.url + "/mcp"), ({"Authorization": "Bearer wrong"}, desktop.url + "/mcp"),
                         ({}, f"{desktop.url}/mcp?token={desktop.token}")]:
        answer = httpx.post(url, json=initialize, headers={**accept, **headers}, timeout=30)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", url
        assert answer.json()["error"]["code"] == "unauthorized"
        assert "mcp-session-id" not in answer.headers
    bearer = {"Authorization": f"Bearer {desktop.token}"}
    served = httpx.post(desktop.url + "/mcp", json=initialize, headers={**accept, **bearer}, timeout=30)
    assert served.status_code == 200 and served.headers["mcp-session-id"]
    ended = httpx.delete(desktop.url + "/mcp", headers={**bearer, "mcp-session-id": served.headers["mcp-session-id"]})
    assert ended.status_code == 200

    async def connect_with_a_wrong_token():
        async with over_http(desktop.url, "wrong") as mcp:
            await mcp.list_tools()

    with pytest.raises(ExceptionGroup) as refused:
        run(connect_with_a_wrong_token())
    assert refused.group_contains(MCPError)

    # stdio: a wrong token or none at all, and the command says so and stops.
    command = stdio_parameters(desktop.url, token_file(tmp_path, "wrong"))
    wrong = subprocess.run([command.command, *command.args], env=command.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and wrong.stdout == ""
    assert "refused: 401 unauthorized: Missing or wrong token" in wrong.stderr
    bare = subprocess.run([sys.executable, "-m", "cubicle", "mcp", "--desktop", desktop.url], env=command.env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "no token: set CUBICLE_TOKEN or pass --token-file" in bare.stderr


# -- the MCP Inspector's CLI --------------------------------------------------------------------


def test_the_inspector_cli_lists_and_calls_tools_over_both_transports(desktop, recorder, tmp_path):
    url, bearer = desktop.url + "/mcp", f"Authorization: Bearer {desktop.token}"
    listed = inspector(tmp_path, url, "--header", bearer, "--method", "tools/list", "--strict")
    assert listed.returncode == 0, listed.stderr
    tools = {tool["name"]: tool for tool in listed.answer["tools"]}
    assert set(tools) == set(ANNOTATIONS)
    assert tools["shell"]["annotations"] == {"title": "Run shell commands", "readOnlyHint": False,
                                             "destructiveHint": True, "idempotentHint": False, "openWorldHint": True}

    shot = inspector(tmp_path, url, "--header", bearer, "--method", "tools/call", "--tool-name", "screenshot")
    assert shot.returncode == 0, shot.stderr
    image = shot.answer["content"][0]
    assert image["type"] == "image" and image["mimeType"] == "image/png"
    assert imaging.image_size_from_header(base64.b64decode(image["data"])) == SCREEN

    x, y = recorder.at(120, 80)
    clicked = inspector(tmp_path, url, "--header", bearer, "--method", "tools/call", "--tool-name", "left_click",
                        "--tool-arg", f"coordinate=[{x},{y}]")
    assert clicked.returncode == 0 and clicked.answer["isError"] is False, clicked.stderr
    press = recorder.wait_for(lambda r: r["type"] == "press")
    assert (press["x"], press["y"]) == (120, 80)

    outside = inspector(tmp_path, url, "--header", bearer, "--method", "tools/call", "--tool-name", "left_click",
                        "--tool-arg", "coordinate=[1280,5]")
    assert outside.returncode != 0 and outside.answer["isError"] is True
    assert outside.answer["content"][0]["text"] == "Coordinates (1280, 5) are outside display bounds (1280x800)."

    for header in ([], ["--header", "Authorization: Bearer wrong"]):
        refused = inspector(tmp_path, url, *header, "--method", "tools/list", "--stored-auth-only")
        assert refused.returncode != 0 and "tools" not in refused.stdout
        assert "Missing or wrong token" in refused.stdout + refused.stderr

    recorder.clear()
    typed = inspector(tmp_path, sys.executable, "-m", "cubicle", "mcp", "--desktop", desktop.url,
                      "--token-file", str(token_file(tmp_path, desktop.token)),
                      "--method", "tools/call", "--tool-name", "type", "--tool-arg", "text=héllo ✓ 日本")
    assert typed.returncode == 0 and typed.answer["isError"] is False, typed.stderr
    assert typed_into(recorder, 10) == "héllo ✓ 日本"


def _nodes(node: dict):
    yield node
    for child in node.get("children", []):
        yield from _nodes(child)


def test_a_button_found_in_the_accessibility_tree_is_clicked_in_the_screenshots_space(desktop, client):
    """galculator's "7", found by name in the tree the tool gives in a scaled screenshot's
    space, and clicked at its box's centre there: the calculator's display shows 7."""
    launched = client.launch("galculator", timeout=30)
    assert launched.window is not None

    def display(tree: dict) -> str:
        shown = [node for app in tree["apps"] for node in _nodes(app) if node["role"] == "text" and "box" in node]
        assert len(shown) == 1, shown
        return shown[0].get("text", "")

    async def scenario():
        async with over_http(desktop.url, desktop.token) as mcp:
            assert image_of(ok(await mcp.call_tool("screenshot", {"max_width": 640}))).size == (640, 400)
            call = {"window_id": launched.window.id}
            tree = ok(await mcp.call_tool("accessibility_tree", call)).structured_content
            assert tree["coordinate_space"] == {"width": 640, "height": 400}
            seven = [node for app in tree["apps"] for node in _nodes(app)
                     if node.get("name") == "7" and "button" in node["role"]]
            assert len(seven) == 1, seven
            box = seven[0]["box"]
            screen_box = next(node for app in client.accessibility(window=launched.window.id).apps for node in _walk(app)
                          if node.name == "7" and "button" in node.role).box
            assert abs(box["x"] - screen_box.x / 2) <= 1 and abs(box["width"] - screen_box.width / 2) <= 1
            assert display(tree) == "0"
            ok(await mcp.call_tool("left_click", {"coordinate": [box["x"] + box["width"] // 2,
                                                                 box["y"] + box["height"] // 2]}))
            deadline = time.monotonic() + 10
            while display(ok(await mcp.call_tool("accessibility_tree", call)).structured_content) != "7":
                assert time.monotonic() < deadline, "the display did not show 7"
                await asyncio.sleep(0.2)
            both = await mcp.call_tool("accessibility_tree", {"window_id": launched.window.id, "focused": True})
            assert both.is_error and "two scopes" in text_of(both)

    try:
        run(scenario())
    finally:
        with contextlib.suppress(CubicleError):
            client.close_window(launched.window.id)


def _walk(node):
    yield node
    for child in node.children:
        yield from _walk(child)
