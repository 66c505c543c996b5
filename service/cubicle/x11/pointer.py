"""Mouse input through XTEST: absolute moves, buttons, wheel clicks, drags along a path."""

from __future__ import annotations

import math
import time
from itertools import pairwise
from typing import TYPE_CHECKING

from Xlib import X
from Xlib.ext import xtest

if TYPE_CHECKING:
    from Xlib.display import Display
    from Xlib.xobject.drawable import Window

BUTTONS = {"left": 1, "middle": 2, "right": 3}
WHEEL_BUTTONS = {"up": 4, "down": 5, "left": 6, "right": 7}

# Button numbers 1-5 have a state bit; 6 and 7 (horizontal wheel) have none.
_BUTTON_MASKS = {1: X.Button1Mask, 2: X.Button2Mask, 3: X.Button3Mask, 4: X.Button4Mask, 5: X.Button5Mask}
# How long to wait for the window manager to let go of a click (see wait_until_released).
RELEASE_CAP_S = 0.5

# A drag sends a motion event at least every this many pixels, paced so toolkits see a
# gesture (GTK and Tk ignore a press and release with no motion between as a drag).
DRAG_STEP_PX = 12
DRAG_STEP_DELAY_S = 0.004


def move(display: Display, x: int, y: int) -> None:
    xtest.fake_input(display, X.MotionNotify, x=x, y=y)


def button(display: Display, number: int, down: bool) -> None:
    xtest.fake_input(display, X.ButtonPress if down else X.ButtonRelease, number)


def wait_until_released(display: Display, root: Window, number: int) -> None:
    """Return once the X server has processed our button releases.

    A click-to-focus window manager grabs the pointer synchronously on a press: the pointer
    freezes (the keyboard does not) until the WM replays the click to the app. Keys sent in
    that gap would reach the app before the click that was meant to focus the text field.
    While the release still waits in the frozen queue the server reports the button as down,
    so polling the button mask tells, without side effects, when the click has gone through.
    """
    mask = _BUTTON_MASKS.get(number, 0)
    deadline = time.monotonic() + RELEASE_CAP_S
    # Only our button counts: another one held on purpose (left_mouse_down, a VNC viewer)
    # must not make every click wait for the cap.
    while mask and root.query_pointer().mask & mask and time.monotonic() < deadline:
        time.sleep(0.001)


def click(display: Display, root: Window, number: int, count: int) -> None:
    for _ in range(count):
        button(display, number, True)
        button(display, number, False)
    display.sync()
    wait_until_released(display, root, number)


def scroll(display: Display, root: Window, direction: str, amount: int) -> None:
    wheel = WHEEL_BUTTONS[direction]
    for _ in range(amount):
        button(display, wheel, True)
        button(display, wheel, False)
    display.sync()
    wait_until_released(display, root, wheel)


def interpolate(path: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Every corner of the path plus points in between, no two further apart than DRAG_STEP_PX."""
    points = [path[0]]
    for (x0, y0), (x1, y1) in pairwise(path):
        steps = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / DRAG_STEP_PX))
        for step in range(1, steps + 1):
            points.append((round(x0 + (x1 - x0) * step / steps), round(y0 + (y1 - y0) * step / steps)))
    return points


def drag(display: Display, root: Window, path: list[tuple[int, int]], number: int = 1) -> None:
    move(display, *path[0])
    display.sync()
    button(display, number, True)
    display.sync()
    for x, y in interpolate(path)[1:]:
        move(display, x, y)
        display.flush()
        time.sleep(DRAG_STEP_DELAY_S)
    display.sync()
    button(display, number, False)
    display.sync()
    wait_until_released(display, root, number)


def position(display: Display, root: Window) -> tuple[int, int]:
    reply = root.query_pointer()
    return reply.root_x, reply.root_y
