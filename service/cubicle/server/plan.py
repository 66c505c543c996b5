"""Check a batch against the screen and turn it into engine calls, before anything runs.

Every coordinate is bounds-checked in the space the client works in and mapped to screen
pixels; every key name is parsed; every text is checked to be typable. Only a batch that
passes all of it reaches the desktop, so bad input changes nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cubicle import actions as a
from cubicle import imaging, x11
from cubicle.x11 import pointer

from .errors import ApiError, from_engine_error


@dataclass
class Step:
    index: int
    name: str
    run: Callable[[x11.X11Desktop], dict[str, Any] | None]
    changes_screen: bool = True  # input that may redraw: a later capture waits for quiet
    captures: bool = False  # screenshot / zoom: wants a settled screen first
    busy_s: float = 0.0  # how long it keeps the desktop busy at least (waits, held keys, drags)


class PlanError(Exception):
    def __init__(self, index: int, error: ApiError):
        super().__init__(error.message)
        self.index = index
        self.error = error


class Planner:
    def __init__(self, screen: tuple[int, int], space: tuple[int, int] | None):
        self.screen = screen
        self.space = space or screen

    # -- checks -------------------------------------------------------------------------

    def point(self, coordinate: tuple[int, int]) -> tuple[int, int]:
        x, y = coordinate
        width, height = self.space
        if not (0 <= x < width and 0 <= y < height):
            raise ApiError(
                422, "coordinates_out_of_bounds",
                f"Coordinates ({x}, {y}) are outside display bounds ({width}x{height}).",
            )
        return imaging.to_screen(x, y, self.space, self.screen)

    def region(self, corners: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """[x0, y0, x1, y1] in the client's space -> (x, y, width, height) on the screen."""
        x0, y0, x1, y1 = corners
        width, height = self.space
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ApiError(
                422, "invalid_region",
                f"Region [{x0}, {y0}, {x1}, {y1}] must satisfy 0 <= x0 < x1 <= {width} and "
                f"0 <= y0 < y1 <= {height} (corners of a rectangle inside the {width}x{height} display).",
            )
        sx = self.screen[0] / width
        sy = self.screen[1] / height
        left, top = math.floor(x0 * sx), math.floor(y0 * sy)
        right, bottom = min(self.screen[0], math.ceil(x1 * sx)), min(self.screen[1], math.ceil(y1 * sy))
        return left, top, max(1, right - left), max(1, bottom - top)

    @staticmethod
    def keys(text: str) -> list[list[int]]:
        try:
            return x11.parse_key_sequence(text)
        except x11.X11Error as error:
            raise from_engine_error(error) from None

    def modifiers(self, action: a.Click | a.Drag | a.Scroll) -> list[int]:
        combo = action.modifiers
        if not combo:
            return []
        try:
            return x11.parse_key_combo(combo.strip())
        except x11.X11Error as error:
            raise from_engine_error(error) from None

    @staticmethod
    def typed(text: str) -> list[int]:
        try:
            x11.check_typable(text)
        except x11.X11Error as error:
            raise from_engine_error(error) from None
        # CR LF and lone CR are line ends too: one Return each, never two.
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        return [x11.char_to_keysym(char) for char in text]

    # -- planning -----------------------------------------------------------------------

    def plan(self, request: a.ActionRequest, capture_step) -> list[Step]:
        # The X thread is the desktop's one lane: one batch may not hold it for hours. Waits
        # and held keys take their duration; a drag takes its length (a motion every
        # DRAG_STEP_PX pixels, DRAG_STEP_DELAY_S apart): 1000 corner-to-corner points would
        # take over 8 minutes.
        steps = []
        busy = 0.0
        for index, action in enumerate(request.actions):
            try:
                step = self._step(index, action, capture_step)
            except ApiError as error:
                raise PlanError(index, error) from None
            busy += step.busy_s
            if busy > a.MAX_DURATION_S:
                raise PlanError(index, ApiError(
                    422, "batch_too_long",
                    f"The batch's waits, held keys and drags would keep the desktop busy for about {busy:.0f} s by "
                    f"this action; at most {a.MAX_DURATION_S:g} s per batch. Send it as several batches, or shorten "
                    "the drag paths and durations.",
                ))
            steps.append(step)
        return steps

    def _step(self, index: int, action, capture_step) -> Step:
        name = action.action
        if isinstance(action, a.Click):
            at = self.point(action.coordinate) if action.coordinate is not None else None
            mods = self.modifiers(action)
            button = {"right_click": "right", "middle_click": "middle"}.get(name, "left")
            count = {"double_click": 2, "triple_click": 3}.get(name, 1)
            return Step(index, name, lambda d: d.click(at, button, count, mods))
        if isinstance(action, a.MouseMove):
            to = self.point(action.coordinate)
            return Step(index, name, lambda d: d.move(*to))
        if isinstance(action, a.Drag):
            start = self.point(action.start_coordinate) if action.start_coordinate is not None else None
            middle = [self.point(p) for p in action.path or []]
            end = self.point(action.coordinate)
            mods = self.modifiers(action)

            def drag(d: x11.X11Desktop) -> None:
                d.drag([start or d.cursor_position(), *middle, end], "left", mods)

            # Without a start, the leg from wherever the pointer is is not counted: at least.
            moves = len(pointer.interpolate([start, *middle, end] if start else [*middle, end])) - 1
            return Step(index, name, drag, busy_s=moves * pointer.DRAG_STEP_DELAY_S)
        if isinstance(action, a.MouseButton):
            at = self.point(action.coordinate) if action.coordinate is not None else None
            down = name == "left_mouse_down"
            return Step(index, name, lambda d: d.button(down, at))
        if isinstance(action, a.Scroll):
            at = self.point(action.coordinate) if action.coordinate is not None else None
            mods = self.modifiers(action)
            return Step(index, name, lambda d: d.scroll(action.scroll_direction, action.scroll_amount, at, mods))
        if isinstance(action, a.Key):
            sequence = self.keys(action.text)
            return Step(index, name, lambda d: d.key(sequence, action.repeat))
        if isinstance(action, a.HoldKey):
            sequence = self.keys(action.text)
            if len(sequence) != 1:
                raise ApiError(422, "invalid_text", "hold_key takes one combo (e.g. 'shift' or 'ctrl+alt'), not several.")
            return Step(index, name, lambda d: d.hold(sequence[0], action.duration), busy_s=action.duration)
        if isinstance(action, a.Type):
            keysyms = self.typed(action.text)
            return Step(index, name, lambda d: d.type_keysyms(keysyms))
        if isinstance(action, a.Wait):
            return Step(index, name, lambda d: time.sleep(action.duration), changes_screen=False, busy_s=action.duration)
        if isinstance(action, a.CursorPosition):

            def cursor(d: x11.X11Desktop) -> dict[str, Any]:
                x, y = imaging.from_screen(*d.cursor_position(), self.space, self.screen)
                return {"cursor": a.Point(x=x, y=y)}

            return Step(index, name, cursor, changes_screen=False)
        if isinstance(action, a.Screenshot):
            return Step(index, name, lambda d: {"image": capture_step(d, None)}, changes_screen=False, captures=True)
        if isinstance(action, a.Zoom):
            box = self.region(action.region)
            return Step(index, name, lambda d: {"image": capture_step(d, box)}, changes_screen=False, captures=True)
        raise ApiError(422, "invalid_request", f"Unknown action {name!r}.")
