"""From captured pixels to an encoded image and the numbers that map it back to the screen."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cubicle import imaging
from cubicle.actions import ImageData, ImageOptions
from cubicle.x11 import Frame, SettleReport


@dataclass(frozen=True)
class Rendered:
    data: bytes
    media_type: str
    width: int
    height: int
    screen_width: int
    screen_height: int
    region: tuple[int, int, int, int] | None  # x0, y0, x1, y1 of a zoom, screen pixels
    settle: SettleReport | None = None

    @property
    def scale_x(self) -> float:
        source = self.region[2] - self.region[0] if self.region else self.screen_width
        return self.width / source

    @property
    def scale_y(self) -> float:
        source = self.region[3] - self.region[1] if self.region else self.screen_height
        return self.height / source

    def headers(self) -> dict[str, str]:
        headers = {
            "X-Image-Width": str(self.width),
            "X-Image-Height": str(self.height),
            "X-Screen-Width": str(self.screen_width),
            "X-Screen-Height": str(self.screen_height),
            "X-Scale-X": f"{self.scale_x:.6f}",
            "X-Scale-Y": f"{self.scale_y:.6f}",
            "Cache-Control": "no-store",
        }
        if self.region:
            headers["X-Region"] = ",".join(map(str, self.region))
        if self.settle:
            headers["X-Settle-Ms"] = f"{self.settle.elapsed_ms:.1f}"
            headers["X-Settled"] = "true" if self.settle.settled else "false"
        return headers

    def as_image_data(self) -> ImageData:
        return ImageData(
            media_type=self.media_type,
            width=self.width,
            height=self.height,
            screen_width=self.screen_width,
            screen_height=self.screen_height,
            scale_x=round(self.scale_x, 6),
            scale_y=round(self.scale_y, 6),
            region=self.region,
            settle_ms=round(self.settle.elapsed_ms, 1) if self.settle else None,
            settled=self.settle.settled if self.settle else None,
            data=base64.b64encode(self.data).decode("ascii"),
        )


def output_size(screen: tuple[int, int], options: ImageOptions, space: tuple[int, int] | None = None) -> tuple[int, int]:
    """The size of a whole-screen image: the options' limits, else the client's coordinate
    space (so a batch's screenshots stay in the space its coordinates are in), else the screen."""
    if options.max_width or options.max_height or options.scale:
        return imaging.scaled_size(*screen, options.max_width, options.max_height, options.scale)
    return space or screen


def render(
    frame: Frame,
    screen: tuple[int, int],
    options: ImageOptions,
    size: tuple[int, int],
    zoom: bool = False,
    settle: SettleReport | None = None,
) -> Rendered:
    """Encode a frame. For a zoom the frame is a region captured at full resolution and is
    fitted into `size` (enlarged, aspect kept); otherwise it is scaled to exactly `size`."""
    image = imaging.frame_image(frame.pixels, frame.width, frame.height)
    if frame.cursor is not None:
        sprite = frame.cursor
        imaging.draw_cursor(image, sprite.x - frame.x, sprite.y - frame.y, sprite.width, sprite.height, sprite.argb)
    target = imaging.fitted_size(frame.width, frame.height, *size) if zoom else size
    image = imaging.resize(image, target)
    region = (frame.x, frame.y, frame.x + frame.width, frame.y + frame.height) if zoom else None
    return Rendered(
        data=imaging.encode(image, options.format, options.quality),
        media_type=imaging.MEDIA_TYPES[options.format],
        width=image.width,
        height=image.height,
        screen_width=screen[0],
        screen_height=screen[1],
        region=region,
        settle=settle,
    )
