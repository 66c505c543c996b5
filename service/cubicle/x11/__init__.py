"""The only code that talks to the X server: capture, input, settling, windows.

Imports nothing from the rest of cubicle, so it can be reused and tested on its own.
"""

from .desktop import CursorSprite, Frame, X11Desktop, probe
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
from .settle import SettleReport
from .windows import WindowInfo

__all__ = [
    "CursorSprite", "DisplayUnavailable", "Frame", "InvalidKeyCombo", "LaunchFailed",
    "SettleReport", "UnknownKey", "UntypableCharacter", "WindowInfo", "WindowNotFound",
    "X11Desktop", "X11Error", "char_to_keysym", "check_typable", "parse_key_combo",
    "parse_key_sequence", "probe",
]
