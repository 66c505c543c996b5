"""Image sizes, scaling and encoding. Pure functions over pixels; no X, no HTTP.

The size rules live here so the server and any client compute the same numbers: a screenshot
scaled to W'xH' maps a point back to the screen with `to_screen`, exactly.
"""

from __future__ import annotations

import io
import math
import struct
import zlib

from isal import isal_zlib
from PIL import Image

# PNG is written here rather than by Pillow: rows unfiltered, deflated by ISA-L at level 1.
# On desktop screenshots that is ~10x faster than Pillow's filtered zlib at level 1 and the
# file is no bigger (flat UI colours compress well without PNG's row filters).
PNG_DEFLATE_LEVEL = 1
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Antialiased and sharp enough for small text; LANCZOS costs a third more time for no
# difference a model notices.
RESAMPLE = Image.Resampling.BICUBIC

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def scaled_size(
    width: int, height: int, max_width: int | None = None, max_height: int | None = None, scale: float | None = None
) -> tuple[int, int]:
    """Size of a screenshot shrunk to fit max_width x max_height (or by `scale`); never enlarged."""
    factor = 1.0
    if max_width or max_height:
        factor = min(1.0, (max_width or width) / width, (max_height or height) / height)
    elif scale:
        factor = min(1.0, scale)
    return max(1, round(width * factor)), max(1, round(height * factor))


def fitted_size(width: int, height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """Largest size with the aspect of width x height that fits the box (may enlarge): zoom."""
    factor = min(box_width / width, box_height / height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def to_screen(x: int, y: int, space: tuple[int, int], screen: tuple[int, int]) -> tuple[int, int]:
    """A pixel of an image of size `space` that shows the whole screen -> the screen pixel at
    its centre. Exact both ways: the screen pixel shown at image pixel (x, y) is this one."""
    (space_w, space_h), (screen_w, screen_h) = space, screen
    return (
        min(screen_w - 1, math.floor((x + 0.5) * screen_w / space_w)),
        min(screen_h - 1, math.floor((y + 0.5) * screen_h / space_h)),
    )


def from_screen(x: int, y: int, space: tuple[int, int], screen: tuple[int, int]) -> tuple[int, int]:
    """The inverse of to_screen: the image pixel that contains the centre of screen pixel (x, y)."""
    (space_w, space_h), (screen_w, screen_h) = space, screen
    return (
        min(space_w - 1, math.floor((x + 0.5) * space_w / screen_w)),
        min(space_h - 1, math.floor((y + 0.5) * space_h / screen_h)),
    )


def frame_image(pixels: bytes | memoryview, width: int, height: int) -> Image.Image:
    """4-bytes-per-pixel BGRX (what X gives) -> an RGB image in one pass, read straight from
    `pixels` (for a screenshot, the shared memory the X server wrote): no copy before it."""
    # Pillow reads any buffer; its annotation lists bytes, bytearray and array-likes, not memoryview.
    return Image.frombuffer("RGB", (width, height), pixels, "raw", "BGRX", 0, 1)  # type: ignore[arg-type]


def draw_cursor(image: Image.Image, x: int, y: int, width: int, height: int, argb: tuple[int, ...]) -> None:
    """Paint a cursor sprite (premultiplied ARGB, top-left at x, y in image pixels)."""
    rgba = bytearray(width * height * 4)
    for index, value in enumerate(argb):
        alpha = (value >> 24) & 0xFF
        if alpha:
            # XFIXES gives premultiplied colour; Pillow's paste wants straight alpha.
            rgba[index * 4] = min(255, ((value >> 16) & 0xFF) * 255 // alpha)
            rgba[index * 4 + 1] = min(255, ((value >> 8) & 0xFF) * 255 // alpha)
            rgba[index * 4 + 2] = min(255, (value & 0xFF) * 255 // alpha)
            rgba[index * 4 + 3] = alpha
    sprite = Image.frombytes("RGBA", (width, height), bytes(rgba))
    image.paste(sprite, (x, y), sprite)


def resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    return image if image.size == size else image.resize(size, RESAMPLE)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: Image.Image) -> bytes:
    """An 8-bit RGB PNG with filter type 0 (none) on every row."""
    raw = (image if image.mode == "RGB" else image.convert("RGB")).tobytes()  # screenshots already are
    stride = image.width * 3
    rows = b"".join(b"\x00" + raw[start:start + stride] for start in range(0, len(raw), stride))
    header = struct.pack(">IIBBBBB", image.width, image.height, 8, 2, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", isal_zlib.compress(rows, PNG_DEFLATE_LEVEL))
        + _png_chunk(b"IEND", b"")
    )


def encode(image: Image.Image, fmt: str, quality: int = 80) -> bytes:
    if fmt == "png":
        return encode_png(image)
    buffer = io.BytesIO()
    if fmt == "jpeg":
        image.save(buffer, "JPEG", quality=quality)
    elif fmt == "webp":
        image.save(buffer, "WEBP", quality=quality, method=0)
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    return buffer.getvalue()


def model_image_size(width: int, height: int, large: bool) -> tuple[int, int]:
    """The largest size with the screen's aspect that a Claude model takes as it is: the API
    would resize anything bigger, and the model's coordinates would no longer match ours.
    `large`: the newer models' limits (long edge <= 2576 px, <= 4784 visual tokens of 28x28
    px); otherwise the older ones' (long edge <= 1568 px, about 1.15 megapixels)."""
    if large:
        scale = min(1.0, 2576 / max(width, height))
        while True:
            w, h = math.floor(width * scale), math.floor(height * scale)
            if math.ceil(w / 28) * math.ceil(h / 28) <= 4784:
                return max(w, 1), max(h, 1)
            scale *= 0.99
    scale = min(1.0, 1568 / max(width, height), math.sqrt(1_150_000 / (width * height)))
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def image_size_from_header(data: bytes) -> tuple[int, int] | None:
    """Width and height of a PNG, JPEG, WebP or GIF image, read from its header without
    decoding it; None when the bytes are none of these or are cut short."""
    try:
        if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data[:6] in (b"GIF87a", b"GIF89a"):
            return struct.unpack("<HH", data[6:10])
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8 ":
                width, height = struct.unpack("<HH", data[26:30])
                return width & 0x3FFF, height & 0x3FFF
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            if chunk == b"VP8X":
                return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        if data[:2] == b"\xff\xd8":
            return _jpeg_size_from_header(data)
    except struct.error:
        return None
    return None


def _jpeg_size_from_header(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG's segments to the first start-of-frame, which holds the size."""
    index = 2
    while index + 9 < len(data):
        if data[index] != 0xFF:
            index += 1
            continue
        marker = data[index + 1]
        if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte, TEM, RSTn, SOI: no length
            index += 1 if marker == 0xFF else 2
            continue
        length = int.from_bytes(data[index + 2 : index + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # SOFn, not DHT, JPG, DAC
            height, width = struct.unpack(">HH", data[index + 5 : index + 9])
            return width, height
        index += 2 + length
    return None
