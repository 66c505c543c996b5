"""A catalogue of malformed and hostile requests against the desktop, each with the status
and the words of the answer that tell the sender what to do instead. After the whole table
the desktop is as it was: the same picture, the same windows, pointer and clipboard, and the
recorder app (which has the keyboard focus all along) received nothing.

Two rows are not refusals but limits that hold: a shell command past its timeout, and one
that prints megabytes; their answers are 200 with the note in the output.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from support import changed_outside_the_clock


@dataclass
class Bad:
    name: str
    method: str
    path: str
    status: int
    message: str  # in error.message (or, for a 200, in the shell's output)
    code: str | None = None
    request: dict[str, Any] = field(default_factory=dict)  # json=, content=, params=, headers=


def action(body: Any, status: int, message: str, code: str, name: str) -> Bad:
    return Bad(name, "POST", "/actions", status, message, code, {"json": body})


def click(x: Any, y: Any) -> dict:
    return {"action": "left_click", "coordinate": [x, y]}


def chunks(total: int, size: int = 100_000):
    for _ in range(total // size):
        yield b"x" * size


def catalogue(tmp: Path) -> list[Bad]:
    missing_dir = tmp / "no-such-folder"
    big = tmp / "big.txt"
    with open(big, "wb") as handle:  # 11 MiB, sparse
        handle.truncate(11 * 1024 * 1024)
    json_header = {"Content-Type": "application/json"}
    oob = "coordinates_out_of_bounds"
    bounds = "outside display bounds (1280x800)"
    invalid = "invalid_request"
    return [
        # -- coordinates ------------------------------------------------------------------
        action(click(-1, 5), 422, "Coordinates (-1, 5) are " + bounds, oob, "negative x"),
        action(click(5, -30), 422, "Coordinates (5, -30) are " + bounds, oob, "negative y"),
        action(click(1280, 0), 422, "Coordinates (1280, 0) are " + bounds, oob, "x one past the edge"),
        action({"action": "mouse_move", "coordinate": [0, 800]}, 422, "Coordinates (0, 800) are " + bounds, oob, "y one past the edge"),
        action(click(10.5, 3), 422, "actions[0].coordinate[0]: Input should be a valid integer", invalid, "float coordinate"),
        action(click(1e20, 3), 422, "actions[0].coordinate[0]: 1e+20 is far too large", invalid, "huge float coordinate"),
        action(click(10**20, 3), 422, f"Coordinates ({10**20}, 3) are " + bounds, oob, "huge integer coordinate"),
        action(click(True, False), 422, "actions[0].coordinate[0]: true is not a number", invalid, "booleans as coordinates"),
        action(click("100", 200), 422, 'actions[0].coordinate[0]: "100" is a string; send the number itself', invalid,
               "a coordinate as a string"),
        action({"action": "left_click", "coordinate": [1, 2, 3]}, 422, "actions[0].coordinate: Tuple should have at most 2 items", invalid,
               "three coordinates"),
        action({"action": "left_click", "coordinate": "100,200"}, 422, "actions[0].coordinate: Input should be a valid tuple", invalid,
               "coordinate as a string"),
        action({"actions": [click(1100, 700)], "coordinate_space": {"width": 1024, "height": 640}}, 422,
               "Coordinates (1100, 700) are outside display bounds (1024x640)", oob, "outside a scaled coordinate space"),
        action({"actions": [click(1, 1)], "coordinate_space": {"width": 0, "height": 640}}, 422,
               "coordinate_space.width: Input should be greater than or equal to 1", invalid, "empty coordinate space"),
        action({"action": "left_click_drag", "start_coordinate": [-5, 5], "coordinate": [10, 10]}, 422,
               "Coordinates (-5, 5) are " + bounds, oob, "drag from off the screen"),
        action({"action": "left_click_drag", "coordinate": [5, 5], "path": [[1, 1], [2000, 2]]}, 422,
               "Coordinates (2000, 2) are " + bounds, oob, "drag through a point off the screen"),
        action({"action": "scroll", "scroll_direction": "up", "coordinate": [-5, 5]}, 422, "Coordinates (-5, 5) are " + bounds, oob,
               "scroll off the screen"),
        # -- keys -------------------------------------------------------------------------
        action({"action": "key", "text": "ctrl+Retrun"}, 422, "Unknown key name 'Retrun'. Did you mean 'Return'", "unknown_key",
               "misspelt key"),
        action({"action": "key", "text": "ctrl+"}, 422, "Key combo 'ctrl+' has an empty key name; write it like ctrl+shift+t",
               "invalid_text", "combo without a key"),
        action({"action": "key", "text": "Return\x00"}, 422, "Unknown key name 'Return\\x00'. Did you mean 'Return'?", "unknown_key",
               "key name with a NUL"),
        action({"action": "key", "text": ""}, 422, "actions[0].text: String should have at least 1 character", invalid, "empty key"),
        action({"action": "key", "text": "a+" * 101}, 422, "actions[0].text: String should have at most 200 characters", invalid,
               "endless combo"),
        action({"action": "key", "text": "a", "repeat": 101}, 422, "actions[0].repeat: Input should be less than or equal to 100", invalid,
               "key repeated too often"),
        action({"action": "hold_key", "text": "shift ctrl", "duration": 1}, 422, "hold_key takes one combo", "invalid_text",
               "holding two combos"),
        action({"action": "left_click", "coordinate": [5, 5], "text": "hyperdrive"}, 422, "Unknown key name 'hyperdrive'",
               "unknown_key", "click with an unknown modifier"),
        # -- text -------------------------------------------------------------------------
        action({"action": "type", "text": ""}, 422, "actions[0].text: String should have at least 1 character", invalid, "empty text"),
        action({"action": "type", "text": "x" * 20_001}, 422, "at most 20000 characters", invalid, "text over 20000 characters"),
        action({"action": "type", "text": "x" * 10 * 1024 * 1024}, 413, "larger than 2097152 bytes", "body_too_large", "10 MB of text"),
        action({"action": "type", "text": "ring\x07"}, 422, "Character U+0007 at position 4 cannot be typed: it is a control character",
               "invalid_text", "bell character"),
        action({"action": "type", "text": "\x1b[31mred"}, 422, "Character U+001B at position 0", "invalid_text", "terminal escape"),
        action({"action": "type", "text": "a\x00b"}, 422, "Character U+0000 at position 1", "invalid_text", "NUL in text"),
        Bad("lone surrogate in text", "POST", "/actions", 422, "holds a lone surrogate", invalid,
            {"content": b'{"action": "type", "text": "a\\ud800"}', "headers": json_header}),
        # -- regions ----------------------------------------------------------------------
        action({"action": "zoom", "region": [100, 100, 50, 50]}, 422, "must satisfy 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 800",
               "invalid_region", "upside-down zoom"),
        action({"action": "zoom", "region": [0, 0, 1281, 10]}, 422, "must satisfy 0 <= x0 < x1 <= 1280", "invalid_region",
               "zoom past the edge"),
        action({"action": "zoom", "region": [0, 0, 10]}, 422, "actions[0].region[3]: this field is required", invalid,
               "zoom with three numbers"),
        Bad("screenshot region of three numbers", "GET", "/screenshot", 422, "region must be four integers x0,y0,x1,y1, not '1,2,3'",
            "invalid_region", {"params": {"region": "1,2,3"}}),
        Bad("screenshot region of words", "GET", "/screenshot", 422, "region must be four integers", "invalid_region",
            {"params": {"region": "a,b,c,d"}}),
        Bad("screenshot region with underscores", "GET", "/screenshot", 422, "region must be four integers", "invalid_region",
            {"params": {"region": "1_0,0,20,20"}}),
        Bad("empty screenshot region", "GET", "/screenshot", 422, "0 <= x0 < x1 <= 1280", "invalid_region",
            {"params": {"region": "10,10,10,20"}}),
        # -- durations and waits -------------------------------------------------------------
        action({"action": "wait", "duration": 301}, 422, "actions[0].duration: Input should be less than or equal to 300", invalid,
               "wait over 300 s"),
        action({"action": "wait", "duration": -1}, 422, "actions[0].duration: Input should be greater than or equal to 0", invalid,
               "negative wait"),
        action({"action": "hold_key", "text": "shift", "duration": 0}, 422, "actions[0].duration: Input should be greater than 0", invalid,
               "hold for no time"),
        action([{"action": "wait", "duration": 200}, {"action": "hold_key", "text": "shift", "duration": 101}], 422,
               "keep the desktop busy for about 301 s", "batch_too_long", "waits adding up past 300 s"),
        action({"action": "left_click_drag", "start_coordinate": [0, 0], "coordinate": [5, 5],
                "path": [[1279, 799] if i % 2 else [0, 0] for i in range(1000)]}, 422,
               "Send it as several batches, or shorten the drag paths", "batch_too_long", "a drag that would take eight minutes"),
        action({"action": "wait", "duration": "ten"}, 422, "actions[0].duration: Input should be a valid number", invalid,
               "duration as a word"),
        Bad("settle quiet time below 10 ms", "GET", "/screenshot", 422, "quiet_ms: Input should be greater than or equal to 10", invalid,
            {"params": {"settle": "true", "quiet_ms": 1}}),
        Bad("settle timeout over a minute", "GET", "/screenshot", 422, "timeout_ms: Input should be less than or equal to 60000", invalid,
            {"params": {"timeout_ms": 60001}}),
        # -- wrong shapes, unknown and missing fields ------------------------------------------
        action({"action": "fly"}, 422, "does not match any of the expected tags", invalid, "unknown action"),
        action({"action": "left_click", "coordinates": [1, 2]}, 422, "actions[0].coordinates: unknown field", invalid, "misspelt field"),
        action({"action": "mouse_move"}, 422, "actions[0].coordinate: this field is required", invalid, "missing coordinate"),
        action({}, 422, "actions: this field is required", invalid, "empty object"),
        action([], 422, "List should have at least 1 item", invalid, "empty batch"),
        action([{"action": "cursor_position"}] * 101, 422, "List should have at most 100 items", invalid, "101 actions"),
        action("left_click", 422, "the body must be a JSON object, not a string", invalid, "body is a JSON string"),
        action({"action": "scroll", "scroll_direction": "sideways"}, 422, "actions[0].scroll_direction", invalid, "unknown direction"),
        Bad("unknown query parameter", "GET", "/screenshot", 422, "'max_widht': unknown query parameter", invalid,
            {"params": {"max_widht": 100}}),
        Bad("screenshot format gif", "GET", "/screenshot", 422, "format: Input should be 'png', 'jpeg' or 'webp'", invalid,
            {"params": {"format": "gif"}}),
        # -- bodies -----------------------------------------------------------------------------
        Bad("not JSON", "POST", "/actions", 400, "the body is not valid JSON", "malformed_body",
            {"content": b"{not json", "headers": json_header}),
        Bad("form-encoded body", "POST", "/actions", 415, "Content-Type: application/json", "unsupported_media_type",
            {"content": b"action=left_click", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        Bad("no body", "POST", "/actions", 422, "the body is missing: send JSON", invalid, {"headers": json_header}),
        Bad("3 MB body", "POST", "/actions", 413, "larger than 2097152 bytes", "body_too_large",
            {"content": b"[" + b" " * 3_000_000 + b"]", "headers": json_header}),
        Bad("4 MB streamed without a length", "POST", "/actions", 413, "larger than 2097152 bytes", "body_too_large",
            {"content": chunks(4_000_000), "headers": json_header}),
        Bad("wrong method", "DELETE", "/actions", 405, "DELETE is not allowed on /actions; it takes POST", "method_not_allowed"),
        Bad("unknown route", "GET", "/nowhere", 404, "No such route. See /docs", "not_found"),
        # -- the shell --------------------------------------------------------------------------
        Bad("shell command that times out", "POST", "/shell/run", 200, "did not finish within 1 s (the timeout)", None,
            {"json": {"command": "sleep 30", "timeout": 1}}),
        Bad("shell command printing megabytes", "POST", "/shell/run", 200,
            "characters of output cut here; redirect the output to a file", None,
            {"json": {"command": "head -c 5000000 /dev/zero | tr '\\0' x", "timeout": 60}}),
        Bad("blank shell command", "POST", "/shell/run", 422, "The command is empty", "empty_command", {"json": {"command": "  \n "}}),
        Bad("NUL in a shell command", "POST", "/shell/run", 422, "contains a NUL character", "invalid_command",
            {"json": {"command": "echo a\x00b"}}),
        Bad("shell timeout over 600 s", "POST", "/shell/run", 422, "timeout: Input should be less than or equal to 600", invalid,
            {"json": {"command": "true", "timeout": 601}}),
        Bad("shell timeout of true", "POST", "/shell/run", 422, "timeout: true is not a number", invalid,
            {"json": {"command": "true", "timeout": True}}),
        Bad("shell timeout of zero", "POST", "/shell/run", 422, "timeout: Input should be greater than 0", invalid,
            {"json": {"command": "true", "timeout": 0}}),
        # -- files ------------------------------------------------------------------------------
        Bad("relative path climbing out", "GET", "/files", 422, "is not absolute. Give the full path starting with '/'",
            "path_not_absolute", {"params": {"path": "../../etc/passwd"}}),
        Bad("missing file", "GET", "/files", 404, f"No file or folder at '{tmp}/nothing.txt'. The folder '{tmp}' exists",
            "file_not_found", {"params": {"path": f"{tmp}/nothing.txt"}}),
        Bad("traversal to a missing file", "GET", "/files", 404, f"No file or folder at '{tmp}/nothing.txt'", "file_not_found",
            {"params": {"path": f"{tmp}/a/b/../../../{tmp.name}/nothing.txt"}}),
        Bad("a device", "GET", "/files", 422, "is not a regular file", "not_a_regular_file", {"params": {"path": "/dev/zero"}}),
        Bad("a file over 10 MiB", "GET", "/files", 422, "files over 10,485,760 bytes are not read whole", "file_too_large",
            {"params": {"path": str(big)}}),
        Bad("NUL in a path", "GET", "/files", 422, "The path contains a NUL character", "invalid_path",
            {"params": {"path": f"{tmp}/a\x00b"}}),
        Bad("no path", "GET", "/files", 422, "path: this field is required", invalid),
        Bad("write into a missing folder", "PUT", "/files", 404, 'Send "create_dirs": true to create it', "parent_not_found",
            {"json": {"path": f"{missing_dir}/notes.txt", "content": "x"}}),
        Bad("write over a folder", "PUT", "/files", 422, "is a directory; give the path of a file inside it", "is_a_directory",
            {"json": {"path": str(tmp), "content": "x"}}),
        Bad("write 2,000,001 characters", "PUT", "/files", 422, "content: String should have at most 2000000 characters", invalid,
            {"json": {"path": f"{tmp}/long.txt", "content": "x" * 2_000_001}}),
        # -- windows and apps -------------------------------------------------------------------
        Bad("activate an unknown window", "POST", "/windows/999999999/activate", 404, "No window with id 999999999", "window_not_found"),
        Bad("close an unknown window", "POST", "/windows/0x7ffffffe/close", 404, "List them with GET /windows", "window_not_found"),
        Bad("window id that is a word", "POST", "/windows/abc/activate", 422, "Window id must be a number (decimal or 0x hex)",
            "invalid_window_id"),
        Bad("negative window id", "POST", "/windows/-1/close", 422, "not '-1'", "invalid_window_id"),
        Bad("window id with an underscore", "POST", "/windows/1_0/activate", 422, "not '1_0'", "invalid_window_id"),
        Bad("launch a missing program", "POST", "/apps/launch", 422, "Program 'no-such-program-cubicle' was not found on the desktop's PATH",
            "launch_failed", {"json": {"command": "no-such-program-cubicle --flag"}}),
        Bad("launch nothing", "POST", "/apps/launch", 422, "The command is empty; give a program name", "invalid_command",
            {"json": {"command": "   "}}),
        Bad("launch with an open quote", "POST", "/apps/launch", 422, "Cannot split the command: No closing quotation", "invalid_command",
            {"json": {"command": 'xterm -T "unbalanced'}}),
        Bad("launch with a NUL in an argument", "POST", "/apps/launch", 422, "contains a NUL character", "invalid_command",
            {"json": {"command": ["xterm", "-T", "a\x00b"]}}),
        Bad("launch waiting for a window of 0", "POST", "/apps/launch", 422, "wait_for_window: 0 is not true or false", invalid,
            {"json": {"command": "xterm", "wait_for_window": 0}}),
        Bad("launch with no time to wait", "POST", "/apps/launch", 422, "timeout: Input should be greater than 0", invalid,
            {"json": {"command": "xterm", "timeout": 0}}),
        # -- the clipboard ---------------------------------------------------------------------
        Bad("clipboard over a million characters", "PUT", "/clipboard", 422, "text: String should have at most 1000000 characters", invalid,
            {"json": {"text": "x" * 1_000_001}}),
        Bad("clipboard with a misspelt field", "PUT", "/clipboard", 422, "txt: unknown field", invalid, {"json": {"txt": "x"}}),
    ]


def screen_image(client) -> Image.Image:
    return Image.open(io.BytesIO(client.screenshot(settle=True).data)).convert("RGB")


def window_state(client) -> list[tuple]:
    return [(w.id, w.title, w.x, w.y, w.width, w.height, w.focused, w.minimized) for w in client.windows()]


def test_a_catalogue_of_bad_requests_changes_nothing(desktop, client, recorder, tmp_path, subtests):
    table = catalogue(tmp_path)
    assert len(table) >= 40 and len({bad.name for bad in table}) == len(table)
    client.set_clipboard("clipboard before the table")
    before = screen_image(client)
    windows, cursor = window_state(client), client.cursor()
    assert any(w[1] == "cubicle-recorder" and w[6] for w in windows), "the recorder must have the focus"

    with httpx.Client(base_url=desktop.url, headers={"Authorization": f"Bearer {desktop.token}"}, timeout=120) as http:
        for bad in table:
            with subtests.test(msg=bad.name):
                response = http.request(bad.method, bad.path, **bad.request)
                assert response.status_code == bad.status, response.text[:500]
                body = response.json()
                if bad.status == 200:
                    assert bad.message in body["output"]
                else:
                    assert set(body["error"]) == {"code", "message"}
                    assert bad.message in body["error"]["message"]
                    if bad.code is not None:
                        assert body["error"]["code"] == bad.code

    # The desktop is as it was: nothing typed, clicked, moved, opened, closed or copied.
    time.sleep(0.5)  # anything that did get through has reached the recorder by now
    assert recorder.records() == []
    assert window_state(client) == windows
    assert client.cursor() == cursor
    assert client.get_clipboard() == "clipboard before the table"
    assert changed_outside_the_clock(before, screen_image(client)) is None
    assert not (tmp_path / "no-such-folder").exists() and not (tmp_path / "long.txt").exists()
