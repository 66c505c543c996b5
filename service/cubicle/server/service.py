"""The desktop as the routes see it: every X call runs on one dedicated thread.

One thread means python-xlib is never used concurrently, and a batch submitted as a single
job runs start to finish before any other request touches the display: batches never
interleave. Encoding a standalone screenshot happens off that thread, so a slow PNG does not
hold up the next click.

Freed memory is kept for reuse while requests come (see `cubicle.server.main`), and handed
back to the system once the X thread has had nothing to do for IDLE_TRIM_AFTER_S.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache, partial
from typing import Any, TypeVar

from cubicle import actions as a
from cubicle import x11

from .errors import ApiError, from_engine_error
from .plan import PlanError, Planner, Step
from .screenshots import Rendered, output_size, render

T = TypeVar("T")

# Quiet this long after the last request, the heap's free memory goes back to the system: long
# enough that a burst of requests keeps its buffers, short enough for an agent's pauses.
IDLE_TRIM_AFTER_S = 3.0

NOT_EXECUTED = a.ErrorBody(code="not_executed", message="Not executed: an earlier action in this batch failed.")
REFUSED = a.ErrorBody(
    code="not_executed", message="Not executed: the batch was refused before anything ran, because of another action."
)


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except OSError:
        return None


def _malloc_trim() -> None:
    """glibc's malloc_trim(0): the free pages of every arena go back to the system."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:  # else not glibc: nothing to hand back this way
        trim(0)


class DesktopService:
    def __init__(self, desktop: x11.X11Desktop):
        self.desktop = desktop
        self._x_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="x11")
        # One timer, pushed back by every job: it fires once per stretch of activity, never
        # on a server that stays idle.
        self._trim_timer: asyncio.TimerHandle | None = None

    async def on_x_thread(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._x_thread, partial(function, *args))
        finally:
            if self._trim_timer is not None:
                self._trim_timer.cancel()
            self._trim_timer = loop.call_later(IDLE_TRIM_AFTER_S, self._trim_when_idle)

    def _trim_when_idle(self) -> None:
        self._trim_timer = None
        try:  # on the X thread: after whatever runs there, and never beside a capture
            self._x_thread.submit(_malloc_trim)
        except RuntimeError:
            pass  # closed meanwhile

    def close(self) -> None:
        if self._trim_timer is not None:
            self._trim_timer.cancel()
        # On the X thread, after whatever runs there now: python-xlib is never used from two
        # threads, and the SHM segment is not detached under a capture.
        self._x_thread.submit(self.desktop.close)
        self._x_thread.shutdown(wait=True, cancel_futures=True)

    # -- screenshots --------------------------------------------------------------------

    async def screenshot(
        self,
        options: a.ImageOptions,
        region: tuple[int, int, int, int] | None,
        settle: a.SettleOptions | None,
    ) -> Rendered:
        """region = (x, y, width, height) in screen pixels (a zoom), already checked."""

        def capture_and_render() -> Rendered:
            report = None
            if settle is not None:
                self.desktop.mark_changes()
                report = self.desktop.wait_until_settled(settle.quiet_ms / 1000, settle.timeout_ms / 1000)
            screen = self.desktop.screen_size()
            return self.desktop.capture_borrowed(
                lambda frame: render(frame, screen, options, output_size(screen, options), region is not None, report),
                region, cursor=options.cursor,
            )

        return await self.on_x_thread(capture_and_render)

    # -- batches ------------------------------------------------------------------------

    async def run_batch(self, request: a.ActionRequest) -> tuple[int, a.ActionResponse]:
        screen = await self.on_x_thread(self.desktop.screen_size)
        space = (request.coordinate_space.width, request.coordinate_space.height) if request.coordinate_space else None
        options = request.screenshot if isinstance(request.screenshot, a.ImageOptions) else a.ImageOptions()
        size = output_size(screen, options, space)
        settle = request.settle

        def capture_step(desktop: x11.X11Desktop, box: tuple[int, int, int, int] | None) -> a.ImageData:
            return desktop.capture_borrowed(
                lambda frame: render(frame, screen, options, size, zoom=box is not None), box, cursor=options.cursor
            ).as_image_data()

        try:
            steps = Planner(screen, space).plan(request, capture_step)
        except PlanError as failure:
            results = [
                _refused(i, action.action, failure.error if i == failure.index else None)
                for i, action in enumerate(request.actions)
            ]
            return failure.error.status, a.ActionResponse(
                results=results, error=a.ErrorBody(code=failure.error.code, message=f"actions[{failure.index}] ({request.actions[failure.index].action}): {failure.error.message}")
            )

        want_screenshot = request.screenshot is not False
        return await self.on_x_thread(self._execute, steps, settle, want_screenshot, capture_step, screen, options, size)

    def _execute(self, steps: list[Step], settle: a.SettleOptions, want_screenshot: bool, capture_step, screen, options, size):
        desktop = self.desktop
        results: list[a.ActionResult] = []
        failure: ApiError | None = None
        quiet_s, timeout_s = settle.quiet_ms / 1000, settle.timeout_ms / 1000
        try:
            desktop.mark_changes()
        except x11.X11Error as error:
            failure = from_engine_error(error)
        screen_dirty = False
        for step in steps:
            if failure is not None:
                results.append(a.ActionResult(index=step.index, action=step.name, status="not_executed", error=NOT_EXECUTED))
                continue
            started = time.perf_counter()
            try:
                if step.captures and screen_dirty:
                    desktop.wait_until_settled(quiet_s, timeout_s)
                    desktop.mark_changes()
                    screen_dirty = False
                output = step.run(desktop) or {}
            except Exception as error:  # the batch's results so far must reach the client
                failure = from_engine_error(error) if isinstance(error, x11.X11Error) else ApiError(
                    500, "desktop_error", f"{type(error).__name__}: {error}")
                results.append(a.ActionResult(
                    index=step.index, action=step.name, status="error",
                    error=a.ErrorBody(code=failure.code, message=failure.message),
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                ))
                continue
            screen_dirty |= step.changes_screen
            results.append(a.ActionResult(
                index=step.index, action=step.name, status="ok",
                duration_ms=round((time.perf_counter() - started) * 1000, 2), **output,
            ))
        if failure is not None:
            return failure.status, a.ActionResponse(results=results, error=a.ErrorBody(code=failure.code, message=failure.message))
        screenshot = None
        if want_screenshot:
            try:
                report = desktop.wait_until_settled(quiet_s, timeout_s) if screen_dirty else None
                screenshot = desktop.capture_borrowed(
                    lambda frame: render(frame, screen, options, size, settle=report), cursor=options.cursor
                ).as_image_data()
            except x11.X11Error as error:
                failure = from_engine_error(error)
                return failure.status, a.ActionResponse(results=results, error=a.ErrorBody(code=failure.code, message=failure.message))
        return 200, a.ActionResponse(results=results, screenshot=screenshot)


def _refused(index: int, name: str, error: ApiError | None) -> a.ActionResult:
    if error is None:
        return a.ActionResult(index=index, action=name, status="not_executed", error=REFUSED)
    return a.ActionResult(index=index, action=name, status="error", error=a.ErrorBody(code=error.code, message=error.message))
