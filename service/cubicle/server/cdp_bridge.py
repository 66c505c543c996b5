"""WS /cdp: the Chrome DevTools Protocol of the desktop's Chromium, behind the API's token.

Chromium's DevTools listen on 127.0.0.1 only (any process that reaches them controls the
browser), so a client outside the desktop, such as the browser toolset's Playwright
(`connect_over_cdp`), comes in here:

1. The token, checked by the app's middleware (cubicle.web.auth) before anything happens:
   the `Authorization: Bearer <token>` header of the handshake, or, for a client that cannot
   set headers, `{"token": "..."}` as the first message. Never in the URL. Without it the
   handshake is refused (401) or the socket is closed with 4401, and no CDP message is read
   or answered.
2. The desktop user starts Chromium if it is not running (`DesktopUser.ensure_browser`),
   and the bridge connects to its browser endpoint; that address stays inside the desktop.
3. Then text messages pass both ways untouched, each one CDP JSON message, until either
   side ends.

Close codes (cubicle.web.closes): 4401 token refused; 1013 Chromium could not be started or
reached (try again shortly); 1000 the browser or the client ended the session; 1008 the
client sent a binary message (CDP is text).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from cubicle.web import closes
from cubicle.web.errors import ApiError
from cubicle.web.relay import first_to_end
from cubicle.x11.errors import LaunchFailed

from .desktop_user import DesktopUser

CDP_PATH = "/cdp"
CONNECT_TIMEOUT = 10.0
# A screenshot of a large page, base64 in one CDP message, is tens of megabytes.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024

logger = logging.getLogger(__name__)


class CdpBridge:
    """Serves WS /cdp for the desktop user (who starts Chromium and owns its DevTools)."""

    def __init__(self, user: DesktopUser):
        self.user = user

    async def serve(self, websocket: WebSocket) -> None:
        """For a connection the token middleware has let through."""
        await websocket.accept()
        try:
            endpoint = await self.user.ensure_browser()
            upstream = await connect(endpoint, max_size=MAX_MESSAGE_BYTES, open_timeout=CONNECT_TIMEOUT,
                                     ping_interval=None, compression=None)
        except (ApiError, LaunchFailed) as error:  # no Chromium on the desktop, another program on the port ...
            return await _close(websocket, closes.TRY_AGAIN, error.message if isinstance(error, ApiError) else str(error))
        except (OSError, TimeoutError, InvalidHandshake) as error:  # refused, timed out: the same for the client
            logger.warning("cdp bridge: the browser is not reachable (%s)", type(error).__name__)
            return await _close(websocket, closes.TRY_AGAIN, "the desktop's browser is not reachable, try again shortly")
        async with upstream:
            code, reason = await self._pump(websocket, upstream)
        await _close(websocket, code, reason)

    async def _pump(self, websocket: WebSocket, upstream: ClientConnection) -> tuple[int, str]:
        async def client_to_browser() -> tuple[int, str]:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return closes.NORMAL, "closed by the client"
                text = message.get("text")
                if text is None:
                    return closes.POLICY, "CDP messages are text (JSON)"
                await upstream.send(text)

        async def browser_to_client() -> tuple[int, str]:
            try:
                async for data in upstream:
                    if isinstance(data, str):
                        await websocket.send_text(data)
            except ConnectionClosed:
                pass
            return closes.NORMAL, "the browser ended the session"

        return await first_to_end([client_to_browser(), browser_to_client()],
                                  (OSError, RuntimeError, WebSocketDisconnect, ConnectionClosed), "cdp bridge")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    # A reason is at most 123 bytes on the wire.
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect, asyncio.CancelledError):
        await websocket.close(code, reason.encode()[:123].decode(errors="ignore"))


def install_cdp_bridge(app: FastAPI) -> CdpBridge:
    """Adds WS /cdp, behind the app's token middleware."""
    bridge = CdpBridge(app.state.user)
    app.state.cdp_bridge = bridge

    @app.websocket(CDP_PATH)
    async def cdp(websocket: WebSocket) -> None:
        await bridge.serve(websocket)

    return bridge
