"""The beta computer tool (computer_20250124, computer_20251124), carried out on a desktop
through cubicle.client. (The toolset, computer_toolset_20260801, is the SDK's own class:
cubicle.anthropic.CubicleComputer.)

The model works in the space of the (possibly scaled) screenshots it is sent; every request to
the desktop says so (`coordinate_space`), and the desktop maps each point back exactly.
One action and its settled screenshot are a single HTTP round trip.
"""

from __future__ import annotations

import base64
from typing import Any

from cubicle.actions import ActionResponse, ImageData
from cubicle.client import CubicleError, DesktopClient

from .tools import HALT_TEXTS, ToolOutcome

HALT_TEXT = HALT_TEXTS["computer"]
# Members whose result already shows the screen (or is a position): no screenshot after them.
_SHOWS_SCREEN = {"screenshot", "zoom", "cursor_position"}


def _image(data: ImageData) -> tuple[bytes, str]:
    return base64.b64decode(data.data), data.media_type


class ComputerTool:
    name = "computer"

    def __init__(self, client: DesktopClient, version: str, image_size: tuple[int, int], image_format: str = "png"):
        self.client = client
        self.version = version
        self.image_size = image_size
        # No size limits: with coordinate_space given, the desktop renders screenshots at exactly
        # that size (limits would be rounded separately and could come out a pixel off).
        self.image_options = {"format": image_format}

    def definition(self) -> dict[str, Any]:
        definition = {
            "type": self.version, "name": "computer",
            "display_width_px": self.image_size[0], "display_height_px": self.image_size[1], "display_number": 1,
        }
        if self.version == "computer_20251124":
            definition["enable_zoom"] = True
        return definition

    # -- running ------------------------------------------------------------------------

    def _send(self, actions: list[dict[str, Any]], screenshot: bool) -> ActionResponse:
        return self.client.act(
            *actions, coordinate_space=self.image_size, screenshot=self.image_options if screenshot else False
        )

    def screenshot(self) -> ToolOutcome:
        response = self._send([{"action": "screenshot"}], screenshot=False)
        image = response.results[0].image
        assert image is not None  # a screenshot action's result carries its image
        data, media_type = _image(image)
        return ToolOutcome(image=data, media_type=media_type)

    def run(self, tool_input: dict[str, Any]) -> ToolOutcome:
        """One action per tool_use; the input carries 'action'."""
        action = dict(tool_input)
        name = action.get("action")
        try:
            response = self._send([action], screenshot=name not in _SHOWS_SCREEN)
        except CubicleError as error:
            return ToolOutcome(text=error.message, is_error=True)
        return self._outcome(name, response.results[0], response.screenshot)

    def _outcome(self, name: str | None, result, screenshot: ImageData | None) -> ToolOutcome:
        if result.status != "ok":
            return ToolOutcome(text=result.error.message if result.error else "failed", is_error=True)
        outcome = ToolOutcome()
        if result.cursor is not None:
            outcome.text = f"X={result.cursor.x},Y={result.cursor.y}"
        image = result.image or screenshot
        if image is not None:
            outcome.image, outcome.media_type = _image(image)
            outcome.extra["settle_ms"] = image.settle_ms
            if name == "zoom":
                outcome.text = (
                    "Zoomed view of the requested region. Coordinates for actions still refer to the "
                    f"full {self.image_size[0]}x{self.image_size[1]} screenshot."
                )
        return outcome
