"""The only code that talks to the X server: capture, input, settling, windows.

Imports nothing from the rest of cubicle, so it can be reused and tested on its own.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    DisplayUnavailable,
    InvalidKeyCombo,
    LaunchFailed,
    UnknownKey,
    UntypableCharacter,
    WindowNotFound,
    X11Error,
)
from .keys import char_to_keysym, check_typable, parse_key_combo, parse_key_sequence

if TYPE_CHECKING:  # for the type checker: at run time __getattr__ imports these on first use
    from .desktop import CursorSprite, Frame, X11Desktop, probe
    from .settle import SettleReport
    from .windows import WindowInfo

# Key names and errors are pure; what talks to X is imported on first use, so that code which
# only needs key names (the agent worker, which runs without X) loads no X connection code.
_CONNECTED = {"CursorSprite": "desktop", "Frame": "desktop", "X11Desktop": "desktop", "probe": "desktop",
              "SettleReport": "settle", "WindowInfo": "windows"}


def __getattr__(name: str) -> Any:
    if name in _CONNECTED:
        import importlib

        return getattr(importlib.import_module(f".{_CONNECTED[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CursorSprite", "DisplayUnavailable", "Frame", "InvalidKeyCombo", "LaunchFailed",
    "SettleReport", "UnknownKey", "UntypableCharacter", "WindowInfo", "WindowNotFound",
    "X11Desktop", "X11Error", "char_to_keysym", "check_typable", "parse_key_combo",
    "parse_key_sequence", "probe",
]
