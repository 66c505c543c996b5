#!/usr/bin/env python3
"""Input recorder: a Tk window that logs exactly what input reached it.

Integration tests use this program as an independent witness: the service
injects clicks, keys, scrolls and drags, and this window writes down what the
X server actually delivered to it.  Standard library only (tkinter).

Command line::

    python tests/apps/recorder.py --log PATH [--geometry WxH+X+Y]
        [--title TITLE] [--mode record|redraw] [--bare]
        [--steps N] [--interval-ms MS]

``--geometry`` defaults to ``640x480+100+100``; ``--title`` to
``cubicle-recorder``.  By default the window is a normal toplevel, managed
(and decorated, possibly moved) by the window manager; ``--bare`` makes it
override-redirect instead.  Either way the canvas fills the whole client
area and has no border, so canvas coordinates equal window coordinates.

Log format
----------
PATH is opened in append mode and receives one JSON object per line, written,
flushed and fsync'd before the next event is handled.  Every record has
``type`` and ``t`` (``time.monotonic()`` of this process).  Records that come
from an X event also carry ``time``, the X server timestamp in milliseconds.

``modifiers`` is the sorted list of modifier names set in the X event state,
using the X names: ``shift``, ``lock``, ``control``, ``mod1`` (Alt on the
usual keymaps), ``mod2`` (NumLock), ``mod3``, ``mod4`` (Super), ``mod5``.
``buttons`` is the sorted list of pointer buttons (1..5) held.  As in X, both
describe the state *just before* the event: the press of button 1 does not
list button 1, its release does; pressing Shift_L does not list ``shift``,
releasing it does.

``ready``
    Written once, when the window is mapped, viewable and its position has
    stopped changing.  ``root_x``/``root_y`` are the root-window coordinates
    of the canvas's top-left pixel, ``width``/``height`` its size, so a click
    at ``(root_x + x, root_y + y)`` lands on canvas pixel ``(x, y)``.  Under
    a decorating window manager these differ from the requested ``+X+Y``
    (openbox puts the client area 1 px right of and 20 px below it).
    ``window_id`` is the X id of Tk's wrapper window: the client window the
    window manager manages, carrying the title and ``WM_CLASS``; what
    ``xdotool search --name`` finds and ``_NET_ACTIVE_WINDOW`` names.
    ``frame_id`` is what ``wm frame`` answers (the window manager's
    decoration frame once reparented), ``toplevel_id`` the Tk toplevel's
    own window (a child of the wrapper), ``canvas_window_id`` the canvas's.
    ``motion_collapse`` is false when Tk's merging of queued motion events
    was switched off (see ``motion``)::

        {"type": "ready", "t": 12.3, "window_id": 4194325,
         "frame_id": 2098469, "toplevel_id": 4194324,
         "canvas_window_id": 4194326, "root_x": 101, "root_y": 120,
         "width": 640, "height": 480, "mode": "record",
         "title": "cubicle-recorder", "motion_collapse": false, "pid": 4242}

``configure``
    After ``ready``, each time the canvas's root position or size changes
    (same fields as ``ready`` minus the ids).

``press`` / ``release``
    Pointer buttons 1, 2, 3 and 8 and up (wheel buttons 4..7 only produce
    ``scroll`` records)::

        {"type": "press", "t": 13.0, "time": 5051299, "button": 1,
         "x_root": 200, "y_root": 200, "x": 99, "y": 79,
         "modifiers": ["shift"], "buttons": []}

``motion``
    Pointer motion while at least one of buttons 1..5 is held (hover
    without a button is not logged), so a drag's path is visible.  During
    a drag the canvas keeps receiving motion even outside the window, so
    ``x``/``y`` may be negative or beyond the size::

        {"type": "motion", "t": 13.1, "time": 5051320, "x_root": 250,
         "y_root": 210, "x": 149, "y": 89, "modifiers": [], "buttons": [1]}

    Tk normally merges motion events that are queued together into the
    last one; the recorder turns that off, so every MotionNotify the X
    server delivers becomes a record.  The X server itself still merges
    consecutive motions while the pointer is frozen, which happens when a
    window manager holds a synchronous grab on the button press (openbox
    does, for click-to-focus): a drag whose moves are sent within a
    millisecond or two of the press may lose its intermediate points under
    a window manager, for this window as for any other.  Use ``--bare`` or
    pace the moves when every point matters.

``scroll``
    Exactly one record per wheel click, with ``direction`` ``up``,
    ``down``, ``left`` or ``right`` and the X ``button`` (4, 5, 6, 7)::

        {"type": "scroll", "t": 13.5, "time": 5051617, "direction": "up",
         "button": 4, "x_root": 200, "y_root": 200, "x": 99, "y": 79,
         "modifiers": []}

    Tk 8.6 on X11 delivers a wheel click as a ButtonPress/ButtonRelease pair
    of button 4 or 5 and generates no ``<MouseWheel>`` event; it rewrites
    X buttons 6 and 7 to 4 and 5 and toggles Shift in the state, so at
    press time "Shift + button 4" and "button 6" look the same.  The X
    server includes Button4Mask/Button5Mask in the state of a real 4/5
    release and has no mask for 6/7, so the record is written at the
    release, where the two can be told apart; its ``modifiers`` are the
    modifiers really held.  Other Tk versions handle the wheel differently,
    so the recorder refuses to start unless it runs on Tk 8.6 under X11.

``key_press`` / ``key_release``
    ``keysym`` is Tk's keysym name, ``keysym_num`` its number, ``keycode``
    the X keycode, ``char`` the character Tk translated the key to (``""``
    for keys such as Shift_L, ``"\\u0001"`` for Ctrl+a, ``"é"`` for
    eacute).  The keysym is looked up when Tk handles the event, with the
    keymap in force then: a client that types a character by remapping a
    spare keycode for a moment (``xdotool type 'é'`` does) may have restored
    the map before the release is handled, which then reads
    ``"keysym": "??", "keysym_num": 0``::

        {"type": "key_press", "t": 14.0, "time": 5052000, "keysym": "a",
         "keysym_num": 97, "keycode": 38, "char": "\\u0001",
         "x_root": 200, "y_root": 200, "modifiers": ["control"]}

``redraw_step`` / ``redraw_done`` (``--mode redraw`` only, see below)::

        {"type": "redraw_step", "t": 15.0, "click": 1, "step": 2,
         "color": "#0000ff"}
        {"type": "redraw_done", "t": 15.3, "click": 1, "step": 4,
         "color": "#00ff00"}

``exit``
    Written on SIGTERM/SIGINT or when the window is closed, with ``reason``.

Keyboard focus: the canvas takes focus when the window is mapped, whenever
the toplevel receives focus, and on every press of buttons 1..3
(``focus_force``; with ``--bare`` the X focus is also set on the wrapper
window, which Tk never does for an override-redirect window); key events are
recorded whichever of the toplevel and the canvas has the focus. No Tk
default bindings apply (Tab, Alt+key, F10 ... do nothing but get logged).

What the record window looks like
---------------------------------
Canvas background white ``#ffffff``.  Light grey (``#d0d0d0``) grid lines
one pixel wide at every canvas x and y that is a multiple of 50, and small
grey coordinate labels near every multiple of 100; the title in black
in the middle.  Four solid 40x40 corner squares, drawn on top of the grid,
in pure colours (exact in a 24-bit screenshot; the grid, labels and text
are not, because of antialiasing):

* top-left     canvas pixels x 0..39,        y 0..39:        red     #ff0000
* top-right    x width-40..width-1,          y 0..39:        green   #00ff00
* bottom-left  x 0..39,                      y height-40..height-1:  blue #0000ff
* bottom-right x width-40..width-1,          y height-40..height-1:  magenta #ff00ff

After each press of buttons 1..3 an orange (``#ff8000``) 9x9 square is
drawn centred on the press point (replacing the previous one), so a
screenshot shows where the last click landed.

Redraw mode
-----------
``--mode redraw``: the canvas starts uniform grey ``#808080`` with the word
"idle".  Each left click (button 1 press) starts a sequence of ``--steps``
(default 4) full-canvas repaints spaced ``--interval-ms`` (default 80) apart,
the first painted at once.  Step k (1-based) fills the whole canvas with
one solid colour and draws the number k very large in black in the middle.
Steps 1..N-1 cycle through red #ff0000, blue #0000ff, yellow #ffff00,
cyan #00ffff, magenta #ff00ff, orange #ff8000; the last step is always
green ``#00ff00`` (so the canvas corners are pure green in the final
frame).  A ``redraw_step`` record follows each repaint and ``redraw_done``
follows the last one; each is written only after the repaint has reached the
X server (a round trip after the drawing requests).  A click during a
sequence restarts it from step 1.  Pointer and key events are logged as in
record mode, but no grid, corner squares or click marks are drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
import tkinter as tk

DEFAULT_GEOMETRY = "640x480+100+100"
DEFAULT_TITLE = "cubicle-recorder"

# X event state bits.
MODIFIER_BITS = (
    (0x0001, "shift"),
    (0x0002, "lock"),
    (0x0004, "control"),
    (0x0008, "mod1"),
    (0x0010, "mod2"),
    (0x0020, "mod3"),
    (0x0040, "mod4"),
    (0x0080, "mod5"),
)
BUTTON_BITS = ((0x0100, 1), (0x0200, 2), (0x0400, 3), (0x0800, 4), (0x1000, 5))
SHIFT_MASK = 0x0001
BUTTON_MASK = {4: 0x0800, 5: 0x1000}
ANY_BUTTON_MASK = 0x1F00

# Record-mode drawing.
BACKGROUND = "#ffffff"
GRID_COLOR = "#d0d0d0"
LABEL_COLOR = "#909090"
GRID_STEP = 50
LABEL_STEP = 100
CORNER_SIZE = 40
CORNER_COLORS = {
    "top_left": "#ff0000",
    "top_right": "#00ff00",
    "bottom_left": "#0000ff",
    "bottom_right": "#ff00ff",
}
CLICK_MARK_COLOR = "#ff8000"
CLICK_MARK_SIZE = 9

# Redraw-mode drawing.
REDRAW_IDLE_COLOR = "#808080"
REDRAW_STEP_COLORS = ("#ff0000", "#0000ff", "#ffff00", "#00ffff", "#ff00ff", "#ff8000")
REDRAW_FINAL_COLOR = "#00ff00"

GEOMETRY_RE = re.compile(r"^(\d+)x(\d+)([+-]-?\d+[+-]-?\d+)?$")


_XLIB = None


def _xlib():
    """libX11 through ctypes (loaded once), or None if unavailable."""
    global _XLIB
    if _XLIB is None:
        import ctypes
        import ctypes.util

        try:
            lib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
        except OSError:
            _XLIB = False
            return None
        window = ctypes.c_ulong
        lib.XOpenDisplay.restype = ctypes.c_void_p
        lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
        lib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.XFree.argtypes = [ctypes.c_void_p]
        lib.XQueryTree.restype = ctypes.c_int
        lib.XQueryTree.argtypes = [
            ctypes.c_void_p, window, ctypes.POINTER(window), ctypes.POINTER(window),
            ctypes.POINTER(ctypes.POINTER(window)), ctypes.POINTER(ctypes.c_uint),
        ]
        lib.XSetInputFocus.argtypes = [ctypes.c_void_p, window, ctypes.c_int, ctypes.c_ulong]
        _XLIB = lib
    return _XLIB or None


def x_parent_window(display_name: str, window_id: int) -> int | None:
    """The X parent of ``window_id``, asked of the server through libX11.

    Tk has no command for the parent of a toplevel's own window (its
    wrapper); ``wm frame`` answers with the window manager's frame once the
    window is reparented.  Returns None if libX11 cannot be used.
    """
    import ctypes

    xlib = _xlib()
    if xlib is None:
        return None
    display = xlib.XOpenDisplay(display_name.encode())
    if not display:
        return None
    try:
        window = ctypes.c_ulong
        root, parent = window(), window()
        children = ctypes.POINTER(window)()
        count = ctypes.c_uint()
        ok = xlib.XQueryTree(
            display, window_id, ctypes.byref(root), ctypes.byref(parent),
            ctypes.byref(children), ctypes.byref(count),
        )
        if children:
            xlib.XFree(children)
        return parent.value if ok else None
    finally:
        xlib.XCloseDisplay(display)


def x_set_input_focus(display_name: str, window_id: int) -> bool:
    """Give ``window_id`` the X keyboard focus (RevertToParent, CurrentTime).

    Needed for ``--bare``: Tk never moves the X focus to an override-redirect
    toplevel, so ``focus -force`` alone leaves its keys going elsewhere.
    """
    xlib = _xlib()
    if xlib is None:
        return False
    display = xlib.XOpenDisplay(display_name.encode())
    if not display:
        return False
    try:
        xlib.XSetInputFocus(display, window_id, 2, 0)
        xlib.XSync(display, 0)
        return True
    finally:
        xlib.XCloseDisplay(display)


def disable_motion_collapsing(root: tk.Tk) -> bool:
    """Make Tk deliver every MotionNotify instead of merging queued ones.

    Tk collapses consecutive queued motion events into the last one by
    default, which would hide the intermediate points of a fast drag.  The
    switch, ``Tk_CollapseMotionEvents``, is public C API without a Tcl
    command, so it is called through ctypes.  Returns whether it worked.
    """
    import _tkinter
    import ctypes

    candidates = []
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) >= 6 and os.path.basename(fields[5]).startswith("libtk"):
                    if fields[5] not in candidates:
                        candidates.append(fields[5])
    except OSError:
        pass
    candidates.append(_tkinter.__file__)  # Tk may be linked into _tkinter itself
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            main_window = lib.Tk_MainWindow
            collapse = lib.Tk_CollapseMotionEvents
        except (OSError, AttributeError):
            continue
        main_window.restype = ctypes.c_void_p
        main_window.argtypes = [ctypes.c_void_p]
        collapse.restype = ctypes.c_int
        collapse.argtypes = [ctypes.c_void_p, ctypes.c_int]
        tkwin = main_window(root.tk.interpaddr())
        if not tkwin:
            return False
        # A Tk window starts with its Xlib Display pointer followed by its
        # TkDisplay pointer, and a TkDisplay starts with the Display pointer.
        # Tk 8.6's Tk_CollapseMotionEvents treats its argument as the
        # TkDisplay, so that is what it must be given.  Check the layout
        # before writing through it.
        pointer = ctypes.sizeof(ctypes.c_void_p)
        display = ctypes.c_void_p.from_address(tkwin).value
        tk_display = ctypes.c_void_p.from_address(tkwin + pointer).value
        if not display or not tk_display:
            return False
        if ctypes.c_void_p.from_address(tk_display).value != display:
            return False
        collapse(tk_display, 0)
        return True
    return False


def modifier_names(state: int) -> list[str]:
    return sorted(name for bit, name in MODIFIER_BITS if state & bit)


def held_buttons(state: int) -> list[int]:
    return [num for bit, num in BUTTON_BITS if state & bit]


class EventLog:
    """Append-only JSON-lines file, made durable after every record."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "a", encoding="utf-8")

    def write(self, kind: str, **fields) -> None:
        record = {"type": kind, "t": time.monotonic()}
        record.update(fields)
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class Recorder:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.log = EventLog(args.log)
        self.root = tk.Tk(className="CubicleRecorder")
        if self.root.tk.call("tk", "windowingsystem") != "x11" or tk.TkVersion != 8.6:
            raise SystemExit(
                "recorder.py needs Tk 8.6 under X11 (wheel events are decoded "
                f"for that combination); found Tk {tk.TkVersion} on "
                f"{self.root.tk.call('tk', 'windowingsystem')}"
            )
        self.motion_collapse = not disable_motion_collapsing(self.root)
        self.root.title(args.title)
        if args.bare:
            self.root.overrideredirect(True)
        self.root.geometry(args.geometry)
        width, height = (int(v) for v in GEOMETRY_RE.match(args.geometry).groups()[:2])
        self.canvas = tk.Canvas(
            self.root,
            width=width,
            height=height,
            background=REDRAW_IDLE_COLOR if args.mode == "redraw" else BACKGROUND,
            highlightthickness=0,
            borderwidth=0,
            takefocus=1,
        )
        self.canvas.pack(fill="both", expand=True)
        self.root.protocol("WM_DELETE_WINDOW", lambda: self.stop("window closed"))

        self.ready = False
        self.wrapper_id: int | None = None
        self.geometry: tuple[int, int, int, int] | None = None
        self.stable_polls = 0
        self.stop_reason: str | None = None
        self.click_count = 0
        self.redraw_job: str | None = None

        # Tk's "all" bindtag carries <Alt-Key> (menu traversal), <Tab>,
        # <<PrevWindow>> and F10 bindings; being more specific than a plain
        # <KeyPress>, they would take those keys away from a handler on
        # "all" and move the focus.  So neither widget has the "all" (or a
        # class) tag: keys go through a private tag on both, because the
        # focus can be on either.
        key_tag = "RecorderKeys"
        self.root.bindtags((str(self.root), key_tag))
        self.canvas.bindtags((str(self.canvas), key_tag))
        self.root.bind_class(key_tag, "<KeyPress>", lambda e: self.on_key("key_press", e))
        self.root.bind_class(key_tag, "<KeyRelease>", lambda e: self.on_key("key_release", e))
        self.canvas.bind("<ButtonPress>", self.on_press)
        self.canvas.bind("<ButtonRelease>", self.on_release)
        self.canvas.bind("<Motion>", self.on_motion)
        self.canvas.bind("<Map>", self.on_map)
        self.root.bind("<FocusIn>", self.on_focus_in)
        self.canvas.bind("<Configure>", self.on_configure)
        self.root.bind("<Configure>", self.on_configure)

        if args.mode == "redraw":
            self.draw_redraw_idle()
        else:
            self.draw_record_scene(width, height)

    # ----------------------------------------------------------- drawing
    def draw_record_scene(self, width: int, height: int) -> None:
        c = self.canvas
        c.delete("scene")
        for x in range(0, width, GRID_STEP):
            c.create_line(x, 0, x, height, fill=GRID_COLOR, width=1, tags="scene")
        for y in range(0, height, GRID_STEP):
            c.create_line(0, y, width, y, fill=GRID_COLOR, width=1, tags="scene")
        for x in range(0, width, LABEL_STEP):
            for y in range(0, height, LABEL_STEP):
                if (x, y) == (0, 0):
                    continue
                c.create_text(
                    x + 3, y + 2, text=f"{x},{y}", anchor="nw", fill=LABEL_COLOR,
                    font=("Helvetica", 8), tags="scene",
                )
        c.create_text(
            width // 2, height // 2, text=self.args.title, fill="#000000",
            font=("Helvetica", 16, "bold"), tags="scene",
        )
        s = CORNER_SIZE
        corners = {
            "top_left": (0, 0),
            "top_right": (width - s, 0),
            "bottom_left": (0, height - s),
            "bottom_right": (width - s, height - s),
        }
        for name, (x0, y0) in corners.items():
            # With no outline a rectangle fills x0..x0+s-1, y0..y0+s-1.
            c.create_rectangle(
                x0, y0, x0 + s, y0 + s, fill=CORNER_COLORS[name], outline="",
                tags="scene",
            )
        c.tag_raise("click_mark")

    def draw_click_mark(self, x: int, y: int) -> None:
        half = CLICK_MARK_SIZE // 2
        self.canvas.delete("click_mark")
        self.canvas.create_rectangle(
            x - half, y - half, x + half + 1, y + half + 1,
            fill=CLICK_MARK_COLOR, outline="", tags="click_mark",
        )

    def draw_redraw_idle(self) -> None:
        self.canvas.delete("all")
        self.canvas.configure(background=REDRAW_IDLE_COLOR)
        self.canvas.create_text(
            10, 10, text="idle", anchor="nw", fill="#000000", font=("Helvetica", 14)
        )

    # ---------------------------------------------------------- geometry
    def current_geometry(self) -> tuple[int, int, int, int]:
        c = self.canvas
        return (c.winfo_rootx(), c.winfo_rooty(), c.winfo_width(), c.winfo_height())

    def take_focus(self) -> None:
        if self.args.bare:
            if self.wrapper_id is None:
                self.wrapper_id = x_parent_window(self.root.winfo_screen(), self.root.winfo_id())
            if self.wrapper_id is not None:
                x_set_input_focus(self.root.winfo_screen(), self.wrapper_id)
        self.canvas.focus_force()

    def on_map(self, _event) -> None:
        self.take_focus()
        if not self.ready:
            self.root.after(30, self.poll_ready)

    def poll_ready(self) -> None:
        if self.ready or self.stop_reason:
            return
        if not self.canvas.winfo_viewable():
            self.stable_polls = 0
            self.root.after(30, self.poll_ready)
            return
        geometry = self.current_geometry()
        if geometry == self.geometry:
            self.stable_polls += 1
        else:
            self.geometry = geometry
            self.stable_polls = 0
        # Wait until the window manager has stopped moving/resizing it.
        if self.stable_polls < 3:
            self.root.after(30, self.poll_ready)
            return
        self.ready = True
        root_x, root_y, width, height = geometry
        frame_id = int(self.root.wm_frame(), 16)
        toplevel_id = self.root.winfo_id()
        wrapper_id = self.wrapper_id = x_parent_window(self.root.winfo_screen(), toplevel_id)
        self.take_focus()
        self.log.write(
            "ready",
            window_id=wrapper_id if wrapper_id is not None else frame_id,
            frame_id=frame_id,
            toplevel_id=toplevel_id,
            canvas_window_id=self.canvas.winfo_id(),
            root_x=root_x,
            root_y=root_y,
            width=width,
            height=height,
            mode=self.args.mode,
            title=self.args.title,
            motion_collapse=self.motion_collapse,
            pid=os.getpid(),
        )

    def on_configure(self, _event) -> None:
        if not self.ready:
            return
        # Let Tk finish processing the configuration before reading it.
        self.root.after_idle(self.check_geometry)

    def check_geometry(self) -> None:
        geometry = self.current_geometry()
        if geometry == self.geometry:
            return
        self.geometry = geometry
        root_x, root_y, width, height = geometry
        self.log.write("configure", root_x=root_x, root_y=root_y, width=width, height=height)
        if self.args.mode == "record":
            self.draw_record_scene(width, height)

    def on_focus_in(self, _event) -> None:
        if self.root.focus_get() is not self.canvas:
            self.canvas.focus_set()

    # ------------------------------------------------------------ pointer
    @staticmethod
    def pointer_fields(event) -> dict:
        return {
            "time": event.time,
            "x_root": event.x_root,
            "y_root": event.y_root,
            "x": event.x,
            "y": event.y,
        }

    def on_press(self, event) -> None:
        if event.num in (4, 5):
            # Wheel: logged at the release, see the module docstring.
            return
        self.log.write(
            "press",
            button=event.num,
            **self.pointer_fields(event),
            modifiers=modifier_names(event.state),
            buttons=held_buttons(event.state),
        )
        if event.num in (1, 2, 3):
            self.take_focus()
            if self.args.mode == "record":
                self.draw_click_mark(event.x, event.y)
        if event.num == 1 and self.args.mode == "redraw":
            self.start_redraw()

    def on_release(self, event) -> None:
        if event.num in (4, 5):
            if event.state & BUTTON_MASK[event.num]:
                # A real X button 4/5: vertical wheel.
                button = event.num
                direction = "up" if button == 4 else "down"
                state = event.state
            else:
                # X button 6/7, which Tk 8.6 turned into 4/5 with Shift toggled.
                button = event.num + 2
                direction = "left" if button == 6 else "right"
                state = event.state ^ SHIFT_MASK
            self.log.write(
                "scroll",
                direction=direction,
                button=button,
                **self.pointer_fields(event),
                modifiers=modifier_names(state),
            )
            return
        self.log.write(
            "release",
            button=event.num,
            **self.pointer_fields(event),
            modifiers=modifier_names(event.state),
            buttons=held_buttons(event.state),
        )

    def on_motion(self, event) -> None:
        if not event.state & ANY_BUTTON_MASK:
            return
        self.log.write(
            "motion",
            **self.pointer_fields(event),
            modifiers=modifier_names(event.state),
            buttons=held_buttons(event.state),
        )

    # ----------------------------------------------------------- keyboard
    def on_key(self, kind: str, event) -> None:
        self.log.write(
            kind,
            time=event.time,
            keysym=event.keysym,
            keysym_num=event.keysym_num,
            keycode=event.keycode,
            char=event.char,
            x_root=event.x_root,
            y_root=event.y_root,
            modifiers=modifier_names(event.state),
        )

    # ------------------------------------------------------------- redraw
    def start_redraw(self) -> None:
        if self.redraw_job is not None:
            self.root.after_cancel(self.redraw_job)
            self.redraw_job = None
        self.click_count += 1
        self.redraw_step(self.click_count, 1)

    def redraw_step(self, click: int, step: int) -> None:
        self.redraw_job = None
        steps = self.args.steps
        if step == steps:
            color = REDRAW_FINAL_COLOR
        else:
            color = REDRAW_STEP_COLORS[(step - 1) % len(REDRAW_STEP_COLORS)]
        c = self.canvas
        c.delete("all")
        c.configure(background=color)
        width, height = c.winfo_width(), c.winfo_height()
        # A rectangle as well as the background, so the colour change is one
        # repaint of the whole area whatever Tk decides to redraw.
        c.create_rectangle(0, 0, width, height, fill=color, outline="")
        size = max(12, min(width, height) // 2)
        c.create_text(
            width // 2, height // 2, text=str(step), fill="#000000",
            font=("Helvetica", -size, "bold"),
        )
        c.update_idletasks()
        # A round trip: when the reply arrives the server has executed every
        # drawing request sent before it.
        c.winfo_pointerxy()
        self.log.write("redraw_step", click=click, step=step, color=color)
        if step == steps:
            self.log.write("redraw_done", click=click, step=step, color=color)
        else:
            self.redraw_job = self.root.after(
                self.args.interval_ms, self.redraw_step, click, step + 1
            )

    # -------------------------------------------------------------- run
    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.root.quit()

    def tick(self) -> None:
        # Tk's event loop blocks in C; a periodic callback lets Python run
        # pending signal handlers promptly.
        if self.stop_reason is None:
            self.root.after(50, self.tick)

    def run(self) -> None:
        self.root.after(50, self.tick)
        self.root.mainloop()
        self.log.write("exit", reason=self.stop_reason or "mainloop ended")
        self.log.close()
        try:
            self.root.destroy()
        except tk.TclError:
            pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Log the input a Tk window receives.")
    parser.add_argument("--log", required=True, help="JSON-lines file to append to")
    parser.add_argument("--geometry", default=DEFAULT_GEOMETRY, help="WxH+X+Y")
    parser.add_argument("--title", default=DEFAULT_TITLE)
    parser.add_argument("--mode", choices=("record", "redraw"), default="record")
    parser.add_argument(
        "--bare", action="store_true",
        help="override-redirect window, not managed by the window manager",
    )
    parser.add_argument("--steps", type=int, default=4, help="redraw mode: repaints per click")
    parser.add_argument(
        "--interval-ms", type=int, default=80, help="redraw mode: delay between repaints"
    )
    args = parser.parse_args(argv)
    if not GEOMETRY_RE.match(args.geometry):
        parser.error(f"--geometry must look like WxH or WxH+X+Y, got {args.geometry!r}")
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.interval_ms < 0:
        parser.error("--interval-ms must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    recorder = Recorder(args)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda num, _frame: recorder.stop(signal.Signals(num).name))
    recorder.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
