"""Windows through EWMH: listed with what a person sees, activated and closed for real."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

from cubicle.client import CubicleError
from support import start_recorder, wait_until


def find(client, title):
    return next((w for w in client.windows() if w.title == title), None)


def test_list_describes_the_window(client, recorder):
    window = find(client, "cubicle-recorder")
    assert window is not None
    assert window.id == recorder.ready["window_id"]
    assert window.wm_class == "Cubiclerecorder"  # Tk derives WM_CLASS from the window's class name
    assert (window.x, window.y) == recorder.origin
    assert (window.width, window.height) == (recorder.ready["width"], recorder.ready["height"])
    assert window.focused and not window.minimized


def test_activate_moves_focus_and_keys_follow(desktop, client, recorder, tmp_path):
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = start_recorder(desktop, other_dir, "--geometry", "300x200+700+150", "--title", "other-recorder")
    try:
        deadline = time.monotonic() + 10
        while not (find(client, "other-recorder") and find(client, "other-recorder").focused) and time.monotonic() < deadline:
            time.sleep(0.1)
        first = find(client, "cubicle-recorder")
        assert not first.focused
        assert client.activate(first.id).done
        assert find(client, "cubicle-recorder").focused
        assert not find(client, "other-recorder").focused
        # The keyboard follows the focus: the activated window gets the key, the other not.
        client.key("x")
        recorder.wait_for(lambda r: r["type"] == "key_press" and r["keysym"] == "x")
        assert other.records("key_press") == []
    finally:
        other.process.terminate()
        other.process.wait(10)


def test_close_closes_the_window(desktop, client, tmp_path):
    app = start_recorder(desktop, tmp_path, "--geometry", "300x200+100+100", "--title", "closing-recorder")
    window = None
    deadline = time.monotonic() + 10
    while window is None and time.monotonic() < deadline:
        window = find(client, "closing-recorder")
    assert window is not None
    assert client.close_window(window.id).done
    assert find(client, "closing-recorder") is None
    assert app.process.wait(10) is not None  # Tk quits when its only window is closed


@pytest.mark.parametrize("route", ["activate", "close"])
def test_unknown_window_is_a_404(client, route):
    with pytest.raises(CubicleError) as error:
        getattr(client, "activate" if route == "activate" else "close_window")(0x7FFFFFF)
    assert error.value.status == 404 and error.value.code == "window_not_found"


def test_launch_returns_the_new_window(client):
    launched = client.launch("galculator", timeout=30)
    try:
        assert launched.pid > 0
        assert launched.window is not None
        assert launched.window.wm_class.lower() == "galculator"
        assert launched.window.pid == launched.pid  # GTK sets _NET_WM_PID
        assert launched.window.id in [w.id for w in client.windows()]
    finally:
        if launched.window:
            client.close_window(launched.window.id)


def test_launch_of_a_missing_program_is_refused(client):
    with pytest.raises(CubicleError) as error:
        client.launch("no-such-program-here")
    assert error.value.status == 422 and "not found" in error.value.message


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def closed_new_windows(client, before: set[int], pids: set[int]) -> bool:
    """Ask every window opened since `before` to close, topmost first (a dialog before the
    window it belongs to), noting their pids; True once there are none."""
    opened = [w for w in reversed(client.windows()) if w.id not in before]
    pids.update(w.pid for w in opened if w.pid)
    for window in opened:
        with contextlib.suppress(CubicleError):
            client.close_window(window.id)
    return not opened


def test_launch_of_libreoffice_returns_its_document_window_not_the_splash(client):
    # soffice shows a splash screen (its own window, _NET_WM_WINDOW_TYPE_SPLASH) for a second
    # or two, then closes it and opens the document window, and on a new profile a dialog.
    before = {w.id for w in client.windows()}
    launched = client.launch(["libreoffice", "--calc"], timeout=120)
    try:
        assert launched.window is not None, "no window"
        assert "LibreOffice Calc" in launched.window.title, launched.window
        assert launched.window.wm_class == "libreoffice-calc"
        assert launched.window.id in [w.id for w in client.windows()]  # a splash would be gone
    finally:
        pids = {launched.pid}
        with contextlib.suppress(AssertionError):  # windows may still open while it quits
            wait_until(lambda: closed_new_windows(client, before, pids) and not any(map(running, pids)),
                       60, "LibreOffice closed and quit", 0.5)
        for pid in pids:
            if running(pid):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not any(w.id not in before for w in client.windows()), 30, "LibreOffice's windows gone")
