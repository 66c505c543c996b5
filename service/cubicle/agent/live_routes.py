"""The worker's WebSocket routes: a run's events as they happen, and its live desktop.

Both authenticate in the token middleware (a header, a subprotocol `bearer.<token>` or a first
message `{"token": ...}`); a browser's events socket may also speak the `cubicle.events`
subprotocol. An unknown run is closed with 4404, a run that is not live with 4409.
"""

from __future__ import annotations

import asyncio
import json
import re

from fastapi import APIRouter, Depends, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from cubicle.web import ApiError, closes, only_known_query

from .live_view import bridge as live_view_bridge
from .live_view import refuse as refuse_live_view
from .live_view import watch
from .run_manager import EventHub, RunManager
from .runs import Run

router = APIRouter(dependencies=[Depends(only_known_query)])
DESKTOP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _manager(websocket: WebSocket) -> RunManager:
    return websocket.app.state.runs


@router.websocket("/runs/{run_id}/vnc")
async def live_view(websocket: WebSocket, run_id: str) -> None:
    await websocket.accept()
    try:
        _, active = await run_in_threadpool(_manager(websocket).find, run_id)
    except ApiError as error:
        await refuse_live_view(websocket, error.message)
        return
    if active is None or not active.busy:
        await refuse_live_view(websocket, f"Run {run_id} has ended: the live view is for running and paused runs.")
        return
    await live_view_bridge(websocket, active)


@router.websocket("/desktops/{desktop_id}/vnc")
async def desktop_view(websocket: WebSocket, desktop_id: str) -> None:
    """Any desktop of the worker's fleet, live and view only (the console's Desktops list)."""
    fleet = _manager(websocket).fleet
    await websocket.accept()
    if not fleet.url or not fleet.token or not DESKTOP_ID.match(desktop_id):
        await websocket.close(code=closes.NOT_FOUND, reason="no such desktop, or this worker has no fleet")
        return
    await watch(websocket, fleet.vnc_url(desktop_id), fleet.token)


@router.websocket("/runs/{run_id}/events")
async def run_events(websocket: WebSocket, run_id: str) -> None:
    await websocket.accept()
    try:
        run, active = await run_in_threadpool(_manager(websocket).find, run_id)
    except ApiError as error:
        await websocket.close(code=closes.NOT_FOUND, reason=error.message[:120])
        return
    try:
        await _stream_events(websocket, run, active.hub if active else None)
    except WebSocketDisconnect:
        pass


async def _stream_events(websocket: WebSocket, run: Run, hub: EventHub | None) -> None:
    """Every event on disk, then each new one as it comes, until run_finished."""
    # Listen first, then read the disk: an event written in between arrives twice, never
    # not at all, and the copy is recognised by its seq.
    subscription = queue = hub.subscribe() if hub else None
    receiver: asyncio.Task | None = None
    getter: asyncio.Task | None = None
    try:
        last = -1
        for event in await run_in_threadpool(run.events):
            await websocket.send_text(json.dumps(event, ensure_ascii=False))
            last = event.get("seq", last)
            if event.get("type") == "run_finished":
                queue = None
        if queue is not None:
            receiver = asyncio.ensure_future(websocket.receive())  # to notice the client leaving
        while queue is not None:
            assert receiver is not None  # started above along with the queue
            getter = getter or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                if receiver.result()["type"] == "websocket.disconnect":
                    return
                receiver = asyncio.ensure_future(websocket.receive())  # what clients send is ignored
            if getter not in done:
                continue
            event, getter = getter.result(), None
            if event is None:
                break
            seq = event.get("seq")
            if isinstance(seq, int) and seq <= last:
                continue
            await websocket.send_text(json.dumps(event, ensure_ascii=False))
            last = seq if isinstance(seq, int) else last
            if event.get("type") == "run_finished":
                break
        if receiver is not None:
            receiver.cancel()
            receiver = None
        await websocket.close(code=1000)
    finally:
        for task in (receiver, getter):
            if task is not None:
                task.cancel()
        if hub is not None and subscription is not None:
            hub.unsubscribe(subscription)
