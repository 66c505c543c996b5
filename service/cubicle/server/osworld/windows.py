"""The screen and its windows for OSWorld's routes, over this process's own X connection
(cubicle.x11, on one thread of its own: python-xlib is not thread-safe).

OSWorld's server finds windows with wmctrl; the same matching is done here over EWMH, which
openbox speaks: by title, a case-insensitive substring (`strict`: the whole title, case
sensitive), or by WM_CLASS as wmctrl -x writes it, "instance.Class".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from cubicle import x11
from cubicle.actions import ImageOptions

from ..screenshots import render

T = TypeVar("T")
POLL_S = 0.2


def matches(window: Any, name: str, strict: bool = False, by_class: bool = False) -> bool:
    """wmctrl's rule for <WIN> with -a and -c (with -F for strict, -x for by_class)."""
    text = f"{window.wm_instance}.{window.wm_class}" if by_class else window.title
    return text == name if strict else name.lower() in text.lower()


class Screen:
    """The display: screenshots with the pointer, its size, the pointer, the windows."""

    def __init__(self, display: str):
        self.desktop = x11.X11Desktop(display)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="osworld-x11")

    async def _on_x(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, partial(function, *args))

    async def screenshot_png(self) -> bytes:
        def capture() -> bytes:
            screen = self.desktop.screen_size()
            options = ImageOptions(format="png", cursor=True)
            return self.desktop.capture_borrowed(lambda frame: render(frame, screen, options, screen).data, cursor=True)

        return await self._on_x(capture)

    async def size(self) -> tuple[int, int]:
        return await self._on_x(self.desktop.screen_size)

    async def cursor(self) -> tuple[int, int]:
        return await self._on_x(self.desktop.cursor_position)

    async def windows(self) -> list[Any]:
        return await self._on_x(self.desktop.windows)

    async def find(self, name: str, strict: bool = False, by_class: bool = False) -> Any | None:
        return next((w for w in await self.windows() if matches(w, name, strict, by_class)), None)

    async def activate(self, window_id: int) -> bool:
        return await self._on_x(self.desktop.activate, window_id)

    async def close_window(self, window_id: int) -> bool:
        return await self._on_x(self.desktop.close_window, window_id)

    async def wait_for_title(self, names: tuple[str, ...], timeout_s: float) -> Any | None:
        """The first window whose title contains one of names (as OSWorld's open_file waits),
        raised and focused; None after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while True:
            for window in await self.windows():
                if any(name and name in window.title for name in names):
                    try:
                        await self.activate(window.id)
                    except x11.WindowNotFound:
                        continue  # closed meanwhile (a splash screen): keep waiting
                    return window
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(POLL_S)

    def close(self) -> None:
        self._thread.submit(self.desktop.close)
        self._thread.shutdown(wait=True)
