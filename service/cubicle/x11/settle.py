"""Knowing when the screen has stopped changing, from X DAMAGE events (no polling of pixels).

One damage object on the root window reports, once, that something was drawn; subtracting
the damage re-arms it. `wait_until_quiet` returns when no drawing happened for a quiet window.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from Xlib.ext import damage

if TYPE_CHECKING:
    from Xlib.display import Display
    from Xlib.protocol.rq import Event
    from Xlib.xobject.drawable import Window

_REPORT_NON_EMPTY = 3  # DamageReportNonEmpty: one event per empty -> non-empty transition


@dataclass(frozen=True)
class SettleReport:
    settled: bool  # False when the cap was reached while the screen still changed
    elapsed_ms: float
    changes: int  # how many bursts of drawing were seen


class DamageWatcher:
    """Also the one reader of the connection's events: the others (MappingNotify) go to
    `on_other_event`."""

    def __init__(self, display: Display, root: Window, on_other_event: Callable[[Event], object] | None = None):
        self._display = display
        self._on_other_event = on_other_event or (lambda event: None)
        self._unclaimed = 0  # damage reports read by poll() and not drained yet
        self._damage = display.display.allocate_resource_id()
        damage.DamageCreate(
            display=display.display,
            opcode=display.display.get_extension_major(damage.extname),
            damage=self._damage,
            drawable=root,
            level=_REPORT_NON_EMPTY,
        )
        self._event_type = display.extension_event.DamageNotify
        self._display.sync()

    def _rearm(self) -> None:
        damage.DamageSubtract(
            display=self._display.display,
            opcode=self._display.display.get_extension_major(damage.extname),
            damage=self._damage,
            repair=0,
            parts=0,
        )
        self._display.flush()

    def poll(self) -> None:
        """Read queued events: damage reports are kept for the next drain, the others handed on."""
        while self._display.pending_events():
            event = self._display.next_event()
            if event.type == self._event_type:
                self._unclaimed += 1
            else:
                self._on_other_event(event)

    def drain(self) -> int:
        """Consume queued events; return how many were damage reports (and re-arm if any)."""
        self.poll()
        seen, self._unclaimed = self._unclaimed, 0
        if seen:
            self._rearm()
        return seen

    def mark(self) -> None:
        """Forget earlier drawing: what counts from now on is what the next action causes."""
        self.drain()
        self._rearm()
        self._display.sync()
        self.drain()

    def wait_until_quiet(self, quiet_s: float, timeout_s: float, drawn_first: bool = False) -> SettleReport:
        """Wait until nothing was drawn for `quiet_s` (at most `timeout_s`). With `drawn_first`,
        the quiet only counts once something has been drawn since the last drain: a client
        starved of CPU has not drawn yet, and a still screen then says nothing."""
        start = time.monotonic()
        last_change: float | None = None if drawn_first else start
        changes = 0
        socket_fd = self._display.fileno()
        while True:
            now = time.monotonic()
            if last_change is not None and now - last_change >= quiet_s:
                return SettleReport(True, (now - start) * 1000, changes)
            if now - start >= timeout_s:
                return SettleReport(False, (now - start) * 1000, changes)
            if self.drain():
                changes += 1
                last_change = time.monotonic()
                continue
            until_quiet = quiet_s - (now - last_change) if last_change is not None else timeout_s
            wait = min(until_quiet, timeout_s - (now - start))
            select.select([socket_fd], [], [], max(wait, 0.0))
