"""The engine's one entry point: a persistent X connection and everything done through it.

Not thread-safe by design: the server calls it from a single worker thread, which is also
what keeps one batch of actions from interleaving with another.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from Xlib import X
from Xlib import display as xdisplay
from Xlib.error import ConnectionClosedError, DisplayError, XError

from . import pointer
from .apps import Clipboard
from .errors import DisplayUnavailable, X11Error
from .keyboard import Keyboard
from .settle import DamageWatcher, SettleReport
from .shm import ShmGrabber
from .windows import WindowInfo, Windows

if TYPE_CHECKING:
    from Xlib.protocol.rq import Event

_CONNECTION_ERRORS = (ConnectionClosedError, DisplayError, OSError, EOFError)

T = TypeVar("T")


@dataclass(frozen=True)
class CursorSprite:
    x: int  # top-left on the screen (hot spot already subtracted)
    y: int
    width: int
    height: int
    argb: tuple[int, ...]  # premultiplied ARGB, one 32-bit value per pixel
    serial: int


@dataclass(frozen=True)
class Frame:
    """Captured pixels: 4 bytes per pixel in B, G, R, unused order, rows top to bottom."""

    x: int
    y: int
    width: int
    height: int
    pixels: bytes | memoryview  # a memoryview only for the duration of capture_borrowed's `use`
    cursor: CursorSprite | None = None


class _Connection:
    """What belongs to one X connection; thrown away whole when the server goes away."""

    def __init__(self, name: str):
        self.display = xdisplay.Display(name)
        self.grabber: ShmGrabber | None = None
        try:
            self._set_up()
        except Exception:
            self.close()  # nothing half-built may outlive a failed connect
            raise

    def _set_up(self) -> None:
        self.screen = self.display.screen()
        self.root = self.screen.root
        self.width = self.screen.width_in_pixels
        self.height = self.screen.height_in_pixels
        self.display.xfixes_query_version()
        self.display.damage_query_version()
        try:
            self.grabber = ShmGrabber(self.display, self.root, self.width, self.height)
        except OSError:
            self.grabber = None  # no MIT-SHM, or a remote display: fall back to GetImage
        self.damage = DamageWatcher(self.display, self.root, self._on_event)
        # Before a keycode is rebound, the app must have drawn the keys it was sent with the
        # old binding: drawing, then a quiet screen, says it has caught up.
        self.keyboard = Keyboard(self.display, lambda: self.damage.wait_until_quiet(0.3, 5.0, drawn_first=True))
        self.windows = Windows(self.display, self.root)
        self.cursor: CursorSprite | None = None

    def _on_event(self, event: Event) -> None:
        if event.type == X.MappingNotify:
            self.keyboard.note_mapping_change(event)

    def current_keyboard(self) -> Keyboard:
        """The keyboard, its table matching the server's mapping: a layout changed meanwhile
        (setxkbmap, xmodmap) is read in before any key is sent."""
        self.damage.poll()
        self.keyboard.follow_mapping()
        return self.keyboard

    def close(self) -> None:
        if self.grabber is not None:
            self.grabber.close()
        try:
            self.display.close()
        except Exception:
            pass  # already broken: nothing left to release on the server side


class X11Desktop:
    def __init__(self, display_name: str | None = None):
        self.display_name = display_name or os.environ.get("DISPLAY", ":0")
        self._connection: _Connection | None = None
        self.clipboard = Clipboard(self.display_name)

    # -- connection ---------------------------------------------------------------------

    def _connect(self) -> _Connection:
        if self._connection is None:
            try:
                self._connection = _Connection(self.display_name)
            except _CONNECTION_ERRORS as error:
                raise DisplayUnavailable(
                    f"The X display {self.display_name} is not reachable ({error}); it may be "
                    "starting or restarting. Retry in a few seconds."
                ) from None
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
            # python-xlib's objects refer to one another, so a dropped connection is freed only
            # by a full garbage collection, which may be far off. Meanwhile the next connection's
            # objects land in the holes freed frame buffers left, and every reconnection (every
            # restart of X) grew the heap by about one frame, 4 MB. This happens only when the
            # X server went away, so a collection here costs nothing that matters.
            gc.collect()

    def _run(self, operation: Callable[[_Connection], T], retry: bool = True) -> T:
        """Run operation(connection). A connection that broke (X restarted) is replaced; a
        read (retry=True) is tried once more on the new server, input is not: part of it may
        have reached the old one, and repeating it could type twice."""
        for attempt in (1, 2):
            connection = self._connect()
            try:
                return operation(connection)
            except _CONNECTION_ERRORS as error:
                self._drop()
                if attempt == 2 or not retry:
                    raise DisplayUnavailable(
                        f"Lost the connection to the X display {self.display_name} ({error}). "
                        "Retry in a few seconds."
                    ) from None
            except XError as error:
                raise X11Error(f"The X server refused a request: {error}") from None
        raise AssertionError("unreachable: the second attempt returns or raises")

    def close(self) -> None:
        self._drop()

    # -- screen -------------------------------------------------------------------------

    def screen_size(self) -> tuple[int, int]:
        return self._run(lambda c: (c.width, c.height))

    def capture(self, region: tuple[int, int, int, int] | None = None, cursor: bool = False) -> Frame:
        """region = (x, y, width, height) in screen pixels, already validated."""
        return self._run(lambda c: self._grab(c, region, cursor, borrow=False))

    def capture_borrowed(self, use: Callable[[Frame], T], region: tuple[int, int, int, int] | None = None,
                         cursor: bool = False) -> T:
        """use(frame) -> its result, where the frame's pixels are the shared memory segment the
        X server wrote, not a copy: encoding reads them straight from there. The pixels are
        valid only while `use` runs (the next capture overwrites them)."""
        frame = self._run(lambda c: self._grab(c, region, cursor, borrow=True))
        try:
            return use(frame)  # not inside _run: an OSError of the encoder is no lost connection
        finally:
            if isinstance(frame.pixels, memoryview):
                frame.pixels.release()  # a view kept past this point fails instead of reading stale pixels

    def _grab(self, c: _Connection, region: tuple[int, int, int, int] | None, cursor: bool, borrow: bool) -> Frame:
        x, y, width, height = region or (0, 0, c.width, c.height)
        if c.grabber is None:
            pixels = c.root.get_image(x, y, width, height, X.ZPixmap, 0xFFFFFFFF).data
        elif borrow:
            pixels = c.grabber.grab_view(x, y, width, height)
        else:
            pixels = c.grabber.grab(x, y, width, height)
        return Frame(x, y, width, height, pixels, self._cursor_sprite(c) if cursor else None)

    @staticmethod
    def _cursor_sprite(c: _Connection) -> CursorSprite:
        image = c.display.xfixes_get_cursor_image(c.root)
        x, y = image.x - image.xhot, image.y - image.yhot
        if c.cursor is None or c.cursor.serial != image.cursor_serial:
            c.cursor = CursorSprite(x, y, image.width, image.height, tuple(image.cursor_image), image.cursor_serial)
        elif (c.cursor.x, c.cursor.y) != (x, y):
            c.cursor = CursorSprite(x, y, c.cursor.width, c.cursor.height, c.cursor.argb, c.cursor.serial)
        return c.cursor

    # -- pointer ------------------------------------------------------------------------

    def cursor_position(self) -> tuple[int, int]:
        return self._run(lambda c: pointer.position(c.display, c.root))

    def move(self, x: int, y: int) -> None:
        def run(c: _Connection) -> None:
            pointer.move(c.display, x, y)
            c.display.sync()

        self._run(run, retry=False)

    def _with_modifiers(self, c: _Connection, modifiers: list[int], action: Callable[[], object]) -> None:
        held = c.current_keyboard().press_keysyms(modifiers) if modifiers else []
        try:
            action()
        finally:
            if held:
                c.keyboard.release_keycodes(held)
                c.display.sync()

    def click(self, at: tuple[int, int] | None, button: str, count: int = 1, modifiers: Sequence[int] = ()) -> None:
        def run(c: _Connection) -> None:
            if at is not None:
                pointer.move(c.display, *at)
            self._with_modifiers(c, list(modifiers), lambda: pointer.click(c.display, c.root, pointer.BUTTONS[button], count))

        self._run(run, retry=False)

    def button(self, down: bool, at: tuple[int, int] | None = None, button: str = "left") -> None:
        def run(c: _Connection) -> None:
            if at is not None:
                pointer.move(c.display, *at)
            pointer.button(c.display, pointer.BUTTONS[button], down)
            c.display.sync()
            if not down:
                pointer.wait_until_released(c.display, c.root, pointer.BUTTONS[button])

        self._run(run, retry=False)

    def drag(self, path: list[tuple[int, int]], button: str = "left", modifiers: Sequence[int] = ()) -> None:
        self._run(lambda c: self._with_modifiers(
            c, list(modifiers), lambda: pointer.drag(c.display, c.root, path, pointer.BUTTONS[button])
        ), retry=False)

    def scroll(self, direction: str, amount: int, at: tuple[int, int] | None = None, modifiers: Sequence[int] = ()) -> None:
        def run(c: _Connection) -> None:
            if at is not None:
                pointer.move(c.display, *at)
            self._with_modifiers(c, list(modifiers), lambda: pointer.scroll(c.display, c.root, direction, amount))

        self._run(run, retry=False)

    # -- keyboard -----------------------------------------------------------------------

    def key(self, sequence: list[list[int]], repeat: int = 1) -> None:
        def run(c: _Connection) -> None:
            keyboard = c.current_keyboard()
            for _ in range(repeat):
                for combo in sequence:
                    keyboard.tap_combo(combo)
            c.display.sync()

        self._run(run, retry=False)

    def hold(self, keysyms: list[int], duration_s: float) -> None:
        def run(c: _Connection) -> None:
            held = c.current_keyboard().press_keysyms(keysyms)
            c.display.sync()
            try:
                time.sleep(duration_s)
            finally:
                c.keyboard.release_keycodes(held)
                c.display.sync()

        self._run(run, retry=False)

    def type_keysyms(self, keysyms: list[int]) -> None:
        self._run(lambda c: c.current_keyboard().type_keysyms(keysyms), retry=False)

    # -- settling -----------------------------------------------------------------------

    def mark_changes(self) -> None:
        """Start counting screen changes from now (call before an action)."""
        self._run(lambda c: c.damage.mark())

    def wait_until_settled(self, quiet_s: float, timeout_s: float) -> SettleReport:
        return self._run(lambda c: c.damage.wait_until_quiet(quiet_s, timeout_s))

    # -- windows ------------------------------------------------------------------------

    def windows(self) -> list[WindowInfo]:
        return self._run(lambda c: c.windows.list())

    def window_ids(self) -> list[int]:
        return self._run(lambda c: c.windows.client_ids())

    def windows_with_roles(self) -> list[tuple[WindowInfo, str]]:
        """Windows (bottom to top) with their role: "main", "dialog", "splash" or "gone"."""
        return self._run(lambda c: [(window, c.windows.role(window.id)) for window in c.windows.list()])

    def activate(self, window_id: int) -> bool:
        return self._run(lambda c: c.windows.activate(window_id), retry=False)

    def close_window(self, window_id: int) -> bool:
        return self._run(lambda c: c.windows.close(window_id), retry=False)


def probe(display_name: str) -> dict[str, bool]:
    """Is the X server up, and is a window manager running on it? Uses a short-lived
    connection of its own so a health check never waits behind a long action."""
    try:
        connection = xdisplay.Display(display_name)
    except _CONNECTION_ERRORS:
        return {"x": False, "window_manager": False}
    try:
        root = connection.screen().root
        return {"x": True, "window_manager": Windows(connection, root).wm_running()}
    except (XError, *_CONNECTION_ERRORS):
        return {"x": False, "window_manager": False}
    finally:
        connection.close()
