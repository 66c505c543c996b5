"""Coordinates in a scaled screenshot's space land exactly on what that screenshot showed."""

from __future__ import annotations

import io

import pytest
from PIL import Image

RED = (255, 0, 0)


def red_square_in(picture: Image.Image, near: tuple[int, int], radius: int = 60) -> list[tuple[int, int]]:
    x0, y0 = near
    return [
        (x, y)
        for x in range(max(0, x0 - radius), min(picture.width, x0 + radius))
        for y in range(max(0, y0 - radius), min(picture.height, y0 + radius))
        if picture.getpixel((x, y)) == RED
    ]


@pytest.mark.parametrize("max_width", [1024, 1000, 777, 640])
def test_click_in_scaled_space_lands_inside_the_target(client, recorder, max_width):
    shot = client.screenshot(max_width=max_width)
    picture = Image.open(io.BytesIO(shot.data)).convert("RGB")
    x, y = recorder.at(20, 20)
    pixels = red_square_in(picture, (int(x * shot.scale_x), int(y * shot.scale_y)))
    assert pixels, "the red square must be visible in the scaled screenshot"
    # Click every corner pixel of the red area as seen in the scaled image: each must land
    # inside the real 40x40 square on the screen.
    xs, ys = [p[0] for p in pixels], [p[1] for p in pixels]
    for point in [(min(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys)), (max(xs), min(ys))]:
        recorder.clear()
        client.act({"action": "left_click", "coordinate": list(point)}, coordinate_space=(shot.width, shot.height))
        recorder.wait_for(lambda r: r["type"] == "release")
        press = recorder.records("press")[0]
        assert 0 <= press["x"] < 40 and 0 <= press["y"] < 40, (point, press)


def test_cursor_position_comes_back_in_the_same_space(client, recorder):
    response = client.act(
        {"action": "mouse_move", "coordinate": [500, 300]}, {"action": "cursor_position"},
        coordinate_space=(1000, 625),
    )
    assert (response.results[1].cursor.x, response.results[1].cursor.y) == (500, 300)
    real = client.cursor()
    assert (real.x, real.y) == (640, 384)  # 500.5 * 1.28 and 300.5 * 1.28, rounded down


def test_batch_screenshot_comes_in_the_coordinate_space(client):
    response = client.act({"action": "cursor_position"}, coordinate_space=(1024, 640), screenshot=True)
    assert (response.screenshot.width, response.screenshot.height) == (1024, 640)
