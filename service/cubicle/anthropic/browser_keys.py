"""Key names for the browser toolset: what a model writes (xdotool-style, as for the computer
toolset: "ctrl+a", "Return", "shift+Tab", "Page_Down") as Playwright's key names ("Control+a",
"Enter", "Shift+Tab", "PageDown"). Names are matched without regard to case, "_" or "-"."""

from __future__ import annotations

from anthropic.tools import ToolError

__all__ = ["chord_keys", "playwright_chord", "playwright_keys", "playwright_modifiers"]

_MODIFIERS = {
    "ctrl": "Control", "control": "Control", "controll": "Control", "controlr": "Control", "lctrl": "Control",
    "rctrl": "Control", "shift": "Shift", "shiftl": "Shift", "shiftr": "Shift", "alt": "Alt", "altl": "Alt",
    "altr": "Alt", "option": "Alt", "opt": "Alt", "meta": "Meta", "metal": "Meta", "metar": "Meta", "super": "Meta",
    "superl": "Meta", "superr": "Meta", "cmd": "Meta", "command": "Meta", "win": "Meta", "windows": "Meta",
}

_NAMED = {
    "return": "Enter", "enter": "Enter", "kpenter": "Enter", "tab": "Tab", "isolefttab": "Tab",
    "backspace": "Backspace", "escape": "Escape", "esc": "Escape", "delete": "Delete", "del": "Delete",
    "kpdelete": "Delete", "insert": "Insert", "ins": "Insert", "home": "Home", "kphome": "Home", "end": "End",
    "kpend": "End", "pageup": "PageUp", "prior": "PageUp", "pgup": "PageUp", "pagedown": "PageDown",
    "next": "PageDown", "pgdn": "PageDown", "left": "ArrowLeft", "right": "ArrowRight", "up": "ArrowUp",
    "down": "ArrowDown", "arrowleft": "ArrowLeft", "arrowright": "ArrowRight", "arrowup": "ArrowUp",
    "arrowdown": "ArrowDown", "kpleft": "ArrowLeft", "kpright": "ArrowRight", "kpup": "ArrowUp",
    "kpdown": "ArrowDown", "space": "Space", "spacebar": "Space", "capslock": "CapsLock",
    "numlock": "NumLock", "scrolllock": "ScrollLock", "menu": "ContextMenu", "contextmenu": "ContextMenu",
    "print": "PrintScreen", "printscreen": "PrintScreen", "pause": "Pause", "break": "Pause",
    "plus": "+", "minus": "-", "equal": "=", "comma": ",", "period": ".", "slash": "/", "backslash": "\\",
    "semicolon": ";", "apostrophe": "'", "quoteright": "'", "grave": "`", "quoteleft": "`",
    "bracketleft": "[", "bracketright": "]", "asterisk": "*", "kpadd": "NumpadAdd", "kpsubtract": "NumpadSubtract",
    "kpmultiply": "NumpadMultiply", "kpdivide": "NumpadDivide", "kpdecimal": "NumpadDecimal",
    **{f"f{n}": f"F{n}" for n in range(1, 25)},
    **{f"kp{n}": f"Numpad{n}" for n in range(10)},
    **{name.lower(): name for name in _MODIFIERS.values()},
}


def _fold(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _key(name: str, text: str) -> str:
    if len(name) == 1:
        return name
    found = _NAMED.get(_fold(name)) or _MODIFIERS.get(_fold(name))
    if found is None:
        raise ToolError(f"Unknown key {name!r} in {text!r}. Use names like Return, Tab, Escape, BackSpace, Delete, "
                        "Page_Down, Left, F5, or a chord like ctrl+a or shift+Tab.")
    return found


def _modifier(name: str, text: str) -> str:
    found = _MODIFIERS.get(_fold(name.strip()))
    if found is None:
        raise ToolError(f"{name!r} in {text!r} is not a modifier key; hold ctrl, shift, alt or cmd.")
    return found


def chord_keys(chord: str, text: str | None = None) -> list[str]:
    """One chord ("ctrl+shift+p") as the Playwright keys it holds (["Control", "Shift", "p"]);
    "ctrl++" is ctrl and "+"."""
    whole = text or chord
    parts = ["+"] if chord == "+" else chord[:-2].split("+") + ["+"] if chord.endswith("++") else chord.split("+")
    if any(not part for part in parts):
        raise ToolError(f"The key chord {chord!r} has an empty part; write it like ctrl+a or shift+Tab.")
    *held, last = parts
    return [*(_modifier(part, whole) for part in held), _key(last, whole)]


def playwright_chord(chord: str, text: str | None = None) -> str:
    """One chord as Playwright's press() takes it: "Control+Shift+p"."""
    return "+".join(chord_keys(chord, text))


def playwright_keys(text: str) -> list[str]:
    """A space-separated sequence of chords ("ctrl+a BackSpace") as Playwright key names."""
    chords = text.split()
    if not chords:
        raise ToolError("No key given: write a key name such as Return, or a chord such as ctrl+a.")
    return [playwright_chord(chord, text) for chord in chords]


def playwright_modifiers(text: str | None) -> list[str]:
    """A modifier chord to hold during a click ("ctrl+shift") as ["Control", "Shift"]."""
    return [_modifier(part, text) for part in text.split("+")] if text and text.strip() else []
