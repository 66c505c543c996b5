"""HumanInputRecorder: a human's RFB input -> computer-tool actions. Pure: fake clock, no X."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter
from Xlib import XK

from cubicle.actions import Action
from cubicle.agent import takeover
from cubicle.agent.takeover import HumanInputRecorder, describe
from cubicle.imaging import from_screen
from cubicle.x11 import char_to_keysym, parse_key_sequence

LEFT, MIDDLE, RIGHT = 1, 2, 4
WHEEL_UP, WHEEL_DOWN, WHEEL_LEFT, WHEEL_RIGHT = 8, 16, 32, 64
VALID_ACTION = TypeAdapter(Action)


def ks(name: str) -> int:
    return XK.string_to_keysym(name)


class Human:
    """Drives a recorder the way the viewer would, on a clock the test moves."""

    def __init__(self, screen=(1280, 800), space=(1280, 800)):
        self.now = 100.0
        self.actions: list[dict] = []
        self.recorder = HumanInputRecorder(screen, space, self._record, clock=lambda: self.now)
        self.buttons = 0
        self.x = self.y = 0

    def _record(self, action: dict) -> None:
        # Whatever comes out must be a valid tool input the desktop accepts, with a description.
        VALID_ACTION.validate_python(action)
        if action["action"] == "key":
            parse_key_sequence(action["text"])
        assert describe(action)
        self.actions.append(action)

    def wait(self, seconds: float) -> None:
        self.now += seconds
        self.recorder.tick()

    def move(self, x: int, y: int) -> None:
        self.x, self.y = x, y
        self.recorder.feed("pointer", {"x": x, "y": y, "buttons": self.buttons})

    def press(self, button: int = LEFT) -> None:
        self.buttons |= button
        self.move(self.x, self.y)

    def release(self, button: int = LEFT) -> None:
        self.buttons &= ~button
        self.move(self.x, self.y)

    def click(self, x: int, y: int, button: int = LEFT) -> None:
        self.move(x, y)
        self.press(button)
        self.release(button)

    def wheel(self, bit: int, notches: int = 1) -> None:
        for _ in range(notches):
            self.press(bit)
            self.release(bit)

    def down(self, keysym: int, kind: str = "key") -> None:
        fields = {"down": True, "keysym": keysym}
        if kind == "qemu_key":
            fields["keycode"] = 30
        self.recorder.feed(kind, fields)

    def up(self, keysym: int) -> None:
        self.recorder.feed("key", {"down": False, "keysym": keysym})

    def tap(self, keysym: int, kind: str = "key") -> None:
        self.down(keysym, kind)
        self.up(keysym)

    def type(self, text: str) -> None:
        for char in text:
            self.tap(ord(char) if ord(char) <= 0xFF else 0x01000000 + ord(char))

    def combo(self, modifiers: list[str], keysym: int) -> None:
        for name in modifiers:
            self.down(ks(name))
        self.tap(keysym)
        for name in reversed(modifiers):
            self.up(ks(name))

    def flush(self) -> list[dict]:
        self.recorder.flush()
        return self.actions


@pytest.fixture
def human() -> Human:
    return Human()


# -- clicks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("button,name", [(LEFT, "left_click"), (MIDDLE, "middle_click"), (RIGHT, "right_click")])
def test_press_and_release_in_place_is_a_click(human, button, name):
    human.click(120, 340, button)
    assert human.flush() == [{"action": name, "coordinate": [120, 340]}]


def test_release_within_slop_is_still_a_click_at_the_press_point(human):
    human.move(50, 60)
    human.press()
    human.move(53, 62)  # 3.6 px
    human.release()
    assert human.flush() == [{"action": "left_click", "coordinate": [50, 60]}]


def test_right_click_is_emitted_at_release_without_waiting(human):
    human.click(10, 20, RIGHT)
    assert human.actions == [{"action": "right_click", "coordinate": [10, 20]}]


def test_left_click_waits_for_the_multi_click_window(human):
    human.click(10, 20)
    human.wait(0.3)
    assert human.actions == [] and human.recorder.pending
    human.wait(0.2)
    assert human.actions == [{"action": "left_click", "coordinate": [10, 20]}]
    assert not human.recorder.pending


def test_flush_emits_a_waiting_click_at_once(human):
    human.click(10, 20)
    human.recorder.flush()
    assert human.actions == [{"action": "left_click", "coordinate": [10, 20]}]


@pytest.mark.parametrize("count,name", [(2, "double_click"), (3, "triple_click")])
def test_quick_clicks_in_place_merge(human, count, name):
    for index in range(count):
        human.click(200 + index, 100)  # a hand is never perfectly still
        human.wait(0.25)
    human.wait(1.0)
    assert human.actions == [{"action": name, "coordinate": [200, 100]}]


def test_triple_click_is_emitted_at_once_and_a_fourth_starts_over(human):
    for _ in range(3):
        human.click(200, 100)
    assert human.actions == [{"action": "triple_click", "coordinate": [200, 100]}]
    human.click(200, 100)
    assert human.flush()[1:] == [{"action": "left_click", "coordinate": [200, 100]}]


def test_slow_clicks_stay_single_even_without_ticks(human):
    human.click(200, 100)
    human.now += 0.6  # no tick in between: the time alone decides
    human.click(200, 100)
    assert human.flush() == [{"action": "left_click", "coordinate": [200, 100]}] * 2


def test_clicks_apart_are_not_a_double_click(human):
    human.click(200, 100)
    human.click(210, 100)
    assert human.flush() == [
        {"action": "left_click", "coordinate": [200, 100]},
        {"action": "left_click", "coordinate": [210, 100]},
    ]


def test_second_press_held_past_the_window_still_makes_a_double_click(human):
    human.click(200, 100)
    human.wait(0.2)
    human.press()
    human.wait(0.5)  # a tick while the second press is held must not emit the first click
    assert human.actions == []
    human.release()
    assert human.flush() == [{"action": "double_click", "coordinate": [200, 100]}]


def test_right_click_is_never_merged_into_a_double_click(human):
    human.click(200, 100, RIGHT)
    human.click(200, 100, RIGHT)
    assert human.flush() == [{"action": "right_click", "coordinate": [200, 100]}] * 2


# -- drags ------------------------------------------------------------------------------------


def test_press_move_release_is_a_drag(human):
    human.move(10, 10)
    human.press()
    for x in range(12, 200, 20):
        human.move(x, 10 + x // 2)
    human.move(200, 120)
    human.release()
    assert human.actions == [{"action": "left_click_drag", "start_coordinate": [10, 10], "coordinate": [200, 120]}]


def test_a_drag_that_comes_back_to_its_start_is_still_a_drag(human):
    human.move(10, 10)
    human.press()
    human.move(60, 10)
    human.move(11, 10)
    human.release()
    assert human.flush() == [{"action": "left_click_drag", "start_coordinate": [10, 10], "coordinate": [11, 10]}]


def test_drag_after_a_quick_click_emits_the_click_first(human):
    human.click(10, 10)
    human.press()
    human.move(100, 10)
    human.release()
    assert human.actions == [
        {"action": "left_click", "coordinate": [10, 10]},
        {"action": "left_click_drag", "start_coordinate": [10, 10], "coordinate": [100, 10]},
    ]


def test_right_button_drag_is_a_right_click_at_the_press_point(human):
    human.move(30, 40)
    human.press(RIGHT)
    human.move(90, 40)
    human.release(RIGHT)
    assert human.flush() == [{"action": "right_click", "coordinate": [30, 40]}]


def test_a_button_already_down_in_the_first_message_is_a_press():
    human = Human()
    human.recorder.feed("pointer", {"x": 5, "y": 5, "buttons": LEFT})
    human.recorder.feed("pointer", {"x": 5, "y": 5, "buttons": 0})
    assert human.flush() == [{"action": "left_click", "coordinate": [5, 5]}]


# -- modifiers on pointer actions --------------------------------------------------------------


def test_modifiers_held_during_a_click_go_into_text(human):
    human.down(ks("Shift_L"))
    human.down(ks("Control_R"))
    human.click(10, 20)
    human.up(ks("Control_R"))
    human.up(ks("Shift_L"))
    assert human.flush() == [{"action": "left_click", "coordinate": [10, 20], "text": "ctrl+shift"}]


@pytest.mark.parametrize("names,text", [
    (["Alt_L"], "alt"), (["Meta_L"], "alt"), (["Super_L"], "super"), (["Hyper_R"], "super"),
    (["Super_R", "Alt_R", "Shift_R", "Control_L"], "ctrl+alt+shift+super"),
])
def test_modifier_names_and_order(human, names, text):
    for name in names:
        human.down(ks(name))
    human.click(10, 20, RIGHT)
    assert human.actions == [{"action": "right_click", "coordinate": [10, 20], "text": text}]


def test_modifiers_are_those_at_the_press(human):
    human.down(ks("Control_L"))
    human.move(10, 20)
    human.press()
    human.up(ks("Control_L"))
    human.release()
    assert human.flush() == [{"action": "left_click", "coordinate": [10, 20], "text": "ctrl"}]


def test_ctrl_click_and_plain_click_do_not_merge(human):
    human.down(ks("Control_L"))
    human.click(10, 20)
    human.up(ks("Control_L"))
    human.click(10, 20)
    assert human.flush() == [
        {"action": "left_click", "coordinate": [10, 20], "text": "ctrl"},
        {"action": "left_click", "coordinate": [10, 20]},
    ]


def test_shift_drag_carries_the_modifier(human):
    human.down(ks("Shift_L"))
    human.move(10, 10)
    human.press()
    human.move(50, 10)
    human.release()
    assert human.actions == [
        {"action": "left_click_drag", "start_coordinate": [10, 10], "coordinate": [50, 10], "text": "shift"}
    ]


def test_ctrl_scroll_carries_the_modifier(human):
    human.move(300, 200)
    human.down(ks("Control_L"))
    human.wheel(WHEEL_UP, 2)
    assert human.flush() == [
        {"action": "scroll", "coordinate": [300, 200], "scroll_direction": "up", "scroll_amount": 2, "text": "ctrl"}
    ]


def test_altgr_is_not_a_modifier(human):
    human.down(ks("ISO_Level3_Shift"))
    human.tap(ord("@"))
    human.click(5, 5, RIGHT)
    human.up(ks("ISO_Level3_Shift"))
    assert human.flush() == [{"action": "type", "text": "@"}, {"action": "right_click", "coordinate": [5, 5]}]


# -- wheel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("bit,direction", [
    (WHEEL_UP, "up"), (WHEEL_DOWN, "down"), (WHEEL_LEFT, "left"), (WHEEL_RIGHT, "right"),
])
def test_wheel_notches_merge_into_one_scroll(human, bit, direction):
    human.move(500, 400)
    human.wheel(bit, 3)
    assert human.flush() == [
        {"action": "scroll", "coordinate": [500, 400], "scroll_direction": direction, "scroll_amount": 3}
    ]


def test_scroll_is_emitted_half_a_second_after_the_last_notch(human):
    human.move(500, 400)
    for _ in range(4):
        human.wheel(WHEEL_DOWN)
        human.wait(0.3)  # each notch keeps the group open
    assert human.actions == []
    human.wait(0.3)
    assert human.actions == [{"action": "scroll", "coordinate": [500, 400], "scroll_direction": "down", "scroll_amount": 4}]


def test_scroll_direction_change_splits(human):
    human.move(500, 400)
    human.wheel(WHEEL_DOWN, 2)
    human.wheel(WHEEL_UP)
    assert human.flush() == [
        {"action": "scroll", "coordinate": [500, 400], "scroll_direction": "down", "scroll_amount": 2},
        {"action": "scroll", "coordinate": [500, 400], "scroll_direction": "up", "scroll_amount": 1},
    ]


def test_scroll_drifting_a_little_merges_but_elsewhere_splits(human):
    human.move(500, 400)
    human.wheel(WHEEL_DOWN)
    human.move(505, 408)  # drift within SCROLL_SLOP
    human.wheel(WHEEL_DOWN)
    human.move(900, 100)  # another pane
    human.wheel(WHEEL_DOWN)
    assert human.flush() == [
        {"action": "scroll", "coordinate": [500, 400], "scroll_direction": "down", "scroll_amount": 2},
        {"action": "scroll", "coordinate": [900, 100], "scroll_direction": "down", "scroll_amount": 1},
    ]


def test_long_scroll_is_split_at_the_tool_limit(human):
    human.move(10, 10)
    human.wheel(WHEEL_DOWN, takeover.MAX_SCROLL_AMOUNT + 5)
    assert [action["scroll_amount"] for action in human.flush()] == [takeover.MAX_SCROLL_AMOUNT, 5]


# -- pointer motion ---------------------------------------------------------------------------


def test_motion_alone_is_only_a_mouse_move_at_flush(human):
    for x in range(0, 400, 10):
        human.move(x, x // 2)
    human.wait(5)
    assert human.actions == []
    assert human.recorder.pending
    assert human.flush() == [{"action": "mouse_move", "coordinate": [390, 195]}]
    assert not human.recorder.pending


def test_no_mouse_move_when_the_last_input_was_not_motion(human):
    human.move(300, 300)
    human.click(10, 10)
    human.move(600, 600)
    human.tap(ord("a"))
    assert human.flush() == [{"action": "left_click", "coordinate": [10, 10]}, {"action": "type", "text": "a"}]


def test_motion_after_a_click_ends_with_a_mouse_move(human):
    human.click(10, 10)
    human.move(600, 500)
    assert human.flush() == [
        {"action": "left_click", "coordinate": [10, 10]},
        {"action": "mouse_move", "coordinate": [600, 500]},
    ]


def test_a_tremor_after_a_click_is_not_a_mouse_move(human):
    human.click(10, 10)
    human.move(12, 11)
    assert human.flush() == [{"action": "left_click", "coordinate": [10, 10]}]


# -- keys -------------------------------------------------------------------------------------


def test_printable_keys_accumulate_into_one_type(human):
    human.type("Hello, world!")
    assert human.actions == []
    assert human.flush() == [{"action": "type", "text": "Hello, world!"}]


def test_shift_is_folded_into_the_keysym(human):
    human.down(ks("Shift_L"))
    human.tap(ord("H"))
    human.up(ks("Shift_L"))
    human.type("i")
    assert human.flush() == [{"action": "type", "text": "Hi"}]


def test_non_ascii_text(human):
    human.tap(0xE9)  # eacute, Latin-1
    human.tap(0xDF)  # ssharp, Latin-1
    human.tap(0x01000000 + ord("漢"))  # Unicode keysym
    human.type(" €")  # U+20AC as a Unicode keysym
    assert human.flush() == [{"action": "type", "text": "éß漢 €"}]


def test_legacy_keysyms_from_the_viewer_are_text(human):
    # noVNC is a package of the desktop (desktop/packages.txt), so its table is there.
    assert takeover.NOVNC_KEYSYMDEF.is_file()
    # noVNC sends these legacy keysyms for Ж, а (Cyrillic), λ and €, not 0x01000000 + cp.
    for keysym in (0x06F6, 0x06C1, 0x07EB, 0x20AC):
        human.tap(keysym)
    assert human.flush() == [{"action": "type", "text": "\u0416\u0430\u03bb\u20ac"}]


def test_text_group_ends_after_a_second_without_characters(human):
    human.type("ab")
    human.wait(0.9)
    human.type("c")
    human.wait(0.9)
    assert human.actions == []
    human.wait(0.2)
    assert human.actions == [{"action": "type", "text": "abc"}]
    human.type("d")
    assert human.flush() == [{"action": "type", "text": "abc"}, {"action": "type", "text": "d"}]


def test_long_text_is_split_at_the_tool_limit(human):
    human.type("ab" * (takeover.MAX_TYPE_CHARS // 2) + "cd")
    assert [action["text"] for action in human.flush()] == ["ab" * (takeover.MAX_TYPE_CHARS // 2), "cd"]


def test_key_repeat_counts_every_press(human):
    for _ in range(3):
        human.down(ord("x"))
    human.up(ord("x"))
    for _ in range(2):
        human.down(ks("Down"))
    human.up(ks("Down"))
    assert human.flush() == [{"action": "type", "text": "xxx"}] + [{"action": "key", "text": "Down"}] * 2


def test_qemu_key_events_count_like_key_events(human):
    human.tap(ord("o"), kind="qemu_key")
    human.tap(ord("k"))
    human.tap(ks("Return"), kind="qemu_key")
    assert human.flush() == [{"action": "type", "text": "ok"}, {"action": "key", "text": "Return"}]


@pytest.mark.parametrize("modifiers,key,text", [
    ([], "Return", "Return"),
    ([], "Tab", "Tab"),
    ([], "Escape", "Escape"),
    ([], "Left", "Left"),
    ([], "F5", "F5"),
    ([], "Next", "Page_Down"),
    ([], "Delete", "Delete"),
    ([], "BackSpace", "BackSpace"),
    ([], "KP_Enter", "KP_Enter"),
    (["Control_L"], "s", "ctrl+s"),
    (["Control_L"], "c", "ctrl+c"),
    (["Control_L", "Shift_L"], "T", "ctrl+shift+t"),
    (["Shift_L", "Control_L"], "T", "ctrl+shift+t"),
    (["Alt_L"], "Tab", "alt+Tab"),
    (["Shift_L"], "Tab", "shift+Tab"),
    (["Shift_L", "Super_L", "Alt_L", "Control_L"], "Delete", "ctrl+alt+shift+super+Delete"),
    (["Control_L"], "plus", "ctrl+plus"),
    (["Control_L"], "space", "ctrl+space"),
    (["Control_L"], "KP_Add", "ctrl+KP_Add"),
    (["Super_L"], "e", "super+e"),
    (["Alt_L"], "F4", "alt+F4"),
    (["Control_L", "Shift_L"], "Eacute", "ctrl+shift+é"),  # X has no unambiguous name for é
])
def test_keys_become_key_actions(human, modifiers, key, text):
    human.combo(modifiers, ks(key))
    assert human.flush() == [{"action": "key", "text": text}]
    # The desktop accepts it, and it means the keys that were pressed (a letter in lower case).
    [parsed] = parse_key_sequence(text)
    assert parsed[-1] in (ks(key), ks(key.lower()))
    assert sorted(parsed[:-1]) == sorted(ks(name[:-2] + "_L") for name in modifiers)


def test_every_key_name_means_its_key_to_the_desktop():
    for keysym in takeover._keysym_names():
        name = takeover.key_name(keysym)
        char = takeover.keysym_to_char(keysym)
        lower = char.lower() if char else None
        # A letter with a lower case is named by it (as xdotool does); everything else as itself.
        expected = char_to_keysym(lower) if lower and len(lower) == 1 and lower != char else keysym
        assert parse_key_sequence("ctrl+" + name) == [[ks("Control_L"), expected]], (hex(keysym), name)


def test_ctrl_with_a_unicode_letter_names_the_character(human):
    human.combo(["Control_L"], 0x01000000 + ord("Ж"))
    [action] = human.flush()
    assert action == {"action": "key", "text": "ctrl+ж"}
    assert parse_key_sequence(action["text"]) == [[ks("Control_L"), 0x01000000 + ord("ж")]]


def test_keypad_digits_type_their_characters(human):
    for name in ("KP_1", "KP_2", "KP_Decimal", "KP_5", "KP_Add", "KP_Multiply"):
        human.tap(ks(name))
    assert human.flush() == [{"action": "type", "text": "12.5+*"}]


def test_backspace_ends_the_text_without_editing_it(human):
    human.type("helo")
    human.tap(ks("BackSpace"))
    human.type("lo")
    assert human.flush() == [
        {"action": "type", "text": "helo"},
        {"action": "key", "text": "BackSpace"},
        {"action": "type", "text": "lo"},
    ]


def test_shortcut_ends_the_text_but_modifier_presses_do_not(human):
    human.type("ab")
    human.down(ks("Control_L"))
    human.up(ks("Control_L"))  # a stray tap of ctrl
    human.type("c")
    human.combo(["Control_L"], ord("s"))
    assert human.flush() == [{"action": "type", "text": "abc"}, {"action": "key", "text": "ctrl+s"}]


def test_modifier_taps_alone_record_nothing(human):
    for name in ("Shift_L", "Control_R", "Alt_L", "ISO_Level3_Shift"):
        human.tap(ks(name))
    assert human.flush() == []
    assert not human.recorder.pending


def test_super_tapped_alone_is_a_key(human):
    human.tap(ks("Super_L"))
    assert human.actions == [{"action": "key", "text": "super"}]


def test_super_used_as_a_modifier_is_not_also_a_tap(human):
    human.combo(["Super_L"], ord("e"))
    human.down(ks("Super_L"))
    human.click(5, 5, RIGHT)
    human.up(ks("Super_L"))
    assert human.flush() == [
        {"action": "key", "text": "super+e"},
        {"action": "right_click", "coordinate": [5, 5], "text": "super"},
    ]


def test_clipboard_and_other_messages_record_nothing(human):
    human.recorder.feed("clipboard", {"text": "pasted"})
    human.recorder.feed("clipboard", {"extended": True, "length": 6})
    human.recorder.feed("set_desktop_size", {"width": 800, "height": 600, "screens": []})
    human.recorder.feed("xvp", {"version": 1, "code": 2})
    assert human.flush() == []


def test_unnamed_keysyms_are_dropped(human):
    human.type("a")
    human.tap(0x00FFFFFF)  # VoidSymbol-like: nothing the key action could name
    human.type("b")
    assert human.flush() == [{"action": "type", "text": "ab"}]


# -- ordering and emitting once ----------------------------------------------------------------


def test_a_session_in_order(human):
    human.click(100, 100)  # focus a field
    human.type("cubicle")
    human.tap(ks("Return"))
    human.move(640, 400)
    human.wheel(WHEEL_DOWN, 5)
    human.click(50, 60, RIGHT)
    human.down(ks("Control_L"))
    human.click(70, 80)
    human.up(ks("Control_L"))
    human.type("x")
    human.move(10, 10)
    human.press()
    human.move(300, 10)
    human.release()
    human.move(700, 700)
    assert human.flush() == [
        {"action": "left_click", "coordinate": [100, 100]},
        {"action": "type", "text": "cubicle"},
        {"action": "key", "text": "Return"},
        {"action": "scroll", "coordinate": [640, 400], "scroll_direction": "down", "scroll_amount": 5},
        {"action": "right_click", "coordinate": [50, 60]},
        {"action": "left_click", "coordinate": [70, 80], "text": "ctrl"},
        {"action": "type", "text": "x"},
        {"action": "left_click_drag", "start_coordinate": [10, 10], "coordinate": [300, 10]},
        {"action": "mouse_move", "coordinate": [700, 700]},
    ]


def test_nothing_is_emitted_twice(human):
    human.click(1, 1)
    human.type("hi")
    human.move(400, 300)
    human.wheel(WHEEL_UP, 2)
    human.move(900, 700)
    for _ in range(20):
        human.wait(0.1)
    human.recorder.flush()
    human.recorder.flush()
    human.wait(5)
    assert human.actions == [
        {"action": "left_click", "coordinate": [1, 1]},
        {"action": "type", "text": "hi"},
        {"action": "scroll", "coordinate": [400, 300], "scroll_direction": "up", "scroll_amount": 2},
        {"action": "mouse_move", "coordinate": [900, 700]},
    ]
    assert not human.recorder.pending


def test_an_emit_callback_that_fails_does_not_cause_a_repeat():
    emitted = []

    def emit(action):
        emitted.append(action)
        raise RuntimeError("run log unavailable")

    recorder = HumanInputRecorder((100, 100), (100, 100), emit, clock=lambda: 0.0)
    recorder.feed("key", {"down": True, "keysym": ord("a")})
    with pytest.raises(RuntimeError):
        recorder.flush()
    recorder.flush()
    assert emitted == [{"action": "type", "text": "a"}]


# -- scaling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("screen,space", [((1280, 800), (1024, 640)), ((1366, 768), (1280, 720))])
def test_coordinates_are_in_screenshot_space(screen, space):
    human = Human(screen, space)
    points = [(0, 0), (683, 383), (1000, 700), (screen[0] - 1, screen[1] - 1)]

    def scaled(point):
        return list(from_screen(point[0], point[1], space, screen))

    human.click(*points[0])
    human.click(*points[1], RIGHT)
    human.move(*points[2])
    human.wheel(WHEEL_DOWN)
    human.move(*points[1])
    human.press()
    human.move(*points[3])
    human.release()
    human.move(*points[2])
    assert human.flush() == [
        {"action": "left_click", "coordinate": scaled(points[0])},
        {"action": "right_click", "coordinate": scaled(points[1])},
        {"action": "scroll", "coordinate": scaled(points[2]), "scroll_direction": "down", "scroll_amount": 1},
        {"action": "left_click_drag", "start_coordinate": scaled(points[1]), "coordinate": scaled(points[3])},
        {"action": "mouse_move", "coordinate": scaled(points[2])},
    ]
    # The far corner lands on the far corner of the screenshot, not outside it.
    assert scaled(points[3]) == [space[0] - 1, space[1] - 1]


def test_slop_is_measured_in_screen_pixels():
    # 3 screen px is a click even though the screenshot is half the size, and 5 is a drag.
    human = Human((2560, 1600), (1280, 800))
    human.move(100, 100)
    human.press()
    human.move(103, 100)
    human.release()
    human.move(200, 100)
    human.press()
    human.move(205, 100)
    human.release()
    assert human.flush() == [
        {"action": "left_click", "coordinate": [50, 50]},
        {"action": "left_click_drag", "start_coordinate": [100, 50], "coordinate": [102, 50]},
    ]


# -- describe ---------------------------------------------------------------------------------


@pytest.mark.parametrize("action,line", [
    ({"action": "left_click", "coordinate": [120, 340]}, "left_click at (120, 340)"),
    ({"action": "double_click", "coordinate": [1, 2], "text": "ctrl"}, "double_click at (1, 2) with ctrl"),
    ({"action": "type", "text": "hello"}, 'type "hello"'),
    ({"action": "type", "text": 'a "b"\nç'}, 'type "a \\"b\\"\\nç"'),
    ({"action": "key", "text": "ctrl+s"}, "key ctrl+s"),
    ({"action": "scroll", "coordinate": [500, 400], "scroll_direction": "down", "scroll_amount": 3},
     "scroll down 3 at (500, 400)"),
    ({"action": "scroll", "coordinate": [5, 4], "scroll_direction": "up", "scroll_amount": 1, "text": "ctrl"},
     "scroll up 1 at (5, 4) with ctrl"),
    ({"action": "left_click_drag", "start_coordinate": [10, 10], "coordinate": [200, 120]},
     "left_click_drag from (10, 10) to (200, 120)"),
    ({"action": "mouse_move", "coordinate": [7, 8]}, "mouse_move to (7, 8)"),
    ({"action": "screenshot"}, "screenshot"),
])
def test_describe(action, line):
    assert describe(action) == line
