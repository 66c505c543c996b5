"""/desktops/{id}/...: every route of a desktop, HTTP and WebSocket, through the fleet.

The fleet has checked the caller's token (auth.py); the desktop gets the same request with the
fleet's operator token for it instead. Bodies stream both ways, so screenshots, long shell
commands and event streams pass as they come; a WebSocket's messages are relayed as they are,
after the first message the caller authenticated with (its other fields, such as the viewer's
`interactive`, go on to the desktop). Every request counts as activity for the idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx
from fastapi import APIRouter, Request, WebSocket
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from cubicle.web import ApiError, closes
from cubicle.web.errors import MethodNotAllowed
from cubicle.web.relay import first_to_end

from .auth import operator_token
from .manager import FleetManager

# Not passed on: they describe one hop, not the request (RFC 9110 7.6.1), or are set anew.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "authorization", "cookie", "content-length"})
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# The fleet's own routes under /desktops/{id}/ (routes.py), never a desktop's: another method
# there is refused, not passed on to the desktop.
FLEET_PATHS = {"keepalive": "POST", "reset": "POST"}

router = APIRouter()


def _manager(app: Any) -> FleetManager:
    return app.state.manager


async def _upstream(app: Any, desktop_id: str) -> tuple[str, str]:
    manager = _manager(app)
    address = await run_in_threadpool(manager.route, desktop_id)
    return address, operator_token(app.state.fleet_token, manager.get(desktop_id).ref)


@router.api_route("/desktops/{desktop_id}/{path:path}", methods=METHODS, include_in_schema=False)
async def proxy_http(desktop_id: str, path: str, request: Request) -> StreamingResponse:
    if path in FLEET_PATHS:
        raise MethodNotAllowed([FLEET_PATHS[path]])
    address, token = await _upstream(request.app, desktop_id)
    http: httpx.AsyncClient = request.app.state.http
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
    headers.append(("authorization", f"Bearer {token}"))
    upstream = http.build_request(request.method, f"{address}/{path}", params=request.url.query or None,
                                  headers=headers, content=request.stream())
    try:
        response = await http.send(upstream, stream=True)
    except httpx.HTTPError as error:
        raise ApiError(502, "desktop_unreachable", f"Desktop {desktop_id} did not answer ({type(error).__name__}); "
                       "if it keeps failing, reset or delete it.") from None
    passed = {k: v for k, v in response.headers.items() if k.lower() not in HOP_BY_HOP or k.lower() == "content-length"}
    return StreamingResponse(response.aiter_raw(), status_code=response.status_code, headers=passed,
                             background=BackgroundTask(response.aclose))


@router.websocket("/desktops/{desktop_id}/{path:path}")
async def proxy_websocket(websocket: WebSocket, desktop_id: str, path: str) -> None:
    try:
        address, token = await _upstream(websocket.app, desktop_id)
    except ApiError as error:
        await websocket.accept()
        code = closes.NOT_FOUND if error.status == 404 else closes.TRY_AGAIN
        await _close(websocket, code, error.message[:120])
        return
    first: dict[str, Any] = getattr(websocket.state, "first_message", None) or {}
    url = "ws" + address[len("http"):] + "/" + path + (f"?{websocket.url.query}" if websocket.url.query else "")
    offered = [p for p in websocket.scope.get("subprotocols") or [] if not p.startswith("bearer.")]
    try:
        upstream = await connect(url, max_size=None, open_timeout=10, compression=None, ping_interval=None,
                                 subprotocols=offered or None)  # type: ignore[arg-type]
    except (OSError, TimeoutError, InvalidHandshake) as error:
        await websocket.accept()
        reason = f"desktop {desktop_id} refused ({error.response.status_code})" if isinstance(error, InvalidStatus) else \
            f"desktop {desktop_id} is not reachable ({type(error).__name__}), try again shortly"
        await _close(websocket, closes.TRY_AGAIN, reason[:120])
        return
    try:
        # The desktop's WebSockets all take the token as a first message: the caller's, with
        # the operator token in it.
        await upstream.send(json.dumps({**first, "token": token}))
        await websocket.accept(subprotocol=upstream.subprotocol)

        async def caller_to_desktop() -> tuple[int, str]:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return closes.NORMAL, "closed by the caller"
                _manager(websocket.app).route(desktop_id)  # activity
                await upstream.send(message["bytes"] if message.get("bytes") is not None else message.get("text") or "")

        async def desktop_to_caller() -> tuple[int, str]:
            try:
                async for data in upstream:
                    if isinstance(data, bytes):
                        await websocket.send_bytes(data)
                    else:
                        await websocket.send_text(data)
            except ConnectionClosed:
                pass
            return upstream.close_code or closes.NORMAL, (upstream.close_reason or "the desktop ended the session")[:120]

        code, reason = await first_to_end([caller_to_desktop(), desktop_to_caller()],
                                          (OSError, RuntimeError, WebSocketDisconnect, ConnectionClosed, ApiError),
                                          f"proxy of desktop {desktop_id}")
        await _close(websocket, code, reason)
    finally:
        await upstream.close()


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect, asyncio.CancelledError):
        await websocket.close(code, reason)
