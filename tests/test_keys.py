"""Key-name parsing: xdotool syntax, case-insensitive, aliases, and helpful errors."""

import pytest
from Xlib import XK

from cubicle.x11 import (
    InvalidKeyCombo,
    UnknownKey,
    UntypableCharacter,
    char_to_keysym,
    check_typable,
    parse_key_sequence,
)


def ks(name):
    return XK.string_to_keysym(name)


@pytest.mark.parametrize("text,expected", [
    ("Return", [[ks("Return")]]),
    ("enter", [[ks("Return")]]),
    ("ESC", [[ks("Escape")]]),
    ("ctrl+s", [[ks("Control_L"), ks("s")]]),
    ("CTRL+SHIFT+t", [[ks("Control_L"), ks("Shift_L"), ks("t")]]),
    ("ctrl+A", [[ks("Control_L"), ks("a")]]),
    ("A", [[ks("A")]]),
    ("alt+Tab", [[ks("Alt_L"), ks("Tab")]]),
    ("super", [[ks("Super_L")]]),
    ("cmd+c", [[ks("Super_L"), ks("c")]]),
    ("win", [[ks("Super_L")]]),
    ("pgdn", [[ks("Next")]]),
    ("page_down", [[ks("Next")]]),
    ("KP_0", [[ks("KP_0")]]),
    ("f5", [[ks("F5")]]),
    ("ctrl++", [[ks("Control_L"), ks("plus")]]),
    ("ctrl+a Delete", [[ks("Control_L"), ks("a")], [ks("Delete")]]),
    (" ", [[ks("space")]]),
    ("XF86AudioPlay", [[0x1008FF14]]),
])
def test_combos_parse_to_keysyms(text, expected):
    assert parse_key_sequence(text) == expected


def test_unknown_key_suggests_the_right_name():
    with pytest.raises(UnknownKey) as error:
        parse_key_sequence("ctrl+Retrun")
    assert "'Retrun'" in str(error.value)
    assert "Return" in error.value.suggestions


@pytest.mark.parametrize("text", ["", "ctrl+", "+a+", "   "])
def test_empty_parts_are_refused(text):
    with pytest.raises((InvalidKeyCombo, UnknownKey)):
        parse_key_sequence(text)


def test_characters_map_to_latin1_or_unicode_keysyms():
    assert char_to_keysym("a") == ord("a")
    assert char_to_keysym("é") == 0xE9
    assert char_to_keysym("中") == 0x01000000 + 0x4E2D
    assert char_to_keysym("😀") == 0x01000000 + 0x1F600
    assert char_to_keysym("\n") == ks("Return")
    assert char_to_keysym("\t") == ks("Tab")


def test_control_characters_cannot_be_typed():
    check_typable("tab\tnew\nline\r\n ok é 中 😀")
    with pytest.raises(UntypableCharacter) as error:
        check_typable("bell\x07")
    assert error.value.position == 4 and "U+0007" in str(error.value)
