"""Keys and text through XTEST, correct whatever the keyboard layout.

A keysym already on the keyboard is pressed on its keycode (with Shift for the second
level). Any other keysym (Chinese, emoji, a dead key the layout lacks) is bound on the fly to
a keycode the layout leaves empty. A client translates a key event with the mapping it holds
when it reads the event, so two rules keep typing exact:
- new bindings are made before a stretch of text, all at once, followed by a short pause in
  which idle clients take in the new mapping (Tk read the first key after a fresh binding as
  NoSymbol without it);
- bindings stay in place and are reused; a spare keycode is rebound only once it has not been
  pressed for a while and the app has drawn since, then gone quiet (it has drawn what it was
  sent), so an earlier character cannot turn into a later one. Keycodes that carry only multimedia
  keysyms (XF86*) count as spare too: more room means rebinding is rare.

The table follows the server's mapping: a change made behind our back (`setxkbmap de`,
`xmodmap` in the desktop's shell) arrives as a MappingNotify event, and the table is read
afresh before the next key is sent. Our own rebinding of a spare keycode comes back as a
MappingNotify too; those are recognised and cost nothing.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from Xlib import XK, X
from Xlib.ext import xtest

if TYPE_CHECKING:
    from Xlib.display import Display
    from Xlib.protocol.rq import Event

from .keys import MODIFIER_KEYSYMS

# How long a spare keycode must rest before it is rebound to another keysym.
REBIND_AFTER_S = 0.3
# Pause after changing bindings, before keys that use them are sent.
BIND_SETTLE_S = 0.05
# Flush the request buffer every so many characters: keeps the X server fed without letting
# a long text sit in our buffer.
FLUSH_EVERY = 32


def _is_keypad(keysym: int) -> bool:
    return 0xFF80 <= keysym <= 0xFFBD  # XK_KP_Space .. XK_KP_9


def _is_multimedia(keysym: int) -> bool:
    return 0x1008FF00 <= keysym <= 0x1008FFFF  # XF86AudioPlay and the like; rebound on demand


class Keyboard:
    def __init__(self, display: Display, wait_until_drawn: Callable[[], object] | None = None) -> None:
        """`wait_until_drawn()` returns once the screen has stopped changing (capped)."""
        self._display = display
        self._wait_until_drawn = wait_until_drawn or (lambda: None)
        # keysym -> (keycode, needs_shift); the first (lowest) keycode wins, level 1 before 2.
        self._keycodes: dict[int, tuple[int, bool]] = {}
        # Spare keycodes in least-recently-used order: keycode -> (bound keysym, last press time).
        self._spare: OrderedDict[int, tuple[int, float]] = OrderedDict()
        self._shift: int | None = None
        self._caught_up_at = 0.0  # when the app was last seen to have drawn what it was sent
        # MappingNotify events our own rebindings will bring back, per keycode.
        self._own_changes: Counter[int] = Counter()
        self._mapping_changed = False
        self._read_mapping()

    # -- following the server's mapping ---------------------------------------------------

    def _read_mapping(self) -> None:
        """Build the table from the server's mapping. A spare keycode that still holds what we
        bound on it stays ours, with its binding and last press time."""
        info = self._display.display.info
        first, last = info.min_keycode, info.max_keycode
        mapping = self._display.get_keyboard_mapping(first, last - first + 1)
        keycodes: dict[int, tuple[int, bool]] = {}
        still_bound: set[int] = set()
        empty: list[int] = []
        for offset, syms in enumerate(mapping):
            keycode = first + offset
            bound = self._spare.get(keycode, (0, 0.0))[0]
            if bound and syms[0] == bound and all(sym in (0, bound) for sym in syms):
                still_bound.add(keycode)
                continue
            if all(not sym or _is_multimedia(sym) for sym in syms):
                empty.append(keycode)
                continue
            # Keypad keys reach their second level with NumLock, not Shift: KP_0 on the
            # KP_Insert key is left out here and gets a spare keycode of its own instead.
            levels = (0,) if _is_keypad(syms[0]) else (0, 1)
            for level in levels:
                if level < len(syms) and syms[level]:
                    keycodes.setdefault(syms[level], (keycode, level == 1))
        # Never used spares first (least recently used), then the known ones in their order.
        spare: OrderedDict[int, tuple[int, float]] = OrderedDict(
            (k, (0, 0.0)) for k in empty if k not in self._spare
        )
        for keycode, (bound, pressed) in self._spare.items():
            if keycode in still_bound:
                spare[keycode] = (bound, pressed)
                keycodes.setdefault(bound, (keycode, False))
            elif keycode in empty:
                spare[keycode] = (0, pressed)  # the layout's change wiped our binding
        self._keycodes, self._spare = keycodes, spare
        self._shift = keycodes.get(XK.string_to_keysym("Shift_L"), (None, False))[0]

    def note_mapping_change(self, event: Event) -> None:
        """Take in a MappingNotify event. One that reports a rebinding of our own is expected;
        any other change to the keyboard or its modifiers makes the table stale."""
        if event.request == X.MappingPointer:
            return
        if event.request == X.MappingKeyboard and event.count == 1 and self._own_changes[event.first_keycode]:
            self._own_changes[event.first_keycode] -= 1
            return
        self._display.refresh_keyboard_mapping(event)  # python-xlib's own keysym cache
        self._mapping_changed = True

    def follow_mapping(self) -> None:
        """Read the mapping afresh if it changed since it was read (call before sending keys)."""
        if self._mapping_changed:
            self._mapping_changed = False
            self._read_mapping()

    # -- lookup -------------------------------------------------------------------------

    def _keycode_for(self, keysym: int) -> tuple[int, bool]:
        found = self._keycodes.get(keysym)
        if found is None:
            self.bind([keysym])
            found = self._keycodes[keysym]
        keycode, shifted = found
        # A modifier is pressed as itself: Meta_L on Alt's second level must not add Shift.
        return keycode, shifted and keysym not in MODIFIER_KEYSYMS

    def bind(self, keysyms: list[int]) -> None:
        """Give each keysym not on the keyboard a spare keycode (at most as many as there are
        spare keycodes), then pause so clients pick up the new mapping before it is used."""
        missing = list(dict.fromkeys(k for k in keysyms if k not in self._keycodes))
        if not missing:
            return
        if len(missing) > len(self._spare):
            raise RuntimeError("more distinct characters than spare keycodes in one stretch")
        keep = set(keysyms)
        victims = [code for code, (bound, _) in self._spare.items() if bound not in keep][: len(missing)]
        # A keycode pressed since the app last caught up may still wait, unread, in the app's
        # queue: it must not change meaning before the app has drawn what it was sent. Time
        # alone is no proof (a client starved of CPU reads late), so wait for its drawing too.
        if any(self._spare[code][1] > self._caught_up_at for code in victims):
            rest = max(REBIND_AFTER_S - (time.monotonic() - self._spare[code][1]) for code in victims)
            self._display.sync()
            if rest > 0:
                time.sleep(rest)
            self._wait_until_drawn()
            self._caught_up_at = time.monotonic()
        for keycode, keysym in zip(victims, missing):
            old = self._spare[keycode][0]
            if old and self._keycodes.get(old, (None, False))[0] == keycode:
                del self._keycodes[old]  # unless the layout itself has it on another key
            # The same keysym on both levels, so a held Shift cannot change what it types.
            self._display.change_keyboard_mapping(keycode, [(keysym, keysym)])
            self._own_changes[keycode] += 1
            self._spare[keycode] = (keysym, time.monotonic())
            self._spare.move_to_end(keycode)
            self._keycodes[keysym] = (keycode, False)
        self._display.sync()
        time.sleep(BIND_SETTLE_S)

    def stretches(self, keysyms: list[int]) -> list[list[int]]:
        """Split text into stretches whose characters off the keyboard fit the spare keycodes."""
        stretches: list[list[int]] = []
        current: list[int] = []
        extra: set[int] = set()
        for keysym in keysyms:
            needs_spare = keysym not in self._keycodes or self._keycodes[keysym][0] in self._spare
            if needs_spare and keysym not in extra and len(extra) == len(self._spare):
                stretches.append(current)
                current, extra = [], set()
            if needs_spare:
                extra.add(keysym)
            current.append(keysym)
        if current:
            stretches.append(current)
        return stretches

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
        for stretch in self.stretches(keysyms):
            self.bind(stretch)
            for count, keysym in enumerate(stretch, 1):
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
