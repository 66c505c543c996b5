"""The computer toolset (CubicleComputer, AsyncCubicleComputer) on the real desktop, driven by
the real SDK's tool_runner against the scripted Messages API (cubicle.agent.scripted_api).

What is checked is what a person would see, and what the model was sent back:
- a screenshot is the whole screen at its own size (1280x800 fits the toolset models'
  limits) and shows the windows where they are;
- Unicode typed and a key combo pressed end up in the file a real editor saved;
- a click at a point of a half-size screenshot reaches the input-recording app
  (tests/apps/recorder.py) at the exact full-resolution pixel, and cursor_position answers
  in the screenshot's space;
- zoom is its region at full resolution: the pixels of a crop of a full screenshot, not an
  enlargement of the small screenshot;
- bad input, an unknown member, a click outside the screen and a declined confirm come back
  as is_error results and leave the desktop as it was (the screen, the pointer, the windows,
  and the recorder heard nothing), while the same recorder does hear the calls that follow;
- the async twin under AsyncAnthropic, and a toolset built on a DesktopClient of one's own.
"""

from __future__ import annotations

import asyncio
import base64
import io
import struct
from pathlib import Path
from typing import Any

import anthropic
import pytest
from PIL import Image, ImageChops

from cubicle.agent.scripted_api import ScriptedAPI, last_image, message, text, tool_use
from cubicle.anthropic import AsyncCubicleComputer, CubicleComputer
from cubicle.client import DesktopClient
from support import changed_outside_the_clock, run_tool_runner, wait_until
from support import text_of_result as text_of
from support import tool_results_after_each_turn as results

MODEL = "claude-sonnet-5"
SCREEN = (1280, 800)  # the session desktop's size (support.running_desktop's default)
HALF = (640, 400)
# The toolset models' image limits: a longer image edge, or more 28x28 tiles, is resized by the API.
LONG_EDGE_MAX, TILES_MAX = 2576, 4784
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)  # the recorder's corner squares
CORNER = 40  # their size, in canvas pixels
ORANGE = (255, 128, 0)  # the mark it draws where a click landed


class Permissions:
    """The confirm hook: a person approving everything but the members a test refuses."""

    def __init__(self, *refused: str):
        self.refused = set(refused)
        self.asked: list[str] = []

    def __call__(self, context) -> bool:
        self.asked.append(context.member)
        return context.member not in self.refused


# -- helpers --------------------------------------------------------------------------------


def member(name: str, tool_input: dict[str, Any] | None = None) -> dict[str, Any]:
    """A tool_use block calling one member of the computer toolset."""
    return tool_use(name, tool_input or {}, toolset=True)


def turn(*blocks: dict[str, Any]):
    """A scripted assistant turn that calls these members."""
    return lambda request: message(*blocks)


def run(computer: CubicleComputer, turns: list) -> ScriptedAPI:
    return run_tool_runner([computer], turns, "Work on the desktop.")


