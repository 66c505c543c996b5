"""Every input action, observed by an independent witness: the Tk recorder logs what X
delivered to its window (position, button, modifiers, keysyms, wheel direction, drag path)."""

from __future__ import annotations

import time

import pytest


def act(client, *actions):
    response = client.act(*actions)
    assert all(result.status == "ok" for result in response.results), response
    return response


def presses(recorder, count, timeout=10):
    recorder.wait_for(lambda r: len([x for x in recorder.records("release")]) >= count, timeout)
    return recorder.records("press")


@pytest.mark.parametrize("action,button", [("left_click", 1), ("middle_click", 2), ("right_click", 3)])
def test_click_lands_exactly_with_the_right_button(client, recorder, action, button):
    x, y = recorder.at(123, 77)
    act(client, {"action": action, "coordinate": [x, y]})
    recorder.wait_for(lambda r: r["type"] == "release")
    (press,) = recorder.records("press")
    assert (press["button"], press["x_root"], press["y_root"]) == (button, x, y)
    assert (press["x"], press["y"]) == (123, 77)
    assert press["modifiers"] == []


@pytest.mark.parametrize("action,count", [("double_click", 2), ("triple_click", 3)])
def test_multi_clicks_send_that_many_presses_in_place(client, recorder, action, count):
    x, y = recorder.at(300, 200)
    act(client, {"action": action, "coordinate": [x, y]})
    recorder.wait_for(lambda r: len(recorder.records("release")) >= count)
    time.sleep(0.3)  # nothing more must arrive
    got = recorder.records("press")
    assert [(p["button"], p["x_root"], p["y_root"]) for p in got] == [(1, x, y)] * count
    # Close enough together for a toolkit to see one double/triple click (X server ms).
    assert got[-1]["time"] - got[0]["time"] < 200


@pytest.mark.parametrize("modifiers,expected", [
    ("shift", ["shift"]),
    ("ctrl", ["control"]),
    ("ctrl+shift", ["control", "shift"]),
    ("alt", ["mod1"]),
])
def test_modifiers_are_held_during_a_click(client, recorder, modifiers, expected):
    x, y = recorder.at(50, 60)
    act(client, {"action": "left_click", "coordinate": [x, y], "text": modifiers})
    recorder.wait_for(lambda r: r["type"] == "release")
    (press,) = recorder.records("press")
    assert press["modifiers"] == expected
    # ... and released afterwards: a plain click now carries no modifier.
    recorder.clear()
    act(client, {"action": "left_click", "coordinate": [x, y]})
    recorder.wait_for(lambda r: r["type"] == "release")
    assert recorder.records("press")[0]["modifiers"] == []


def test_modifier_in_the_demo_field_key_works_too(client, recorder):
    x, y = recorder.at(40, 40)
    act(client, {"action": "left_click", "coordinate": [x, y], "key": "shift"})
    recorder.wait_for(lambda r: r["type"] == "release")
    assert recorder.records("press")[0]["modifiers"] == ["shift"]


@pytest.mark.parametrize("direction", ["up", "down", "left", "right"])
def test_scroll_direction_amount_and_position(client, recorder, direction):
    x, y = recorder.at(400, 250)
    act(client, {"action": "scroll", "coordinate": [x, y], "scroll_direction": direction, "scroll_amount": 3})
    recorder.wait_for(lambda r: len(recorder.records("scroll")) >= 3)
    time.sleep(0.3)
    scrolls = recorder.records("scroll")
    assert [(s["direction"], s["x_root"], s["y_root"]) for s in scrolls] == [(direction, x, y)] * 3
    assert all(s["modifiers"] == [] for s in scrolls)


def test_scroll_with_a_modifier_held(client, recorder):
    x, y = recorder.at(400, 250)
    act(client, {"action": "scroll", "coordinate": [x, y], "scroll_direction": "down", "scroll_amount": 2, "text": "ctrl"})
    recorder.wait_for(lambda r: len(recorder.records("scroll")) >= 2)
    assert [(s["direction"], s["modifiers"]) for s in recorder.records("scroll")] == [("down", ["control"])] * 2


