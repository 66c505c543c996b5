"""The computer tool, in all three versions, carried out on a desktop through cubicle.client.

The model works in the space of the (possibly scaled) screenshots it is sent; every request to
the desktop says so (`coordinate_space`), and the desktop maps each point back exactly.
One action and its settled screenshot are a single HTTP round trip.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from cubicle.actions import Action, ActionResponse, ImageData
from cubicle.client import CubicleError, DesktopClient

HALT_TEXT = "Not executed: an earlier computer action in this turn failed."
# Members whose result already shows the screen (or is a position): no screenshot after them.
_SHOWS_SCREEN = {"screenshot", "zoom", "cursor_position"}


@dataclass
class ToolOutcome:
    """One tool_result: what the model gets back, and what the run log keeps."""

    text: str = ""
    is_error: bool = False
    image: bytes | None = None
    media_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def content(self) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if self.text:
            blocks.append({"type": "text", "text": self.text})
        if self.image is not None and not self.is_error:  # an error result carries text only
            blocks.append({"type": "image", "source": {
                "type": "base64", "media_type": self.media_type, "data": base64.b64encode(self.image).decode("ascii"),
            }})
        return blocks or [{"type": "text", "text": "ok"}]


_ACTION = TypeAdapter(Action)


def _input_problem(action: dict[str, Any]) -> str | None:
    """What is wrong with one action's input, in the desktop API's own words, or None."""
    try:
        _ACTION.validate_python(action)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "input"
        return f"Invalid input for {action.get('action')}: {where}: {first['msg']}"
    return None


def _image(data: ImageData) -> tuple[bytes, str]:
    return base64.b64decode(data.data), data.media_type


class ComputerTool:
    def __init__(self, client: DesktopClient, version: str, image_size: tuple[int, int], image_format: str = "png"):
        self.client = client
        self.version = version
        self.image_size = image_size
        # No size limits: with coordinate_space given, the desktop renders screenshots at exactly
        # that size (limits would be rounded separately and could come out a pixel off).
        self.image_options = {"format": image_format}

    @property
    def is_toolset(self) -> bool:
        return self.version == "computer_toolset_20260801"

    def definition(self) -> dict[str, Any]:
        if self.is_toolset:
            # No name, no size: the screenshots we send define the coordinate space.
            return {"type": self.version}
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
        data, media_type = _image(response.results[0].image)
        return ToolOutcome(image=data, media_type=media_type)

    def run_single(self, tool_input: dict[str, Any]) -> ToolOutcome:
        """computer_20250124 / computer_20251124: one action per tool_use, input carries 'action'."""
        action = dict(tool_input)
        name = action.get("action")
        try:
            response = self._send([action], screenshot=name not in _SHOWS_SCREEN)
        except CubicleError as error:
            return ToolOutcome(text=error.message, is_error=True)
        return self._outcome(name, response.results[0], response.screenshot)

    def run_batch(self, calls: list[tuple[str, dict[str, Any]]]) -> list[ToolOutcome]:
        """computer_toolset_20260801: the turn's member calls, in order, as one desktop batch.
        Stops at the first failure; the rest get the exact halt text. A batch that does not
        end by showing the screen gets a settled screenshot on its last result."""
        return self._run_batch(calls, screenshot=calls[-1][0] not in _SHOWS_SCREEN)

    def _run_batch(self, calls: list[tuple[str, dict[str, Any]]], screenshot: bool) -> list[ToolOutcome]:
        actions = [{**tool_input, "action": member} for member, tool_input in calls]
        # Malformed input is caught here, member by member, so the error lands on the right
        # block and the blocks before it still run.
        for index, action in enumerate(actions):
            problem = _input_problem(action)
            if problem:
                done = self._run_batch(calls[:index], screenshot=False) if index else []
                if any(outcome.is_error for outcome in done):
                    return done + [ToolOutcome(HALT_TEXT, True) for _ in calls[index:]]
                return done + [ToolOutcome(problem, True)] + [ToolOutcome(HALT_TEXT, True) for _ in calls[index + 1:]]
        try:
            response = self._send(actions, screenshot)
        except CubicleError as error:
            results = error.response.results if error.response is not None else []
            failed = next((i for i, r in enumerate(results) if r.status == "error"), None)
            if failed is None:
                # Nothing failed on its own (e.g. the final screenshot could not be taken, or
                # X went away before the first action): report it on the first block not done.
                first = next((i for i, r in enumerate(results) if r.status != "ok"), len(results))
                done = [self._outcome(calls[i][0], r, None) for i, r in enumerate(results[:first])]
                if first >= len(calls):
                    done[-1] = ToolOutcome(f"The actions ran, but no screenshot could be taken: {error.message}", True)
                    return done
                return done + [ToolOutcome(error.message, True)] + [ToolOutcome(HALT_TEXT, True) for _ in calls[first + 1:]]
            if failed > 0 and all(r.status == "not_executed" for r in results[:failed]):
                # The desktop refused the whole batch before running it; the toolset's rule is
                # that the actions before the bad one still happen.
                done = self._run_batch(calls[:failed], screenshot=False)
                if any(outcome.is_error for outcome in done):
                    return done + [ToolOutcome(HALT_TEXT, True) for _ in calls[failed:]]
            else:
                done = [self._outcome(calls[i][0], r, None) for i, r in enumerate(results[:failed])]
            return done + self._failed_from(calls, failed, error.response)
        outcomes = [self._outcome(member, result, None) for (member, _), result in zip(calls, response.results)]
        if response.screenshot is not None:
            outcomes[-1].image, outcomes[-1].media_type = _image(response.screenshot)
            outcomes[-1].extra["settle_ms"] = response.screenshot.settle_ms
        return outcomes

    def _failed_from(self, calls, failed: int, response: ActionResponse) -> list[ToolOutcome]:
        message = response.results[failed].error.message if response.results[failed].error else "failed"
        return [ToolOutcome(message, True)] + [ToolOutcome(HALT_TEXT, True) for _ in calls[failed + 1:]]

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
