"""Record a human's takeover input as computer-tool actions (computer_20250124 vocabulary).

While a human drives the desktop through the browser viewer, the worker forwards their RFB
input and feeds it here as ``(kind, fields)`` (see ``cubicle.server.vnc_bridge``). The
recorder turns that stream into the actions the model itself would have sent, so a replay
shows the human's steps and the model can be told what the human did (`describe`).

Rules (distances in screen pixels, ``SLOP`` = 4; times from the injected clock):

* Pointer buttons. Left, middle or right pressed and released within ``SLOP`` of the press
  point -> ``left_click`` / ``middle_click`` / ``right_click`` at the press point. Left clicks
  wait ``MULTI_CLICK_S`` (0.4 s) after their release: a further left click within that time,
  within ``SLOP`` of the first and with the same modifiers, makes a ``double_click``, a third
  a ``triple_click`` (emitted at once: nothing can extend it). Right and middle clicks are
  emitted at their release. A left press that moves beyond ``SLOP`` before its release ->
  ``left_click_drag`` from the press to the release point (no path: only the ends matter to
  replay it). A right or middle "drag" has no action of its own and is recorded as a click
  at the press point.
* Modifiers (Control, Shift, Alt/Meta, Super/Hyper) held when a button is pressed or a wheel
  notch turns go into the action's ``text``, e.g. ``"ctrl+shift"``: the 20250124 tool holds
  those keys during the click, drag or scroll. Level shifters (AltGr = ISO_Level3_Shift,
  Mode_switch) are never modifiers: their effect is already in the keysym (noVNC also turns
  the Ctrl+Alt that Windows fakes for AltGr into ISO_Level3_Shift).
* Wheel (buttons 4-7; noVNC sends each notch as press then release). Notches in the same
  direction, with the same modifiers, each within ``SCROLL_WAIT_S`` (0.5 s) of the previous
  and within ``SCROLL_SLOP`` (16 px, a hand drifts while scrolling) of the first -> one
  ``scroll`` with ``scroll_amount`` = notches, at the first notch's point.
* Motion with no button held is not an action. If the last input before `flush` was such a
  motion and the pointer is more than ``SLOP`` from where the last pointer action happened,
  `flush` ends with a ``mouse_move`` there, so a hand back says where the pointer was left.
* Keys (``key`` and ``qemu_key`` alike, by keysym). A printable character typed without
  Control, Alt or Super (Shift is already folded into the keysym) joins a ``type`` group;
  the group ends after ``TYPE_WAIT_S`` (1.0 s) without a character. Characters: Latin-1
  keysyms are their code point, 0x01000000+cp is cp, the legacy keysyms noVNC sends for some
  characters (Cyrillic, Greek, Polish...) are decoded with noVNC's own table, and keypad
  digits and operators (KP_0..KP_9, KP_Decimal, KP_Add...) type their character. Any other
  key press -> ``key`` with the held modifiers in the order ctrl, alt, shift, super and the
  X keysym name: ``Return``, ``shift+Tab``, ``ctrl+s``, ``ctrl+shift+t`` (a letter in a
  combo is lower-cased, as xdotool writes it), ``ctrl+plus``, ``KP_Enter``. Each press
  counts, auto-repeats included. BackSpace is just a key: it ends the text, which is not
  edited. Keysyms the desktop's key action has no name for are dropped.
* Modifier keys tapped alone record nothing, except Super pressed and released with no key
  or button in between -> ``key`` ``super`` (it opens the desktop's menu).
* Clipboard, desktop-size and other messages record nothing.

Order is kept: whatever is pending is emitted before any newer, different action, so every
action happened before the next one. `tick` (call every ~100 ms) emits a group whose wait
is over; `flush` (hand back, disconnect) emits everything at once. Nothing is emitted twice.
Coordinates are converted to the model's screenshot space with ``imaging.from_screen``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from Xlib import XK

from cubicle.actions import MAX_SCROLL_AMOUNT, MAX_TYPE_CHARS
from cubicle.imaging import from_screen
from cubicle.x11 import keys

SLOP = 4  # screen px: a press and release this close are a click, not a drag
SCROLL_SLOP = 16  # screen px: wheel notches this close to the first one are one scroll
MULTI_CLICK_S = 0.4
SCROLL_WAIT_S = 0.5
TYPE_WAIT_S = 1.0
_WAIT = {"click": MULTI_CLICK_S, "scroll": SCROLL_WAIT_S, "type": TYPE_WAIT_S}

# RFB pointer button mask bits.
_LEFT, _MIDDLE, _RIGHT = 1, 2, 4
_CLICKS = {_LEFT: "left_click", _MIDDLE: "middle_click", _RIGHT: "right_click"}
_WHEEL = {8: "up", 16: "down", 32: "left", 64: "right"}
_MULTI_CLICKS = {1: "left_click", 2: "double_click", 3: "triple_click"}

XK.load_keysym_group("xkb")  # ISO_Level3_Shift and friends are not in the default groups

_MODIFIER_ORDER = ("ctrl", "alt", "shift", "super")
_MODIFIERS = {
    XK.string_to_keysym(name): modifier
    for modifier, names in {
        "ctrl": ("Control_L", "Control_R"),
        "alt": ("Alt_L", "Alt_R", "Meta_L", "Meta_R"),
        "shift": ("Shift_L", "Shift_R"),
        "super": ("Super_L", "Super_R", "Hyper_L", "Hyper_R"),
    }.items()
    for name in names
}
_SUPER = frozenset(keysym for keysym, modifier in _MODIFIERS.items() if modifier == "super")
# AltGr and friends select a level; the keysym that follows already is the shifted character.
_LEVEL_SHIFTS = frozenset(XK.string_to_keysym(name) for name in ("ISO_Level3_Shift", "Mode_switch", "ISO_Level5_Shift"))

_KEYPAD_CHARS = {
    XK.string_to_keysym(name): char
    for name, char in {
        **{f"KP_{digit}": str(digit) for digit in range(10)},
        "KP_Decimal": ".", "KP_Separator": ",", "KP_Add": "+", "KP_Subtract": "-",
        "KP_Multiply": "*", "KP_Divide": "/", "KP_Equal": "=", "KP_Space": " ",
    }.items()
}

# The viewer encodes characters with noVNC's table (Unicode -> legacy keysym where X has one);
# decoding with the same table turns e.g. Cyrillic typing back into text. Without the file
# those keysyms still record, as key actions by name.
NOVNC_KEYSYMDEF = Path("/usr/share/novnc/core/input/keysymdef.js")


@functools.cache
def _legacy_keysym_chars() -> dict[int, str]:
    try:
        source = NOVNC_KEYSYMDEF.read_text()
    except OSError:
        return {}
    return {
        int(keysym, 16): chr(int(codepoint, 16))
        for codepoint, keysym in re.findall(r"0x([0-9a-fA-F]+):\s*0x([0-9a-fA-F]+)", source)
    }


def keysym_to_char(keysym: int) -> str | None:
    """The printable character a keysym types, or None (keypad keys excluded)."""
    if 0x20 <= keysym <= 0x7E or 0xA0 <= keysym <= 0xFF:
        return chr(keysym)
    if 0x01000000 <= keysym <= 0x0110FFFF:
        char = chr(keysym - 0x01000000)
        return char if char.isprintable() else None
    return _legacy_keysym_chars().get(keysym)


@functools.cache
def _keysym_names() -> dict[int, str]:
    """keysym -> a name the desktop's key action accepts, taken from the very table
    parse_key_sequence reads. Where X has several names the alias targets win (Page_Down
    over Next), otherwise the first alphabetically."""
    table = keys._keysym_names()  # lower-case name -> (canonical name, keysym)
    names: dict[int, str] = {}
    for canonical in keys.ALIASES.values():
        names.setdefault(table[canonical.lower()][1], canonical)
    for canonical, keysym in table.values():
        names.setdefault(keysym, canonical)
    return names


def key_name(keysym: int) -> str | None:
    """The name of a key in a combo: a letter lower-cased as xdotool writes it (ctrl+c),
    X's name where it has one (plus, Return), else the character itself; None if unnamed."""
    char = keysym_to_char(keysym)
    if char is not None:
        lower = char.lower()
        if len(lower) == 1 and lower != char:
            char, keysym = lower, keys.char_to_keysym(lower)
    name = _keysym_names().get(keysym)
    return name if name is not None else char


