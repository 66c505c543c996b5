"""Typing into real apps, checked in the files they save: the text a person would find."""

from __future__ import annotations

import time
from pathlib import Path

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
