"""Errors of the X11 engine. Their messages are shown to people and to models: say what to do."""

from __future__ import annotations


class X11Error(Exception):
    """Base class of everything the engine raises on purpose."""


class DisplayUnavailable(X11Error):
    """The X server cannot be reached (not started yet, crashed, or restarting)."""


class UnknownKey(X11Error, ValueError):
    def __init__(self, name: str, suggestions: list[str]):
        self.name = name
        self.suggestions = suggestions
        hint = f" Did you mean {' or '.join(repr(s) for s in suggestions)}?" if suggestions else ""
        super().__init__(
            f"Unknown key name {name!r}.{hint} Use xdotool names such as Return, Escape, Tab, "
            "ctrl+s, alt+Tab, Page_Down, F5, super."
        )


class InvalidKeyCombo(X11Error, ValueError):
    """A key combo that parses into nothing usable, e.g. 'ctrl+' or an empty string."""


class UntypableCharacter(X11Error, ValueError):
    def __init__(self, char: str, position: int):
        self.char = char
        self.position = position
        super().__init__(
            f"Character U+{ord(char):04X} at position {position} cannot be typed: it is a control "
            "character. Newline and tab are allowed; send other control keys with the key action."
        )


class WindowNotFound(X11Error, LookupError):
    def __init__(self, window_id: int):
        self.window_id = window_id
        super().__init__(f"No window with id {window_id} (0x{window_id:x}) is open. List them with GET /windows.")


class LaunchFailed(X11Error):
    """The program to launch could not be started (not found, not executable)."""
