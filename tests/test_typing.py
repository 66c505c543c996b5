"""Typing into real apps, checked in the files they save: the text a person would find."""

from __future__ import annotations

import contextlib
import shlex
import time
from pathlib import Path

from support import wait_until

MIXED = "Grüße, café — naïve ñ\n中文输入法 日本語のテキスト カタカナ\t😀🚀🎉 ça marche!\n"
# More distinct characters than the keyboard has spare keycodes (about 110 on Xvfb): bindings
# must be reused without turning an earlier character into a later one.
MANY_CJK = "".join(chr(0x4E00 + i) for i in range(250))


def wait_for_file(path: Path, expected: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    content = None
    while time.monotonic() < deadline:
        if path.exists():
            content = path.read_text(encoding="utf-8")
            if content == expected:
                return content
        time.sleep(0.1)
    raise AssertionError(f"{path} holds {content!r}, expected {expected!r}")


def launch_and_focus(client, command):
    launched = client.launch(command, timeout=30)
    assert launched.window is not None, f"{command} opened no window"
    assert client.activate(launched.window.id).done
    return launched.window


def test_xterm_saves_exactly_what_was_typed(client, tmp_path):
    target = tmp_path / "xterm.txt"
    window = launch_and_focus(client, ["xterm", "-e", "sh", "-c", f"cat > {target}"])
    try:
        client.type(MIXED)
        client.key("ctrl+d")  # end of input: cat writes and exits
        wait_for_file(target, MIXED)
    finally:
        if window.id in [w.id for w in client.windows()]:
            client.close_window(window.id)


def test_typing_many_distinct_characters_stays_exact(client, tmp_path):
    target = tmp_path / "cjk.txt"
    launch_and_focus(client, ["xterm", "-e", "sh", "-c", f"cat > {target}"])
    text = MANY_CJK[:125] + "\n" + MANY_CJK[125:] + "\n" + MANY_CJK[::-1] + "\n"
    client.type(text)
    client.key("ctrl+d")
    wait_for_file(target, text)


def test_mousepad_saves_unicode_typed_into_it(client, tmp_path):
    target = tmp_path / "mousepad.txt"
    target.write_text("")
    window = launch_and_focus(client, ["mousepad", str(target)])
    try:
        client.type(MIXED)
        client.key("ctrl+s")
        wait_for_file(target, MIXED)
    finally:
        client.close_window(window.id)


# -- a keyboard layout changed from the desktop's shell -------------------------------------

# On the German layout z and y trade places, and / ( ) ? & - sit on other keys than on the US
# one; @ is on AltGr, a level the engine does not press, so it gets a spare keycode.
GERMAN_TEXT = "zy/(yz)? a&b-c @ zoo"
# `keycode 38 = q Q` leaves the layout with no key for "a": it must get a spare keycode.
XMODMAP_TEXT = "banana a quaint alpaca"


def shell_ok(client, command: str) -> str:
    result = client.shell(command)
    assert result.exit_code == 0, f"{command!r} failed: {result.output}"
    return result.output


def setxkbmap_command(query: str) -> str:
    """The setxkbmap command that sets what `setxkbmap -query` reported."""
    settings = dict(line.split(":", 1) for line in query.splitlines() if ":" in line)
    settings = {name.strip(): value.strip() for name, value in settings.items()}
    command = ["setxkbmap", "-rules", settings["rules"], "-model", settings["model"], "-layout", settings["layout"]]
    command += ["-variant", settings.get("variant", ""), "-option", ""]
    command += [part for option in filter(None, settings.get("options", "").split(",")) for part in ("-option", option)]
    return shlex.join(command)


def engine_bound(line: str) -> bool:
    """An `xmodmap -pke` line of a keycode the engine bound to a character (the same keysym on
    each level): one the layout leaves empty or gives multimedia keys only, scratch space."""
    names = line.partition("=")[2].split()
    return len(names) == 4 and len(set(names)) == 1


def spare_in_layout(line: str) -> bool:
    return all(name == "NoSymbol" or name.startswith("XF86") for name in line.partition("=")[2].split())


@contextlib.contextmanager
def keymap_restored(client):
    """The desktop's layout, saved first and set back after: the desktop is shared by every
    test. The core mapping must then be as it was, but for the keycodes the engine had bound
    to characters: setxkbmap gives those back to the layout (empty, or a multimedia key), and
    the engine binds them again when needed."""
    restore = setxkbmap_command(shell_ok(client, "setxkbmap -query"))
    mapping = shell_ok(client, "xmodmap -pke").splitlines()
    try:
        yield
    finally:
        shell_ok(client, restore)
        now = shell_ok(client, "xmodmap -pke").splitlines()
        assert len(now) == len(mapping)
        changed = [(old, new) for old, new in zip(mapping, now)
                   if old != new and not (engine_bound(old) and spare_in_layout(new))]
        assert changed == [], "the keymap was not restored"


def typed_chars(recorder) -> str:
    return "".join(record["char"] for record in recorder.records("key_press"))


def type_and_read_back(client, recorder, text: str) -> str:
    """Type `text` into the recorder; what it received, once as many characters arrived."""
    recorder.clear()
    client.type(text)
    with contextlib.suppress(AssertionError):  # fewer characters: the comparison shows them
        wait_until(lambda: len(typed_chars(recorder)) >= len(text), 15, "the typed characters")
    return typed_chars(recorder)


def test_typing_follows_a_layout_set_with_setxkbmap_in_the_shell(client, recorder):
    assert type_and_read_back(client, recorder, GERMAN_TEXT) == GERMAN_TEXT  # the table in use
    with keymap_restored(client):
        shell_ok(client, "setxkbmap de")
        assert "layout:     de" in shell_ok(client, "setxkbmap -query")
        assert type_and_read_back(client, recorder, GERMAN_TEXT) == GERMAN_TEXT
    # And back on the layout it had before.
    assert type_and_read_back(client, recorder, GERMAN_TEXT) == GERMAN_TEXT


def test_typing_follows_a_key_remapped_with_xmodmap_in_the_shell(client, recorder):
    assert type_and_read_back(client, recorder, XMODMAP_TEXT) == XMODMAP_TEXT
    with keymap_restored(client):
        shell_ok(client, "xmodmap -e 'keycode 38 = q Q'")
        assert type_and_read_back(client, recorder, XMODMAP_TEXT) == XMODMAP_TEXT
        # Keys pressed as combos follow the new table as well: ctrl+a is no longer keycode 38.
        recorder.clear()
        client.key("ctrl+a")
        press = recorder.wait_for(lambda r: r["type"] == "key_press" and r["keysym"] != "Control_L")
        assert (press["keysym"], press["modifiers"]) == ("a", ["control"])
    assert type_and_read_back(client, recorder, XMODMAP_TEXT) == XMODMAP_TEXT
