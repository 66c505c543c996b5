"""Top-level windows through EWMH, the protocol openbox (and every modern WM) speaks."""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from Xlib import X, Xatom
from Xlib.error import BadWindow, XError
from Xlib.protocol import event as xevent

if TYPE_CHECKING:
    from Xlib.display import Display
    from Xlib.xobject.drawable import Window

from .errors import WindowNotFound


@dataclass(frozen=True)
class WindowInfo:
    id: int
    title: str
    wm_class: str  # the class part of WM_CLASS, e.g. "Mousepad"
    wm_instance: str
    pid: int | None
    x: int
    y: int
    width: int
    height: int
    focused: bool
    minimized: bool


class Windows:
    def __init__(self, display: Display, root: Window) -> None:
        self._display = display
        self._root = root
        self._atoms: dict[str, int] = {}

    def _atom(self, name: str) -> int:
        if name not in self._atoms:
            self._atoms[name] = self._display.intern_atom(name)
        return self._atoms[name]

    def _property(self, window: Window, name: str, kind: int) -> Any:
        reply = window.get_full_property(self._atom(name), kind)
        return None if reply is None else reply.value

    def client_ids(self) -> list[int]:
        """Managed windows, bottom to top of the stacking order."""
        value = self._property(self._root, "_NET_CLIENT_LIST_STACKING", Xatom.WINDOW)
        if value is None:
            value = self._property(self._root, "_NET_CLIENT_LIST", Xatom.WINDOW)
        return list(value or [])

    def active_id(self) -> int | None:
        value = self._property(self._root, "_NET_ACTIVE_WINDOW", Xatom.WINDOW)
        return int(value[0]) if value is not None and len(value) and value[0] else None

    def wm_running(self) -> bool:
        """True when a window manager announces itself (_NET_SUPPORTING_WM_CHECK) and is alive."""
        value = self._property(self._root, "_NET_SUPPORTING_WM_CHECK", Xatom.WINDOW)
        if not value:
            return False
        try:
            check = self._display.create_resource_object("window", int(value[0]))
            child = self._property(check, "_NET_SUPPORTING_WM_CHECK", Xatom.WINDOW)
        except XError:
            return False  # the WM died and left a stale property behind
        return bool(child) and int(child[0]) == int(value[0])

    def describe(self, window_id: int, active: int | None) -> WindowInfo:
        window = self._display.create_resource_object("window", window_id)
        try:
            title = self._property(window, "_NET_WM_NAME", self._atom("UTF8_STRING"))
            if title is None:
                title = self._property(window, "WM_NAME", Xatom.STRING)
            if isinstance(title, bytes):
                title = title.decode("utf-8", "replace")
            wm_class = window.get_wm_class() or ("", "")
            pid = self._property(window, "_NET_WM_PID", Xatom.CARDINAL)
            state = self._property(window, "_NET_WM_STATE", Xatom.ATOM) or []
            geometry = window.get_geometry()
            origin = window.translate_coords(self._root, 0, 0)
        except (BadWindow, XError):
            raise WindowNotFound(window_id) from None
        return WindowInfo(
            id=window_id,
            title=title or "",
            wm_class=wm_class[1],
            wm_instance=wm_class[0],
            pid=int(pid[0]) if pid is not None and len(pid) else None,
            # translate_coords from the root gives the root origin in window coordinates.
            x=-origin.x,
            y=-origin.y,
            width=geometry.width,
            height=geometry.height,
            focused=window_id == active,
            minimized=self._atom("_NET_WM_STATE_HIDDEN") in state,
        )

    def role(self, window_id: int) -> str:
        """"splash" (a splash screen: _NET_WM_WINDOW_TYPE_SPLASH), "dialog" (transient for
        another window) or "main"; "gone" if the window no longer exists. What an app was
        launched for is its main window: a splash closes, a dialog belongs to another window."""
        window = self._display.create_resource_object("window", window_id)
        try:
            types = self._property(window, "_NET_WM_WINDOW_TYPE", Xatom.ATOM) or []
            transient_for = window.get_wm_transient_for()
        except (BadWindow, XError):
            return "gone"
        if self._atom("_NET_WM_WINDOW_TYPE_SPLASH") in types:
            return "splash"
        return "dialog" if transient_for is not None else "main"

    def list(self) -> list[WindowInfo]:
        active = self.active_id()
        found = []
        for window_id in self.client_ids():
            try:
                found.append(self.describe(window_id, active))
            except WindowNotFound:
                continue  # closed while we listed
        return found

    def _require(self, window_id: int) -> None:
        if window_id not in self.client_ids():
            raise WindowNotFound(window_id)

    # builtins.list: in this class `list` is the method above.
    def _client_message(self, window_id: int, name: str, data: builtins.list[int]) -> None:
        window = self._display.create_resource_object("window", window_id)
        message = xevent.ClientMessage(
            window=window, client_type=self._atom(name), data=(32, (data + [0] * 5)[:5])
        )
        self._root.send_event(
            message, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask
        )
        self._display.sync()

    def activate(self, window_id: int, timeout_s: float = 2.0) -> bool:
        """Raise and focus; True once the WM reports the window active."""
        self._require(window_id)
        # source indication 2 = a pager: the WM obeys instead of only flagging "urgent".
        self._client_message(window_id, "_NET_ACTIVE_WINDOW", [2, X.CurrentTime, 0])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.active_id() == window_id:
                return True
            time.sleep(0.01)
        return False

    def close(self, window_id: int, timeout_s: float = 2.0) -> bool:
        """Ask politely (like the title bar's close button); True once the window is gone.
        An app may keep it open, e.g. to ask about unsaved changes."""
        self._require(window_id)
        self._client_message(window_id, "_NET_CLOSE_WINDOW", [X.CurrentTime, 2])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if window_id not in self.client_ids():
                return True
            time.sleep(0.02)
        return False