def test_drag_presses_moves_along_the_path_and_releases_at_the_end(client, recorder):
    start, end = recorder.at(100, 100), recorder.at(500, 300)
    act(client, {"action": "left_click_drag", "start_coordinate": list(start), "coordinate": list(end)})
    recorder.wait_for(lambda r: r["type"] == "release")
    (press,) = recorder.records("press")
    (release,) = recorder.records("release")
    assert (press["x_root"], press["y_root"], press["button"]) == (*start, 1)
    assert (release["x_root"], release["y_root"], release["button"]) == (*end, 1)
    motions = recorder.records("motion")
    # Intermediate motion with the button held, on the straight line, moving forward.
    assert len(motions) >= 10
    assert all(m["buttons"] == [1] for m in motions)
    xs = [m["x_root"] for m in motions]
    assert xs == sorted(xs) and start[0] < xs[len(xs) // 2] < end[0]
    for m in motions:
        expected_y = start[1] + (m["x_root"] - start[0]) * (end[1] - start[1]) / (end[0] - start[0])
        assert abs(m["y_root"] - expected_y) <= 2


def test_drag_through_a_path(client, recorder):
    a, b, c = recorder.at(100, 100), recorder.at(400, 100), recorder.at(400, 400)
    act(client, {"action": "left_click_drag", "start_coordinate": list(a), "path": [list(b)], "coordinate": list(c)})
    recorder.wait_for(lambda r: r["type"] == "release")
    motions = recorder.records("motion")
    # It went right first (along y = a.y), then down (along x = b.x): an L, not a diagonal.
    assert any(m["y_root"] == a[1] and m["x_root"] > a[0] + 100 for m in motions)
    assert any(m["x_root"] == b[0] and m["y_root"] > b[1] + 100 for m in motions)
    assert (recorder.records("release")[0]["x_root"], recorder.records("release")[0]["y_root"]) == c


def test_mouse_down_move_up_is_a_manual_drag(client, recorder):
    a, b = recorder.at(200, 200), recorder.at(260, 240)
    act(client,
        {"action": "left_mouse_down", "coordinate": list(a)},
        {"action": "mouse_move", "coordinate": list(b)},
        {"action": "left_mouse_up"})
    recorder.wait_for(lambda r: r["type"] == "release")
    assert (recorder.records("press")[0]["x_root"], recorder.records("press")[0]["y_root"]) == a
    assert (recorder.records("release")[0]["x_root"], recorder.records("release")[0]["y_root"]) == b
    assert any(m["buttons"] == [1] for m in recorder.records("motion"))


def test_mouse_move_and_cursor_position(client, recorder):
    x, y = recorder.at(321, 123)
    response = act(client, {"action": "mouse_move", "coordinate": [x, y]}, {"action": "cursor_position"})
    assert (response.results[1].cursor.x, response.results[1].cursor.y) == (x, y)
    assert (client.cursor().x, client.cursor().y) == (x, y)


def key_presses(recorder):
    return [(k["keysym"], k["modifiers"]) for k in recorder.records("key_press")]


def test_key_combo_presses_modifiers_first_and_releases_all(client, recorder):
    act(client, {"action": "key", "text": "ctrl+shift+t"})
    recorder.wait_for(lambda r: r["type"] == "key_release" and r["keysym"] == "Control_L")
    assert key_presses(recorder) == [("Control_L", []), ("Shift_L", ["control"]), ("T", ["control", "shift"])]
    released = [k["keysym"] for k in recorder.records("key_release")]
    assert released == ["T", "Shift_L", "Control_L"]


@pytest.mark.parametrize("text,keysym", [
    ("Return", "Return"), ("enter", "Return"), ("esc", "Escape"), ("pgdn", "Next"),
    ("Page_Up", "Prior"), ("F5", "F5"), ("tab", "Tab"), ("KP_0", "KP_0"), ("BackSpace", "BackSpace"),
])
def test_key_names_and_aliases(client, recorder, text, keysym):
    act(client, {"action": "key", "text": text})
    recorder.wait_for(lambda r: r["type"] == "key_release")
    assert key_presses(recorder)[-1][0] == keysym


def test_key_repeat(client, recorder):
    act(client, {"action": "key", "text": "Down", "repeat": 5})
    recorder.wait_for(lambda r: len(recorder.records("key_release")) >= 5)
    time.sleep(0.2)
    assert key_presses(recorder) == [("Down", [])] * 5


def test_hold_key_holds_for_the_duration(client, recorder):
    act(client, {"action": "hold_key", "text": "shift", "duration": 0.5})
    recorder.wait_for(lambda r: r["type"] == "key_release")
    (press,), (release,) = recorder.records("key_press"), recorder.records("key_release")
    assert press["keysym"] == release["keysym"] == "Shift_L"
    held_ms = release["time"] - press["time"]
    assert 450 <= held_ms <= 2000


def test_typing_reaches_the_window_as_keysyms(client, recorder):
    act(client, {"action": "type", "text": "aZ9 é中"})
    recorder.wait_for(lambda r: r["type"] == "key_press" and r["char"] == "中")
    typed = [k for k in recorder.records("key_press") if k["keysym"] != "Shift_L"]
    assert "".join(k["char"] for k in typed) == "aZ9 é中"
    # Shift exactly around the capital and nowhere else.
    assert [k["modifiers"] for k in typed] == [[], ["shift"], [], [], [], []]
