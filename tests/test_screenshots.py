"""Screenshots show what is on the screen: known content at known places, in every format,
scaled and zoomed with sizes and scale factors that add up."""

from __future__ import annotations

import base64
import io

import httpx
from PIL import Image

RED, GREEN, BLUE, MAGENTA = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 0, 255)


def image(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_full_png_shows_the_recorder_corners_exactly(client, recorder):
    shot = client.screenshot()
    assert shot.media_type == "image/png"
    assert (shot.width, shot.height, shot.scale_x, shot.scale_y) == (1280, 800, 1.0, 1.0)
    picture = image(shot.data)
    assert picture.size == (1280, 800)
    width, height = recorder.ready["width"], recorder.ready["height"]
    # Each 40x40 corner square, sampled at its four inner corners.
    for (cx, cy), colour in [((0, 0), RED), ((width - 40, 0), GREEN), ((0, height - 40), BLUE), ((width - 40, height - 40), MAGENTA)]:
        for dx, dy in [(0, 0), (39, 0), (0, 39), (39, 39)]:
            assert picture.getpixel(recorder.at(cx + dx, cy + dy)) == colour
    # Just outside the red square: the white canvas.
    assert picture.getpixel(recorder.at(40, 40)) == (255, 255, 255)


def test_panel_is_at_the_bottom(client):
    picture = image(client.screenshot().data)
    panel = picture.crop((0, 800 - 32, 1280, 800))
    # Launcher icons and the clock: many colours, unlike the plain background above it.
    assert len(panel.getcolors(100_000)) > 50
    assert len(picture.crop((0, 700, 1280, 760)).getcolors(100_000) or []) < len(panel.getcolors(100_000))


def test_jpeg_and_webp_decode_to_the_screen(client, recorder):
    for fmt, media in [("jpeg", "image/jpeg"), ("webp", "image/webp")]:
        shot = client.screenshot(format=fmt, quality=90)
        assert shot.media_type == media
        picture = image(shot.data)
        assert picture.size == (1280, 800)
        r, g, b = picture.getpixel(recorder.at(20, 20))
        assert r > 220 and g < 40 and b < 40  # red, give or take compression


def test_scaled_screenshot_reports_its_scale_and_shows_content_where_the_scale_says(client, recorder):
    shot = client.screenshot(max_width=1024)
    assert (shot.width, shot.height) == (1024, 640)
    assert shot.scale_x == shot.scale_y == 0.8
    picture = image(shot.data)
    x, y = recorder.at(20, 20)  # the middle of the red square
    assert picture.getpixel((round(x * shot.scale_x), round(y * shot.scale_y))) == RED


def test_region_is_captured_at_full_resolution_and_enlarged(client, recorder):
    x0, y0 = recorder.at(0, 0)
    shot = client.screenshot(region=(x0, y0, x0 + 80, y0 + 50))
    assert shot.region == (x0, y0, x0 + 80, y0 + 50)
    assert (shot.width, shot.height) == (1280, 800)  # fitted to the screen size, aspect kept
    assert shot.scale_x == shot.scale_y == 16.0
    picture = image(shot.data)
    # The red square covers the left half of the region (40 of 80 px), i.e. 640 px now.
    assert picture.getpixel((300, 300)) == RED
    assert picture.getpixel((1000, 300)) == (255, 255, 255)


def test_cursor_is_drawn_only_when_asked(client, recorder):
    x, y = recorder.at(600, 250)
    client.act({"action": "mouse_move", "coordinate": [x, y]})
    box = (x - 2, y - 2, x + 14, y + 20)
    plain = image(client.screenshot(settle=True).data).crop(box)
    with_cursor = image(client.screenshot(cursor=True).data).crop(box)
    assert len(plain.getcolors()) <= 2  # white canvas (and maybe a grid line)
    assert with_cursor.getcolors(1000) != plain.getcolors(1000)
    assert any(sum(colour) < 100 for _, colour in with_cursor.getcolors(1000))  # the arrow's dark pixels


def test_json_variant_carries_the_image_and_its_sizes(desktop):
    response = httpx.get(desktop.url + "/screenshot", params={"json": "true", "format": "jpeg", "max_width": 640},
                         headers={"Authorization": f"Bearer {desktop.token}"})
    assert response.status_code == 200
    body = response.json()
    assert (body["width"], body["height"], body["screen_width"], body["screen_height"]) == (640, 400, 1280, 800)
    assert body["scale_x"] == 0.5 and body["media_type"] == "image/jpeg"
    assert image(base64.b64decode(body["data"])).size == (640, 400)


def test_screen_reports_its_size(client, desktop):
    screen = client.screen()
    assert (screen.width, screen.height, screen.display) == (1280, 800, desktop.display)