@dataclass
class _Pending:
    """An action still being built: it may grow until its wait is over."""

    kind: str  # "click" (left), "scroll" or "type"
    last: float  # time of the event that last extended it
    at: tuple[int, int] = (0, 0)  # screen point (click, scroll)
    mods: str = ""
    count: int = 1  # clicks or wheel notches
    direction: str = ""
    text: str = ""


@dataclass
class _Press:
    at: tuple[int, int]
    mods: str
    moved: bool = False


def _distance(a: tuple[int, int], b: tuple[int, int]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


class HumanInputRecorder:
    """Feed RFB input with `feed`; actions come out through `emit`, oldest first."""

    def __init__(
        self,
        screen: tuple[int, int],
        space: tuple[int, int],
        emit: Callable[[dict], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._screen = screen
        self._space = space
        self._emit = emit
        self._clock = clock
        self._pending: _Pending | None = None
        self._presses: dict[int, _Press] = {}  # button bit -> its press, while held
        self._buttons = 0
        self._pointer: tuple[int, int] | None = None
        self._anchor: tuple[int, int] | None = None  # where the last pointer action was
        self._hovered = False  # the last input was motion with no button held
        self._held: set[int] = set()  # modifier keysyms down
        self._lone_super = False

    # -- public ---------------------------------------------------------------------------

    def feed(self, kind: str, fields: dict) -> None:
        """One decoded RFB client message, as `vnc_bridge.decode_client_message` gives it."""
        if kind == "pointer":
            self._on_pointer(fields["x"], fields["y"], fields["buttons"])
        elif kind in ("key", "qemu_key"):
            self._on_key(fields["down"], fields["keysym"])
        # clipboard, set_desktop_size, xvp...: not actions

    def tick(self) -> None:
        """Emit the pending action if its wait is over (call every ~100 ms)."""
        pending = self._pending
        if pending is None:
            return
        if pending.kind == "click" and self._presses:
            return  # a press under way may still become the next click of this group
        if self._clock() - pending.last > _WAIT[pending.kind]:
            self._emit_pending()

    def flush(self) -> None:
        """Emit everything pending now (hand back, disconnect); a button still held is dropped."""
        self._emit_pending()
        hovered, self._hovered = self._hovered, False
        point, anchor = self._pointer, self._anchor
        # A pointer still where the last action left it (give or take a tremor) needs no move.
        if hovered and point is not None and (anchor is None or _distance(point, anchor) > SLOP):
            self._emit({"action": "mouse_move", "coordinate": self._space_point(point)})

    @property
    def pending(self) -> bool:
        """Whether `flush` would emit something now."""
        return self._pending is not None or (self._hovered and self._pointer is not None)

    # -- pointer --------------------------------------------------------------------------

    def _on_pointer(self, x: int, y: int, buttons: int) -> None:
        now = self._clock()
        point = (x, y)
        if point != self._pointer:
            self._pointer = point
            self._hovered = not buttons
            for press in self._presses.values():
                press.moved = press.moved or _distance(press.at, point) > SLOP
        pressed = buttons & ~self._buttons
        released = self._buttons & ~buttons
        self._buttons = buttons
        for bit, direction in _WHEEL.items():
            if pressed & bit:
                self._on_wheel(direction, point, now)
        for bit in _CLICKS:
            if pressed & bit:
                self._on_button_down(bit, point, now)
        for bit in _CLICKS:
            if released & bit:
                self._on_button_up(bit, point, now)

    def _on_wheel(self, direction: str, point: tuple[int, int], now: float) -> None:
        self._hovered = self._lone_super = False
        self._anchor = point
        mods = self._modifier_text()
        pending = self._pending
        if (
            pending is not None and pending.kind == "scroll" and pending.direction == direction
            and pending.mods == mods and now - pending.last <= SCROLL_WAIT_S
            and _distance(pending.at, point) <= SCROLL_SLOP and pending.count < MAX_SCROLL_AMOUNT
        ):
            pending.count += 1
            pending.last = now
            return
        self._emit_pending()
        self._pending = _Pending("scroll", now, at=point, mods=mods, direction=direction)

    def _on_button_down(self, bit: int, point: tuple[int, int], now: float) -> None:
        self._hovered = self._lone_super = False
        mods = self._modifier_text()
        pending = self._pending
        # Keep a left click group open only for a press that can become its next click.
        continues = (
            bit == _LEFT and pending is not None and pending.kind == "click" and pending.mods == mods
            and now - pending.last <= MULTI_CLICK_S and _distance(pending.at, point) <= SLOP
        )
        if not continues:
            self._emit_pending()
        self._presses[bit] = _Press(point, mods)

    def _on_button_up(self, bit: int, point: tuple[int, int], now: float) -> None:
        press = self._presses.pop(bit, None)
        if press is None:
            return  # pressed before we started listening
        self._anchor = point
        if bit == _LEFT and press.moved:
            self._emit_pending()
            self._emit(self._with_mods({
                "action": "left_click_drag",
                "start_coordinate": self._space_point(press.at),
                "coordinate": self._space_point(point),
            }, press.mods))
        elif bit == _LEFT:
            pending = self._pending
            if pending is not None and pending.kind == "click":
                pending.count += 1
                pending.last = now
                if pending.count == 3:
                    self._emit_pending()
            else:
                self._emit_pending()
                self._pending = _Pending("click", now, at=press.at, mods=press.mods)
        else:
            self._emit_pending()
            self._emit(self._with_mods(
                {"action": _CLICKS[bit], "coordinate": self._space_point(press.at)}, press.mods
            ))

    # -- keys -----------------------------------------------------------------------------

    def _on_key(self, down: bool, keysym: int) -> None:
        if keysym in _MODIFIERS:
            self._on_modifier(down, keysym)
            return
        if not down or keysym in _LEVEL_SHIFTS:
            return
        now = self._clock()
        self._hovered = self._lone_super = False
        char = _KEYPAD_CHARS.get(keysym) or keysym_to_char(keysym)
        modifiers = self._modifiers()
        if char is not None and not modifiers & {"ctrl", "alt", "super"}:
            self._on_char(char, now)
            return
        name = key_name(keysym)
        if name is None:
            return
        self._emit_pending()
        combo = [modifier for modifier in _MODIFIER_ORDER if modifier in modifiers] + [name]
        self._emit({"action": "key", "text": "+".join(combo)})

    def _on_modifier(self, down: bool, keysym: int) -> None:
        if down:
            self._held.add(keysym)
            # Super pressed with no other modifier held (auto-repeats of it included) may be a tap.
            self._lone_super = keysym in _SUPER and self._modifiers() == {"super"}
            return
        self._held.discard(keysym)
        if keysym in _SUPER and self._lone_super:
            self._lone_super = False
            self._emit_pending()
            self._emit({"action": "key", "text": "super"})

    def _on_char(self, char: str, now: float) -> None:
        pending = self._pending
        if (
            pending is not None and pending.kind == "type" and now - pending.last <= TYPE_WAIT_S
            and len(pending.text) < MAX_TYPE_CHARS
        ):
            pending.text += char
            pending.last = now
            return
        self._emit_pending()
        self._pending = _Pending("type", now, text=char)

    # -- helpers --------------------------------------------------------------------------

    def _modifiers(self) -> set[str]:
        return {_MODIFIERS[keysym] for keysym in self._held}

    def _modifier_text(self) -> str:
        modifiers = self._modifiers()
        return "+".join(modifier for modifier in _MODIFIER_ORDER if modifier in modifiers)

    def _space_point(self, point: tuple[int, int]) -> list[int]:
        return list(from_screen(point[0], point[1], self._space, self._screen))

    @staticmethod
    def _with_mods(action: dict, mods: str) -> dict:
        if mods:
            action["text"] = mods
        return action

    def _emit_pending(self) -> None:
        pending, self._pending = self._pending, None  # cleared first: never emitted twice
        if pending is None:
            return
        if pending.kind == "type":
            self._emit({"action": "type", "text": pending.text})
        elif pending.kind == "click":
            self._emit(self._with_mods(
                {"action": _MULTI_CLICKS[pending.count], "coordinate": self._space_point(pending.at)}, pending.mods
            ))
        else:
            self._emit(self._with_mods({
                "action": "scroll",
                "coordinate": self._space_point(pending.at),
                "scroll_direction": pending.direction,
                "scroll_amount": pending.count,
            }, pending.mods))


def _point(value: Any) -> str:
    return f"({value[0]}, {value[1]})"


def describe(action: dict) -> str:
    """One short line for a recorded action, e.g. 'left_click at (120, 340) with ctrl'."""
    name = action.get("action", "?")
    mods = f" with {action['text']}" if action.get("text") and name not in ("type", "key") else ""
    if name == "type":
        return f"type {json.dumps(action.get('text', ''), ensure_ascii=False)}"
    if name == "key":
        return f"key {action.get('text', '')}"
    if name == "left_click_drag":
        return f"left_click_drag from {_point(action['start_coordinate'])} to {_point(action['coordinate'])}{mods}"
    if name == "scroll":
        where = f" at {_point(action['coordinate'])}" if action.get("coordinate") else ""
        return f"scroll {action['scroll_direction']} {action.get('scroll_amount', 3)}{where}{mods}"
    if name == "mouse_move":
        return f"mouse_move to {_point(action['coordinate'])}"
    if action.get("coordinate"):
        return f"{name} at {_point(action['coordinate'])}{mods}"
    rest = {key: value for key, value in action.items() if key != "action"}
    return f"{name} {json.dumps(rest, ensure_ascii=False)}" if rest else name
