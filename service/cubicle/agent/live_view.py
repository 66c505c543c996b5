"""WS /runs/{id}/vnc: the console's live view of a run's desktop, and how a human takes over.

The browser speaks RFB (noVNC) to the worker, and the worker carries it to the desktop's own
WS /vnc with the run's desktop token. So the browser needs only the worker's token, and the
desktop's token never leaves the worker. On the way the worker parses what the browser sends
(cubicle.rfb): while nobody has taken the run over, input is dropped (view only, whatever the
page claims); while a human has control, input goes through and is recorded in the run's log
as computer actions in the model's own vocabulary and coordinates, each with the screen after
it (human_log.HumanLog), so the replay shows the human's steps and the model is told what they did.

The desktop's bridge is told the mode too (its first message, then {"interactive": bool}),
so it enforces view-only as well and lets go of held keys and buttons when control goes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from cubicle.rfb import RfbClientParser, RfbProtocolError
from cubicle.web import closes
from cubicle.web.relay import first_to_end

from .takeover import HumanInputRecorder

if TYPE_CHECKING:
    from .run_manager import ActiveRun

log = logging.getLogger("cubicle.worker")

TICK_S = 0.1  # how often pending human input is looked at, and the mode checked
CONNECT_TIMEOUT_S = 10.0


def _websocket_url(desktop: str) -> str:
    scheme, rest = desktop.split("://", 1)
    return ("wss://" if scheme == "https" else "ws://") + rest.rstrip("/") + "/vnc"


async def bridge(websocket: WebSocket, active: ActiveRun) -> None:
    """Carries one browser's RFB to the run's desktop until either side ends."""
    control, human_log, desktop_token = active.control, active.human_log, active.desktop_token
    assert human_log is not None  # given to the run as it starts, before anyone can watch it
    taken_over = control.taken_over
    try:
        upstream = await connect(_websocket_url(active.desktop), max_size=None, open_timeout=CONNECT_TIMEOUT_S,
                                 compression=None, ping_interval=None)
    except (OSError, TimeoutError, InvalidHandshake) as error:
        await _close(websocket, closes.TRY_AGAIN, f"the desktop is not reachable ({type(error).__name__}), try again shortly")
        return
    agent = active.agent
    recorder = HumanInputRecorder(agent.screen_size, agent.image_size, human_log.record)
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
                        return closes.NOT_LIVE, "the run has ended"
                    if not done:
                        continue
                    message, receiving = receiving.result(), None
                    if message["type"] == "websocket.disconnect":
                        return closes.NORMAL, "closed by the viewer"
                    data = message.get("bytes")
                    if data is None:
                        continue  # the page does not switch modes here: taking over does
                    try:
                        forward = parser.feed(data)
                    except RfbProtocolError as error:
                        return closes.POLICY, str(error)[:120]
                    if forward:
                        await upstream.send(forward)
            finally:
                if receiving is not None:
                    receiving.cancel()
                recorder.flush()

        async def desktop_to_browser() -> tuple[int, str]:
            await _relay_frames(upstream, websocket)
            code = upstream.close_code or closes.NORMAL
            if code == closes.UNAUTHORIZED:
                return closes.ERROR, "the desktop refused the run's desktop token"
            if code in (closes.TRY_AGAIN, closes.POLICY):
                return code, (upstream.close_reason or "")[:120]
            return closes.NORMAL, "the desktop ended the session"

        code, reason = await first_to_end([browser_to_desktop(), desktop_to_browser()],
                                          (OSError, RuntimeError, WebSocketDisconnect, ConnectionClosed),
                                          f"live view of run {active.run.id}")
        await _close(websocket, code, reason)
    finally:
        human_log.input_enders.discard(end_input)
        await upstream.close()


async def watch(websocket: WebSocket, upstream_url: str, token: str) -> None:
    """A view-only live view of any desktop (the fleet's, for the console): the browser's
    input never gets through, whatever the page claims."""
    try:
        upstream = await connect(upstream_url, max_size=None, open_timeout=CONNECT_TIMEOUT_S, compression=None,
                                 ping_interval=None)
    except (OSError, TimeoutError, InvalidHandshake) as error:
        await _close(websocket, closes.TRY_AGAIN, f"the desktop is not reachable ({type(error).__name__}), try again shortly")
        return
    parser = RfbClientParser(view_only=True)
    try:
        await upstream.send(json.dumps({"token": token, "interactive": False}))

        async def browser_to_desktop() -> tuple[int, str]:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return closes.NORMAL, "closed by the viewer"
                if message.get("bytes") is not None:
                    try:
                        forward = parser.feed(message["bytes"])
                    except RfbProtocolError as error:
                        return closes.POLICY, str(error)[:120]
                    if forward:
                        await upstream.send(forward)

        async def desktop_to_browser() -> tuple[int, str]:
            await _relay_frames(upstream, websocket)
            if upstream.close_code == closes.UNAUTHORIZED:
                return closes.ERROR, "the fleet refused the worker's fleet token"
            return upstream.close_code or closes.NORMAL, (upstream.close_reason or "the desktop ended the session")[:120]

        code, reason = await first_to_end([browser_to_desktop(), desktop_to_browser()],
                                          (OSError, RuntimeError, WebSocketDisconnect, ConnectionClosed), "desktop view")
        await _close(websocket, code, reason)
    finally:
        await upstream.close()


async def refuse(websocket: WebSocket, reason: str) -> None:
    await _close(websocket, closes.NOT_LIVE, reason[:120])


async def _relay_frames(upstream: ClientConnection, websocket: WebSocket) -> None:
    """The desktop's RFB frames to the browser, until the desktop's side closes."""
    try:
        async for data in upstream:
            if isinstance(data, bytes):
                await websocket.send_bytes(data)
    except ConnectionClosed:
        pass


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        await websocket.close(code, reason)
