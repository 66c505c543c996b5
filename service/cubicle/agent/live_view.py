"""WS /runs/{id}/vnc: the console's live view of a run's desktop, and how a human takes over.

The browser speaks RFB (noVNC) to the worker, and the worker carries it to the desktop's own
WS /vnc with the run's desktop token. So the browser needs only the worker's token, and the
desktop's token never leaves the worker. On the way the worker parses what the browser sends
(cubicle.rfb): while nobody has taken the run over, input is dropped (view only, whatever the
page claims); while a human has control, input goes through and is recorded in the run's log
as computer actions in the model's own vocabulary and coordinates, each with the screen after
it (HumanLog), so the replay shows the human's steps and the model is told what they did.

The desktop's bridge is told the mode too (its first message, then {"interactive": bool}),
so it enforces view-only as well and lets go of held keys and buttons when control goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable

import httpx
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from cubicle.client import CubicleError
from cubicle.rfb import RfbClientParser, RfbProtocolError, first_to_end

from .takeover import HumanInputRecorder, describe

if TYPE_CHECKING:
    from .service import ActiveRun

log = logging.getLogger("cubicle.worker")

TICK_S = 0.1  # how often pending human input is looked at, and the mode checked
SETTLE_S = 0.3  # the screen a human's action leaves is captured this long after it
CONNECT_TIMEOUT_S = 10.0

CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_ERROR = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_NOT_LIVE = 4409


class HumanLog:
    """Writes a human's actions into a run's log from one thread, in the order they came:
    the action (with the screen before it), then the screen after it as its result."""

    def __init__(self, active: ActiveRun, publish: Callable[[dict[str, Any]], None]):
        self.active = active
        self.publish = publish
        self._ids = itertools.count(1)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"human-{active.run.id}")
        # Each live view's "stop taking input and record what is pending", for the hand back.
        self.input_enders: set[Callable[[], None]] = set()

    def record(self, action: dict[str, Any]) -> None:
        try:
            self._executor.submit(self._write, dict(action), f"human_{next(self._ids):04d}")
        except RuntimeError:  # the run has ended: its log is closed
            log.warning("run %s has ended: a human action after its end is not recorded", self.active.run.id)

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
            run, agent = self.active.run, self.active.agent
            step = run.meta["totals"]["steps"]
            self.publish(run.append("action", step=step, tool_use_id=tool_use_id, tool="computer", name=action.get("action"),
                                    input=action, image=agent.last_image, actor="human"))
            self.active.control.note_human_action(describe(action))
            time.sleep(SETTLE_S)
            try:
                outcome = agent.computer.screenshot()
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
            log.exception("run %s: could not record a human action", self.active.run.id)


def _websocket_url(desktop: str) -> str:
    scheme, rest = desktop.split("://", 1)
    return ("wss://" if scheme == "https" else "ws://") + rest.rstrip("/") + "/vnc"


async def bridge(websocket: WebSocket, active: ActiveRun) -> None:
    """Carries one browser's RFB to the run's desktop until either side ends."""
    control, human_log, desktop_token = active.control, active.human_log, active.desktop_token
    taken_over = control.taken_over
    try:
        upstream = await connect(_websocket_url(active.desktop), max_size=None, open_timeout=CONNECT_TIMEOUT_S,
                                 compression=None, ping_interval=None)
    except (OSError, TimeoutError, InvalidHandshake) as error:
        await _close(websocket, CLOSE_TRY_AGAIN, f"the desktop is not reachable ({type(error).__name__}), try again shortly")
        return
    agent = active.agent
    recorder = HumanInputRecorder(agent.screen_size, agent.computer.image_size, human_log.record)
    parser = RfbClientParser(view_only=not taken_over, on_input=recorder.feed)

    def end_input() -> None:
        parser.view_only = True
        recorder.flush()

    human_log.input_enders.add(end_input)
    try:
        await upstream.send(json.dumps({"token": desktop_token, "interactive": taken_over}))

        async def browser_to_desktop() -> tuple[int, str]:
            nonlocal taken_over
            receiving: asyncio.Task | None = None
            try:
                while True:
                    receiving = receiving or asyncio.ensure_future(websocket.receive())
                    done, _ = await asyncio.wait({receiving}, timeout=TICK_S)
                    if control.taken_over != taken_over:
                        taken_over = control.taken_over
                        if not taken_over:
                            recorder.flush()
                        parser.view_only = not taken_over
                        await upstream.send(json.dumps({"interactive": taken_over}))
                    recorder.tick()
                    if active.hub.closed:
                        return CLOSE_NOT_LIVE, "the run has ended"
                    if not done:
                        continue
                    message, receiving = receiving.result(), None
                    if message["type"] == "websocket.disconnect":
                        return CLOSE_NORMAL, "closed by the viewer"
                    data = message.get("bytes")
                    if data is None:
                        continue  # the page does not switch modes here: taking over does
                    try:
                        forward = parser.feed(data)
                    except RfbProtocolError as error:
                        return CLOSE_POLICY, str(error)[:120]
                    if forward:
                        await upstream.send(forward)
            finally:
                if receiving is not None:
                    receiving.cancel()
                recorder.flush()

        async def desktop_to_browser() -> tuple[int, str]:
            try:
                async for data in upstream:
                    if isinstance(data, bytes):
                        await websocket.send_bytes(data)
            except ConnectionClosed:
                pass
            code = upstream.close_code or CLOSE_NORMAL
            if code == 4401:
                return CLOSE_ERROR, "the desktop refused the run's desktop token"
            if code in (CLOSE_TRY_AGAIN, CLOSE_POLICY):
                return code, (upstream.close_reason or "")[:120]
            return CLOSE_NORMAL, "the desktop ended the session"

        code, reason = await first_to_end([browser_to_desktop(), desktop_to_browser()],
                                          (OSError, RuntimeError, WebSocketDisconnect, ConnectionClosed),
                                          f"live view of run {active.run.id}")
        await _close(websocket, code, reason)
    finally:
        human_log.input_enders.discard(end_input)
        await upstream.close()


async def refuse(websocket: WebSocket, reason: str) -> None:
    await _close(websocket, CLOSE_NOT_LIVE, reason[:120])


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.close(code, reason)