def image_bytes(result: dict[str, Any]) -> bytes:
    """The one image of a tool result, as the PNG bytes the model got."""
    (block,) = [block for block in result["content"] if block["type"] == "image"]
    assert block["source"]["media_type"] == "image/png"
    return base64.b64decode(block["source"]["data"])


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk, as a decoder reads them first."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def box_of(image: Image.Image, colour: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """The first and last column and row (inclusive) of the pixels exactly `colour`."""
    difference = ImageChops.difference(image, Image.new("RGB", image.size, colour))
    largest = ImageChops.lighter(ImageChops.lighter(*difference.split()[:2]), difference.split()[2])
    box = largest.point(lambda value: 255 if value == 0 else 0).getbbox()
    assert box is not None, f"no pixel of {colour} in the image"
    left, top, right, bottom = box
    return left, top, right - 1, bottom - 1


def full_screenshot(client: DesktopClient) -> Image.Image:
    shot = client.screenshot()
    assert (shot.width, shot.height) == SCREEN
    return decoded(shot.data)


def pointer_events(recorder) -> list[dict[str, Any]]:
    """Every pointer and key event the recorder heard."""
    kinds = {"press", "release", "motion", "scroll", "key_press", "key_release"}
    return [record for record in recorder.records() if record["type"] in kinds]


def typed_chars(recorder) -> str:
    return "".join(record["char"] for record in recorder.records("key_press"))


def desktop_state(client: DesktopClient) -> tuple[Any, ...]:
    """What a person could see changing besides the screen: the pointer and the windows."""
    cursor = client.cursor()
    windows = sorted((w.id, w.title, w.x, w.y, w.width, w.height, w.focused) for w in client.windows())
    return (cursor.x, cursor.y), windows


def wait_for_file(path: Path, expected: str) -> None:
    held: list[str] = []
    try:
        wait_until(lambda: held.append(path.read_text(encoding="utf-8")) or held[-1] == expected, 20,
                   f"{path} to hold {expected!r}")
    except AssertionError:
        raise AssertionError(f"{path} holds {held[-1]!r}, expected {expected!r}") from None


# -- screenshots and typing -----------------------------------------------------------------


def test_a_screenshot_is_the_whole_screen_at_its_own_size(desktop, recorder):
    with CubicleComputer(desktop.url, desktop.token, confirm=Permissions()) as computer:
        api = run(computer, [turn(member("screenshot"))])
        assert computer.image_size == SCREEN
    (shot,) = results(api)[0]
    assert not shot.get("is_error"), shot
    data = image_bytes(shot)
    width, height = png_size(data)
    # Within the models' limits, so the API takes it as it is: its pixels are the screen's.
    assert max(width, height) <= LONG_EDGE_MAX and -(-width // 28) * -(-height // 28) <= TILES_MAX
    assert (width, height) == SCREEN
    # And it shows the recorder where the window manager put it: its red corner starts exactly there.
    image, (x, y) = decoded(data), recorder.origin
    assert box_of(image.crop((x - 5, y - 5, x + CORNER + 5, y + CORNER + 5)), RED) == (5, 5, 4 + CORNER, 4 + CORNER)


def test_typed_unicode_and_a_key_combo_end_up_in_the_file_the_editor_saves(desktop, client, tmp_path):
    target = tmp_path / "typed.txt"
    target.write_text("")
    launched = client.launch(["mousepad", str(target)], timeout=30)
    assert launched.window is not None, "mousepad opened no window"
    try:
        assert client.activate(launched.window.id).done
        permissions = Permissions()
        with CubicleComputer(desktop.url, desktop.token, confirm=permissions) as computer:
            api = run(computer, [turn(member("type", {"text": "héllo 世界\n"}), member("key", {"text": "ctrl+s"}))])
        typed, saved = results(api)[0]
        assert (text_of(typed), text_of(saved)) == ("Typed.", "Pressed ctrl+s."), (typed, saved)
        assert permissions.asked == ["type", "key"]
        # Only ctrl+s writes the file: what it holds is what the editor received.
        wait_for_file(target, "héllo 世界\n")
    finally:
        client.close_window(launched.window.id)


# -- coordinates of a scaled screenshot, and zoom --------------------------------------------


def test_a_click_on_a_half_size_screenshot_lands_on_the_exact_screen_pixel(desktop, client, recorder):
    def click_the_blue_corner(request):
        # The blue square's last fully blue pixel in the half-size screenshot the model got.
        _, _, right, bottom = box_of(last_image(request), BLUE)
        aimed.append((right, bottom))
        return message(member("left_click", {"coordinate": [right, bottom]}), member("cursor_position"))

    aimed: list[tuple[int, int]] = []
    with CubicleComputer(desktop.url, desktop.token, confirm=Permissions(), image_size=HALF) as computer:
        api = run(computer, [turn(member("screenshot")), click_the_blue_corner])
    assert png_size(image_bytes(results(api)[0][0])) == HALF
    (x, y), (clicked, position) = aimed[0], results(api)[1]
    assert text_of(clicked) == "Clicked."
    recorder.wait_for(lambda r: r["type"] == "press")
    (press,) = recorder.records("press")
    # Each pixel of the half-size image shows a 2x2 block of the screen; the click hits its centre pixel.
    assert (press["button"], press["x_root"], press["y_root"]) == (1, 2 * x + 1, 2 * y + 1)
    # That is on the blue square of the canvas (its first 40 columns and last 40 rows) ...
    assert 0 <= press["x"] < CORNER and recorder.ready["height"] - CORNER <= press["y"] < recorder.ready["height"]
    # The recorder marks the point it heard with a 9x9 orange square (cut at the canvas's last
    # row): the screen shows it there.
    X, Y = press["x_root"], press["y_root"]
    canvas_bottom = recorder.origin[1] + recorder.ready["height"] - 1
    assert box_of(full_screenshot(client), ORANGE) == (X - 4, Y - 4, X + 4, min(Y + 4, canvas_bottom))
    # ... where the desktop's pointer is, which cursor_position reports in the model's space.
    assert client.cursor().model_dump() == {"x": 2 * x + 1, "y": 2 * y + 1}
    assert text_of(position) == f"X={x},Y={y}"


def test_zoom_shows_its_region_at_full_resolution(desktop, client, recorder):
    # A quarter of the half-size screenshot around the recorder's top left: 640x400 screen pixels.
    x, y = recorder.origin
    region = [x // 2, y // 2, x // 2 + 320, y // 2 + 200]
    with CubicleComputer(desktop.url, desktop.token, confirm=Permissions(), image_size=HALF) as computer:
        api = run(computer, [turn(member("screenshot")), turn(member("zoom", {"region": region}))])
    (shot,), (zoomed,) = results(api)
    assert not zoomed.get("is_error"), zoomed
    small, zoom = decoded(image_bytes(shot)), decoded(image_bytes(zoomed))
    assert small.size == zoom.size == HALF
    # Pixel for pixel the screen itself: the 1 px grid lines and labels, sharp.
    screen_crop = full_screenshot(client).crop((2 * region[0], 2 * region[1], 2 * region[2], 2 * region[3]))
    assert ImageChops.difference(zoom, screen_crop).getbbox() is None
    # Not the small screenshot enlarged: that one lost detail the zoom has.
    enlarged = small.crop(tuple(region)).resize(HALF, Image.Resampling.LANCZOS)
    assert ImageChops.difference(zoom, enlarged).getbbox() is not None


# -- refusals leave the desktop untouched ---------------------------------------------------


def test_refused_calls_are_errors_for_the_model_and_change_nothing(desktop, client, recorder):
    # The pointer rests on the recorder: a click run at "the current position" would be heard.
    rest = recorder.at(400, 250)
    client.act({"action": "mouse_move", "coordinate": list(rest)})
    screen_before, state_before = full_screenshot(client), desktop_state(client)
    permissions = Permissions("type")
    with CubicleComputer(desktop.url, desktop.token, confirm=permissions, image_size=HALF) as computer:
        api = run(computer, [
            turn(member("screenshot")),
            turn(member("left_click", {"coordinate": "200,125"}), member("type", {"text": "after a bad click"})),
            turn(member("frobnicate", {"coordinate": [200, 125]})),
            turn(member("left_click", {"coordinate": [700, 125]})),  # inside the screen, outside the screenshot
            turn(member("left_click", {"coordinate": [5000, 10]})),
            turn(member("type", {"text": "must not arrive"})),
        ])
        (bad_input, halted), (unknown,), (outside_shot,), (outside_screen,), (declined,) = results(api)[1:]
        assert all(result.get("is_error") is True for result in
                   (bad_input, halted, unknown, outside_shot, outside_screen, declined))
        assert "invalid input for computer member 'left_click': coordinate" in text_of(bad_input)
        assert text_of(halted) == "Not executed: an earlier computer action in this turn failed."
        assert "unknown computer toolset member 'frobnicate'" in text_of(unknown)
        # The desktop's own wording, in the space of the screenshot the model has.
        assert text_of(outside_shot) == "Coordinates (700, 125) are outside display bounds (640x400)."
        assert text_of(outside_screen) == "Coordinates (5000, 10) are outside display bounds (640x400)."
        assert "did not grant permission to run 'type'" in text_of(declined)
        assert "type" in permissions.asked

        # Nothing moved, nothing was drawn, no window changed, and the recorder heard nothing.
        assert changed_outside_the_clock(screen_before, full_screenshot(client)) is None
        assert desktop_state(client) == state_before
        assert pointer_events(recorder) == []

        # The same toolset and recorder do see calls that are fine: those are all the recorder
        # ever heard (events reach it in order, so anything earlier would come first).
        permissions.refused.clear()
        api = run(computer, [turn(member("left_click", {"coordinate": [200, 125]}), member("type", {"text": "ok"}))])
    assert not any(result.get("is_error") for result in results(api)[0])
    recorder.wait_for(lambda r: r["type"] == "key_release" and r["keysym"] == "k")
    (press,) = recorder.records("press")
    assert (press["x_root"], press["y_root"]) == (2 * 200 + 1, 2 * 125 + 1)
    assert typed_chars(recorder) == "ok"


# -- the async twin, and a desktop client of one's own -----------------------------------------


def test_the_async_toolset_under_the_async_tool_runner(desktop, recorder):
    def click_the_green_corner(request):
        left, top, right, bottom = box_of(last_image(request), GREEN)
        aimed.append(((left + right) // 2, (top + bottom) // 2))
        return message(member("left_click", {"coordinate": list(aimed[0])}))

    async def scenario() -> ScriptedAPI:
        api = ScriptedAPI([turn(member("screenshot")), click_the_green_corner, lambda request: message(text("Done."))])
        try:
            async with AsyncCubicleComputer(desktop.url, desktop.token, confirm=Permissions()) as computer, \
                    anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=api.url, max_retries=0) as client:
                runner = client.beta.messages.tool_runner(model=MODEL, max_tokens=1024, tools=[computer],
                                                          messages=[{"role": "user", "content": "Click."}])
                await runner.until_done()
        finally:
            api.close()
        return api

    aimed: list[tuple[int, int]] = []
    api = asyncio.run(scenario())
    assert api.failure is None, api.failure
    (shot,), (clicked,) = results(api)
    assert png_size(image_bytes(shot)) == SCREEN and text_of(clicked) == "Clicked."
    recorder.wait_for(lambda r: r["type"] == "press")
    (press,) = recorder.records("press")
    assert (press["x_root"], press["y_root"]) == aimed[0]
    assert recorder.ready["width"] - CORNER <= press["x"] and press["y"] < CORNER  # on the green square


def test_a_toolset_on_a_desktop_client_leaves_the_client_open(desktop, recorder):
    target = recorder.at(321, 123)
    with DesktopClient(desktop.url, desktop.token) as own:
        with CubicleComputer(own, confirm=Permissions()) as computer:
            assert computer.client is own
            api = run(computer, [turn(member("left_click", {"coordinate": list(target)}), member("cursor_position"))])
        clicked, position = results(api)[0]
        assert text_of(clicked) == "Clicked." and text_of(position) == "X={},Y={}".format(*target)
        recorder.wait_for(lambda r: r["type"] == "press")
        assert [(r["x"], r["y"]) for r in recorder.records("press")] == [(321, 123)]
        # The toolset did not close the client it was given.
        assert (own.cursor().x, own.cursor().y) == target
    # One built from a URL closes its own client with it.
    with CubicleComputer(desktop.url, desktop.token, confirm=Permissions()) as computer:
        assert computer.client.cursor().x == target[0]
    with pytest.raises(RuntimeError, match="closed"):
        computer.client.cursor()
