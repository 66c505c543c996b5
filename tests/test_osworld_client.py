"""OSWorld's own client, desktop-env 1.0.2's PythonController, against a real cubicle desktop:
screenshots, pyautogui through /execute, and every computer_13 action, each observed by the
Tk recorder (tests/apps/recorder.py), an independent witness of what X delivered."""

from __future__ import annotations

import time

import pytest

from cubicle.client import DesktopClient
from osworld_support import desktop_env, osworld_desktop
from support import start_recorder, wait_until

pytestmark = pytest.mark.desktop


@pytest.fixture(scope="module")
def osworld(tmp_path_factory):
    with osworld_desktop(tmp_path_factory.mktemp("osworld-client")) as (desktop, address):
        host, port = address.rsplit(":", 1)
        controller = desktop_env().PythonController(vm_ip=host, server_port=int(port))
        controller.retry_interval = 0.5  # a failure shows up in a second, not after 3 x 5 s
        with DesktopClient(desktop.url, desktop.token, timeout=60) as api:
            yield desktop, controller, api


@pytest.fixture
def recorder(osworld, tmp_path):
    desktop, _, api = osworld
    app = start_recorder(desktop, tmp_path, "--geometry", "800x500+200+120", "--title", "osworld-recorder")

    def focused() -> bool:
        window = next((w for w in api.windows() if w.title == "osworld-recorder"), None)
        if window and not window.focused:
            api.activate(window.id)
        return bool(window and window.focused)

    wait_until(focused, 10, "the recorder focused")
    app.clear()
    yield app
    app.process.terminate()
    app.process.wait(timeout=10)


def act(controller, action_type: str, **parameters):
    controller.execute_action({"action_type": action_type, "parameters": parameters})


def test_screenshot_execute_and_the_vm_queries(osworld):
    _, controller, api = osworld
    png = controller.get_screenshot()
    assert png is not None and png[:8] == b"\x89PNG\r\n\x1a\n"
    result = controller.execute_python_command("pyautogui.moveTo(400, 300); print(pyautogui.size())")
    assert result["returncode"] == 0 and result["output"].strip() == "Size(width=1280, height=800)"
    assert (api.cursor().x, api.cursor().y) == (400, 300)
    assert controller.get_vm_platform() == "Linux"
    assert controller.get_vm_screen_size() == {"width": 1280, "height": 800}
    assert controller.get_accessibility_tree().startswith("<desktop-frame")


def test_files_through_the_controller(osworld):
    desktop, controller, _ = osworld
    home = desktop.state_dir / "home"
    (home / "tree" / "sub").mkdir(parents=True)
    (home / "tree" / "sub" / "leaf.txt").write_text("leaf")
    assert controller.get_file(str(home / "tree" / "sub" / "leaf.txt")) == b"leaf"
    assert controller.get_vm_directory_tree(str(home / "tree")) == {
        "type": "directory", "name": "tree",
        "children": [{"type": "directory", "name": "sub", "children": [{"type": "file", "name": "leaf.txt"}]}]}


def test_recording_through_the_controller(osworld, tmp_path):
    _, controller, _ = osworld
    controller.start_recording()
    time.sleep(1.5)
    destination = tmp_path / "task.mp4"
    controller.end_recording(str(destination))
    assert destination.stat().st_size > 1000 and destination.read_bytes()[4:8] == b"ftyp"


def test_computer_13_mouse_actions(osworld, recorder):
    _, controller, api = osworld
    x, y = recorder.at(100, 80)
    act(controller, "MOVE_TO", x=x, y=y)
    assert (api.cursor().x, api.cursor().y) == (x, y)

    act(controller, "CLICK", button="left", x=x + 10, y=y + 10, num_clicks=1)
    act(controller, "RIGHT_CLICK", x=x + 20, y=y + 20)
    act(controller, "DOUBLE_CLICK", x=x + 30, y=y + 30)
    act(controller, "CLICK", x=x + 40, y=y + 40, num_clicks=2)
    recorder.wait_for(lambda r: len(recorder.records("release")) >= 6)
    presses = [(p["button"], p["x_root"] - x, p["y_root"] - y) for p in recorder.records("press")]
    assert presses == [(1, 10, 10), (3, 20, 20), (1, 30, 30), (1, 30, 30), (1, 40, 40), (1, 40, 40)]

    recorder.clear()
    act(controller, "MOVE_TO", x=x + 200, y=y + 100)
    act(controller, "MOUSE_DOWN", button="left")
    act(controller, "DRAG_TO", x=x + 300, y=y + 150)  # mouseDownUp: presses again, then releases
    act(controller, "MOUSE_UP", button="left")
    recorder.wait_for(lambda r: any(m["buttons"] == [1] and m["x_root"] == x + 300 for m in recorder.records("motion")))
    assert recorder.records("press")[0]["x_root"] - x == 200
    moves = [m for m in recorder.records("motion") if m["buttons"] == [1]]
    assert (moves[-1]["x_root"] - x, moves[-1]["y_root"] - y) == (300, 150)

    recorder.clear()
    act(controller, "MOVE_TO", x=x + 50, y=y + 50)
    act(controller, "SCROLL", dy=3)
    act(controller, "SCROLL", dy=-2)
    act(controller, "SCROLL", dx=2)
    recorder.wait_for(lambda r: len(recorder.records("scroll")) >= 7)
    directions = [s["direction"] for s in recorder.records("scroll")]
    assert directions == ["up"] * 3 + ["down"] * 2 + ["right"] * 2


def test_computer_13_keyboard_actions(osworld, recorder):
    _, controller, _ = osworld
    act(controller, "TYPING", text="Hi, it's 9!")
    recorder.wait_for(lambda r: len([k for k in recorder.records("key_press") if k["char"]]) >= 11)
    assert "".join(k["char"] for k in recorder.records("key_press") if k["char"]) == "Hi, it's 9!"

    recorder.clear()
    act(controller, "PRESS", key="enter")
    act(controller, "HOTKEY", keys=["ctrl", "a"])
    act(controller, "KEY_DOWN", key="shift")
    act(controller, "PRESS", key="b")
    act(controller, "KEY_UP", key="shift")
    recorder.wait_for(lambda r: r["type"] == "key_release" and r["keysym"].startswith("Shift"))
    pressed = [(k["keysym"], k["modifiers"]) for k in recorder.records("key_press")]
    assert pressed == [("Return", []), ("Control_L", []), ("a", ["control"]), ("Shift_L", []), ("B", ["shift"])]
    released = [k["keysym"] for k in recorder.records("key_release")]
    assert released[-1].startswith("Shift") and "Control_L" in released


def test_computer_13_wait_fail_done_send_nothing(osworld, recorder):
    _, controller, _ = osworld
    for special in ("WAIT", "FAIL", "DONE"):
        controller.execute_action(special)
        act(controller, special)
    time.sleep(0.5)
    assert recorder.records("press") == [] and recorder.records("key_press") == []
