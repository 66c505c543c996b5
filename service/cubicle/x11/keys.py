"""Key names in xdotool syntax -> X keysyms. Pure functions: no X connection needed.

The server validates every key action with `parse_key_sequence` before anything reaches the
display, so a typo is a clear error with a suggestion instead of a half-typed shortcut.
"""

from __future__ import annotations

import difflib
import functools

from Xlib import XK

from .errors import InvalidKeyCombo, UnknownKey, UntypableCharacter

_GROUPS = (
    "miscellany", "xkb", "latin1", "latin2", "latin3", "latin4", "greek", "cyrillic",
    "technical", "special", "publishing", "apl", "hebrew", "thai", "korean", "katakana",
    "arabic", "xf86",
)

# Names people and models use that are not X keysym names, and short forms xdotool accepts.
ALIASES = {
    "ctrl": "Control_L", "control": "Control_L", "lctrl": "Control_L", "rctrl": "Control_R",
    "alt": "Alt_L", "lalt": "Alt_L", "ralt": "Alt_R", "altgr": "ISO_Level3_Shift",
    "shift": "Shift_L", "lshift": "Shift_L", "rshift": "Shift_R",
    "super": "Super_L", "win": "Super_L", "windows": "Super_L", "cmd": "Super_L",
    "command": "Super_L", "meta": "Meta_L", "option": "Alt_L",
    "enter": "Return", "return": "Return", "ret": "Return",
    "esc": "Escape", "escape": "Escape",
    "pgdn": "Page_Down", "pagedown": "Page_Down", "page_down": "Page_Down", "next": "Page_Down",
    "pgup": "Page_Up", "pageup": "Page_Up", "page_up": "Page_Up", "prior": "Page_Up",
    "del": "Delete", "delete": "Delete", "ins": "Insert", "insert": "Insert",
    "bksp": "BackSpace", "backspace": "BackSpace", "back_space": "BackSpace",
    "tab": "Tab", "space": "space", "spacebar": "space",
    "up": "Up", "down": "Down", "left": "Left", "right": "Right",
    "arrowup": "Up", "arrowdown": "Down", "arrowleft": "Left", "arrowright": "Right",
    "home": "Home", "end": "End", "capslock": "Caps_Lock", "caps_lock": "Caps_Lock",
    "numlock": "Num_Lock", "printscreen": "Print", "print": "Print", "prtsc": "Print",
    "menu": "Menu", "apps": "Menu", "pause": "Pause", "break": "Break",
    "minus": "minus", "plus": "plus", "equal": "equal", "comma": "comma", "period": "period",
    "slash": "slash", "backslash": "backslash", "semicolon": "semicolon",
}

MODIFIER_KEYSYMS = frozenset(
    XK.string_to_keysym(name)
    for name in (
        "Shift_L", "Shift_R", "Control_L", "Control_R", "Alt_L", "Alt_R", "Meta_L", "Meta_R",
        "Super_L", "Super_R", "Hyper_L", "Hyper_R", "ISO_Level3_Shift", "Mode_switch",
    )
)

NEWLINE_KEYSYM: int = XK.string_to_keysym("Return")
TAB_KEYSYM: int = XK.string_to_keysym("Tab")


@functools.cache
def _keysym_names() -> dict[str, tuple[str, int]]:
    """lower-case name -> (canonical name, keysym) for every keysym python-xlib knows."""
    for group in _GROUPS:
        XK.load_keysym_group(group)
    table: dict[str, tuple[str, int]] = {}
    for attribute in dir(XK):
        if not attribute.startswith("XK_"):
            continue
        name = attribute[3:]
        keysym = getattr(XK, attribute)
        if name.startswith("XF86_"):  # python-xlib spells XF86AudioPlay as XF86_AudioPlay
            name = "XF86" + name[5:]
        table.setdefault(name.lower(), (name, keysym))
    for alias, target in ALIASES.items():
        table[alias] = (target, table[target.lower()][1])
    return table


def char_to_keysym(char: str) -> int:
    """The keysym that produces `char`: Latin-1 keysyms equal the code point, the rest are
    0x01000000 + code point (the X convention every toolkit understands)."""
    if char == "\n":
        return NEWLINE_KEYSYM
    if char == "\t":
        return TAB_KEYSYM
    code = ord(char)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x01000000 + code


def keysym_for_name(name: str) -> int:
    """One key name (not a combo) -> keysym. Single characters are taken literally."""
    if len(name) == 1:
        return char_to_keysym(name)
    entry = _keysym_names().get(name.lower())
    if entry is None:
        suggestions = difflib.get_close_matches(name.lower(), _keysym_names().keys(), n=3, cutoff=0.6)
        canonical = dict.fromkeys(_keysym_names()[s][0] for s in suggestions)
        raise UnknownKey(name, list(canonical))
    return entry[1]


def _split_combo(combo: str) -> list[str]:
    if combo == "+":
        return ["+"]
    parts = combo.split("+")
    if combo.endswith("++"):  # "ctrl++" means ctrl and the plus key
        parts = combo[:-2].split("+") + ["+"]
    if any(part == "" for part in parts):
        raise InvalidKeyCombo(f"Key combo {combo!r} has an empty key name; write it like ctrl+shift+t.")
    return parts


def parse_key_combo(combo: str) -> list[int]:
    """'ctrl+shift+t' -> keysyms in press order. In a combo with modifiers a single letter is
    case-folded ('ctrl+A' is ctrl+a, as people mean it); alone it is literal ('A' types A)."""
    names = _split_combo(combo)
    keysyms = []
    for name in names:
        if len(names) > 1 and len(name) == 1 and name.isalpha():
            name = name.lower()
        keysyms.append(keysym_for_name(name))
    return keysyms


def parse_key_sequence(text: str) -> list[list[int]]:
    """xdotool accepts several combos separated by spaces ('ctrl+a Delete'); a lone ' ' is space."""
    if text == " ":
        return [[XK.string_to_keysym("space")]]
    combos = text.split()
    if not combos:
        raise InvalidKeyCombo("The key text is empty; give a key name such as Return or ctrl+s.")
    return [parse_key_combo(combo) for combo in combos]


def check_typable(text: str) -> None:
    """Raise UntypableCharacter for control characters other than newline, tab and CR."""
    for position, char in enumerate(text):
        code = ord(char)
        if (code < 0x20 and char not in "\n\t\r") or code == 0x7F or 0x80 <= code < 0xA0:
            raise UntypableCharacter(char, position)
        if 0xD800 <= code <= 0xDFFF:
            raise UntypableCharacter(char, position)
