"""A human's actions during a takeover, written into the run's log.

The live view (live_view.py) turns what the browser sends into computer actions
(takeover.HumanInputRecorder); this writes each one from a thread of its own, in the order
they came: the action (with the screen before it), then the screen after it as its result,
so the replay shows the human's steps and the model is told what they did.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx

from cubicle.client import CubicleError

from .control import RunControl
from .events import RunEvent
from .runs import Run
from .takeover import describe

if TYPE_CHECKING:
    from .loop import Agent

log = logging.getLogger("cubicle.worker")

SETTLE_S = 0.3  # the screen a human's action leaves is captured this long after it


class HumanLog:
    """Writes a human's actions into a run's log from one thread, in the order they came:
    the action (with the screen before it), then the screen after it as its result."""

    def __init__(self, run: Run, agent: Agent, control: RunControl, publish: Callable[[RunEvent], None]):
        self.run = run
        self.agent = agent
        self.control = control
        self.publish = publish
        self._ids = itertools.count(1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"human-{run.id}")
        # Each live view's "stop taking input and record what is pending", for the hand back.
        self.input_enders: set[Callable[[], None]] = set()

    def record(self, action: dict[str, Any]) -> None:
        try:
            self._executor.submit(self._write, dict(action), f"human_{next(self._ids):04d}")
        except RuntimeError:  # the run has ended: its log is closed
            log.warning("run %s has ended: a human action after its end is not recorded", self.run.id)

    async def end_input(self) -> None:
        """At hand back, on the event loop the live views run on: no input gets through from
        here on, and everything the human did is in the log when this returns."""
        for end in list(self.input_enders):
            end()
        try:
            await asyncio.wrap_future(self._executor.submit(lambda: None))
        except RuntimeError:
            pass  # the run has ended meanwhile: its log is complete

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _write(self, action: dict[str, Any], tool_use_id: str) -> None:
        try:
            run, agent = self.run, self.agent
            step = run.meta["totals"]["steps"]
            self.publish(run.append("action", step=step, tool_use_id=tool_use_id, tool="computer", name=action.get("action"),
                                    input=action, image=agent.last_image, actor="human"))
            self.control.note_human_action(describe(action))
            time.sleep(SETTLE_S)
            try:
                outcome = agent.screenshot()
            except (CubicleError, httpx.HTTPError) as error:
                self.publish(run.append("result", step=step, tool_use_id=tool_use_id, is_error=True,
                                        text=f"no screenshot after the human's action: {error}", actor="human"))
                return
            image = run.save_image(step, 0, outcome.image, outcome.media_type or "image/png") if outcome.image else None
            if image:
                agent.last_image = image
            self.publish(run.append("result", step=step, tool_use_id=tool_use_id, is_error=outcome.is_error,
                                    text=outcome.text, image=image, actor="human"))
        except Exception:  # a log that cannot be written must not cut off the human at the controls
            log.exception("run %s: could not record a human action", self.run.id)
