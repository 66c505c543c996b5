"""Knowing when the screen has stopped changing, from X DAMAGE events (no polling of pixels).

One damage object on the root window reports, once, that something was drawn; subtracting
the damage re-arms it. `wait_until_quiet` returns when no drawing happened for a quiet window.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass

from Xlib.ext import damage

_REPORT_NON_EMPTY = 3  # DamageReportNonEmpty: one event per empty -> non-empty transition


@dataclass(frozen=True)
class SettleReport:
    settled: bool  # False when the cap was reached while the screen still changed
    elapsed_ms: float
    changes: int  # how many bursts of drawing were seen


class DamageWatcher:
    def __init__(self, display, root):
        self._display = display
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

    def drain(self) -> int:
        """Consume queued events; return how many were damage reports (and re-arm if any)."""
        seen = 0
        while self._display.pending_events():
            event = self._display.next_event()
            if event.type == self._event_type:
                seen += 1
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
