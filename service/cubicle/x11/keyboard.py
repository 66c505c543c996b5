"""Keys and text through XTEST, correct whatever the keyboard layout.

A keysym already on the keyboard is pressed on its keycode (with Shift for the second
level). Any other keysym (Chinese, emoji, a dead key the layout lacks) is bound on the fly to
a keycode the layout leaves empty. Bindings stay in place and are reused; a spare keycode is
rebound only when it has not been pressed for a while, because a client translates a key
event with the mapping it holds when it reads the event: rebinding too soon could turn an
earlier character into a later one.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from Xlib import X, XK
from Xlib.ext import xtest

from .keys import MODIFIER_KEYSYMS

# How long a spare keycode must rest before it is rebound to another keysym.
REBIND_AFTER_S = 0.15
# Flush the request buffer every so many characters: keeps the X server fed without letting
# a long text sit in our buffer.
FLUSH_EVERY = 32


def _is_keypad(keysym: int) -> bool:
    return 0xFF80 <= keysym <= 0xFFBD  # XK_KP_Space .. XK_KP_9


class Keyboard:
    def __init__(self, display):
        self._display = display
        info = display.display.info
        first, last = info.min_keycode, info.max_keycode
        mapping = display.get_keyboard_mapping(first, last - first + 1)
        # keysym -> (keycode, needs_shift); the first (lowest) keycode wins, level 1 before 2.
        self._keycodes: dict[int, tuple[int, bool]] = {}
        spare: list[int] = []
        for offset, syms in enumerate(mapping):
            keycode = first + offset
            if not any(syms):
                spare.append(keycode)
                continue
            # Keypad keys reach their second level with NumLock, not Shift: KP_0 on the
            # KP_Insert key is left out here and gets a spare keycode of its own instead.
            levels = (0,) if _is_keypad(syms[0]) else (0, 1)
            for level in levels:
                if level < len(syms) and syms[level]:
                    self._keycodes.setdefault(syms[level], (keycode, level == 1))
        # Spare keycodes in least-recently-used order: keycode -> (bound keysym, last press time).
        self._spare: OrderedDict[int, tuple[int, float]] = OrderedDict((k, (0, 0.0)) for k in spare)
        self._shift = self._keycodes.get(XK.string_to_keysym("Shift_L"), (None, False))[0]

    # -- lookup -------------------------------------------------------------------------

    def _keycode_for(self, keysym: int) -> tuple[int, bool]:
        found = self._keycodes.get(keysym)
        if found is not None:
            keycode, shifted = found
            # A modifier is pressed as itself: Meta_L on Alt's second level must not add Shift.
            return keycode, shifted and keysym not in MODIFIER_KEYSYMS
        return self._bind_spare(keysym), False

    def _bind_spare(self, keysym: int) -> int:
        for keycode, (bound, _) in self._spare.items():
            if bound == keysym:
                return keycode
        if not self._spare:
            raise RuntimeError("the keyboard has no free keycode to bind extra characters to")
        keycode, (old, last_used) = next(iter(self._spare.items()))
        rest = REBIND_AFTER_S - (time.monotonic() - last_used)
        if old and rest > 0:
            self._display.sync()
            time.sleep(rest)
        if old:
            self._keycodes.pop(old, None)
        # The same keysym on both levels, so a held Shift cannot change what it types.
        self._display.change_keyboard_mapping(keycode, [(keysym, keysym)])
        self._display.sync()
        self._spare[keycode] = (keysym, 0.0)
        self._keycodes[keysym] = (keycode, False)
        return keycode

    def _touch(self, keycode: int) -> None:
        entry = self._spare.get(keycode)
        if entry is not None:
            self._spare[keycode] = (entry[0], time.monotonic())
            self._spare.move_to_end(keycode)

    # -- input --------------------------------------------------------------------------

    def _fake(self, event_type: int, keycode: int) -> None:
        xtest.fake_input(self._display, event_type, keycode)

    def press_keysyms(self, keysyms: list[int]) -> list[int]:
        """Press keys in order (a combo's modifiers first); returns the keycodes to release."""
        pressed: list[int] = []
        shift_needed = False
        resolved = []
        for keysym in keysyms:
            keycode, shifted = self._keycode_for(keysym)
            resolved.append(keycode)
            shift_needed |= shifted
        if shift_needed and self._shift is not None and self._shift not in resolved:
            resolved.insert(0, self._shift)
        for keycode in resolved:
            self._fake(X.KeyPress, keycode)
            self._touch(keycode)
            pressed.append(keycode)
        return pressed

    def release_keycodes(self, keycodes: list[int]) -> None:
        for keycode in reversed(keycodes):
            self._fake(X.KeyRelease, keycode)
            self._touch(keycode)

    def tap_combo(self, keysyms: list[int]) -> None:
        self.release_keycodes(self.press_keysyms(keysyms))
        self._display.flush()

    def type_keysyms(self, keysyms: list[int]) -> None:
        for count, keysym in enumerate(keysyms, 1):
            keycode, shifted = self._keycode_for(keysym)
            if shifted and self._shift is not None:
                self._fake(X.KeyPress, self._shift)
            self._fake(X.KeyPress, keycode)
            self._fake(X.KeyRelease, keycode)
            if shifted and self._shift is not None:
                self._fake(X.KeyRelease, self._shift)
            self._touch(keycode)
            if count % FLUSH_EVERY == 0:
                self._display.flush()
        self._display.sync()
