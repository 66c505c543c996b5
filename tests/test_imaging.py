"""Size and coordinate arithmetic: the guarantee that clicks in a scaled screenshot land exactly."""

import io

import pytest
from PIL import Image

from cubicle import imaging

SIZES = [((1280, 800), (1024, 640)), ((1280, 800), (1092, 682)), ((1920, 1080), (1366, 768)),
         ((1280, 800), (400, 250)), ((1024, 768), (1024, 768))]


@pytest.mark.parametrize("screen,space", SIZES)
def test_every_image_pixel_maps_to_a_screen_pixel_shown_there(screen, space):
    for x in range(space[0]):
        sx, _ = imaging.to_screen(x, 0, space, screen)
        assert 0 <= sx < screen[0]
        assert imaging.from_screen(sx, 0, space, screen)[0] == x
    for y in range(space[1]):
        _, sy = imaging.to_screen(0, y, space, screen)
        assert imaging.from_screen(0, sy, space, screen)[1] == y


def test_scaled_size_never_enlarges_and_keeps_aspect():
    assert imaging.scaled_size(1280, 800, max_width=1024) == (1024, 640)
    assert imaging.scaled_size(1280, 800, max_height=400) == (640, 400)
    assert imaging.scaled_size(1280, 800, max_width=4000, max_height=4000) == (1280, 800)
    assert imaging.scaled_size(1280, 800, scale=0.5) == (640, 400)
    assert imaging.scaled_size(1280, 800, max_width=1000, max_height=1000, scale=0.1) == (1000, 625)


def test_fitted_size_enlarges_a_region_to_the_box():
    assert imaging.fitted_size(320, 200, 1280, 800) == (1280, 800)
    assert imaging.fitted_size(100, 100, 1280, 800) == (800, 800)
    assert imaging.fitted_size(400, 50, 1280, 800) == (1280, 160)


def test_encoders_produce_their_formats():
    image = imaging.frame_image(bytes([10, 20, 30, 0]) * (64 * 32), 64, 32)
    assert image.getpixel((5, 5)) == (30, 20, 10)  # BGRX in, RGB out
    png = imaging.encode(image, "png")
    assert png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).convert("RGB").tobytes() == image.tobytes()  # lossless
    assert imaging.encode(image, "jpeg").startswith(b"\xff\xd8")
    assert imaging.encode(image, "webp")[8:12] == b"WEBP"
