"""WS /vnc: a browser's WebSocket bridged to x11vnc, which listens on 127.0.0.1 only.

The wire protocol, on one WebSocket:

1. The client's first message is text (JSON) ``{"token": "...", "interactive": false}``.
   Browsers cannot put an Authorization header on a WebSocket, and a token in the URL would
   end up in logs and history, so the token travels inside the connection. The app's token
   middleware (cubicle.web.auth) checks it: until it checks out nothing reaches x11vnc and no
   byte of it comes back; a missing or wrong token (or none within its timeout) closes the
   socket with code 4401. The bridge reads the mode from that same message.
2. Then binary messages carry RFB, both ways. The server's bytes pass untouched; the
   client's are parsed (RfbClientParser) so that a view-only connection cannot send input.
3. Later text messages are control messages: ``{"interactive": true|false}`` switches mode.

Close codes (cubicle.web.closes): 4401 token refused; 1008 the client sent RFB (or a control
message) the bridge does not pass; 1013 x11vnc cannot be reached (try again shortly); 1000
x11vnc ended the session; 1011 a fault in the bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

from cubicle.rfb import InputCallback, RfbClientParser, RfbProtocolError
from cubicle.web import closes
from cubicle.web.relay import first_to_end

VNC_PATH = "/vnc"
CONNECT_TIMEOUT = 5.0
CHUNK_BYTES = 64 * 1024

logger = logging.getLogger(__name__)


class _Close(Exception):
    """Ends a connection with this WebSocket close code and reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _control_message(data: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        value = None
    return value if isinstance(value, dict) else {}


class VncBridge:
    """Serves WS /vnc. ``on_input`` (settable) receives every input message a person sends
    through an interactive connection."""

    def __init__(self, vnc_port: int, host: str = "127.0.0.1", on_input: InputCallback | None = None):
        self.vnc_port = vnc_port
        self.host = host
        self.on_input = on_input

    async def serve(self, websocket: WebSocket) -> None:
        """For a connection the token middleware has let through: its first message is there."""
        first: dict[str, Any] = getattr(websocket.state, "first_message", None) or {}
        await websocket.accept()
        try:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.vnc_port), CONNECT_TIMEOUT)
            except (TimeoutError, OSError):
                raise _Close(closes.TRY_AGAIN, "the VNC server is not reachable, try again shortly") from None
            parser = RfbClientParser(view_only=first.get("interactive") is not True, on_input=self._forward_input)
            try:
                code, reason = await self._pump(websocket, reader, writer, parser)
            finally:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            raise _Close(code, reason)
        except _Close as refusal:
            # Already gone if the browser left first: RuntimeError (closed) or WebSocketDisconnect.
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await websocket.close(refusal.code, refusal.reason)

    def _forward_input(self, kind: str, fields: dict[str, Any]) -> None:
        if self.on_input is None:
            return
        try:
            self.on_input(kind, fields)
        except Exception:  # a listener's bug must not cut off the person at the controls
            logger.exception("vnc bridge: the on_input listener failed on a %s message", kind)

    async def _pump(self, websocket: WebSocket, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    parser: RfbClientParser) -> tuple[int, str]:
        """Copies both ways until either side ends; returns the close code and reason for the
        browser (ignored when the browser is the side that left)."""

        async def browser_to_vnc() -> tuple[int, str]:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    writer.write(parser.release_all())
                    await writer.drain()
                    return closes.NORMAL, "closed by the viewer"
                data = message.get("bytes")
                if data is None:
                    control = _control_message(message.get("text") or "")
                    if not isinstance(control.get("interactive"), bool):
                        return closes.POLICY, 'control messages are {"interactive": true|false}'
                    if control["interactive"] is False and not parser.view_only:
                        writer.write(parser.release_all())
                    parser.view_only = not control["interactive"]
                    continue
                try:
                    forward = parser.feed(data)
                except RfbProtocolError as error:
                    return closes.POLICY, str(error)[:120]
                if forward:
                    writer.write(forward)
                    await writer.drain()  # x11vnc reads slowly: stop reading the browser

        async def vnc_to_browser() -> tuple[int, str]:
            while True:
                try:
                    chunk = await reader.read(CHUNK_BYTES)
                except OSError:
                    chunk = b""
                if not chunk:
                    return closes.NORMAL, "the VNC server ended the session"
                await websocket.send_bytes(chunk)  # waits while the browser is behind

        return await first_to_end([browser_to_vnc(), vnc_to_browser()], (OSError, RuntimeError, WebSocketDisconnect),
                                  "vnc bridge")


def install_vnc_bridge(app: FastAPI) -> VncBridge:
    """Adds WS /vnc, behind the app's token middleware; the bridge is also
    app.state.vnc_bridge (set its on_input to listen)."""
    bridge = VncBridge(app.state.vnc_port)
    app.state.vnc_bridge = bridge

    @app.websocket(VNC_PATH)
    async def vnc(websocket: WebSocket) -> None:
        await bridge.serve(websocket)

    return bridge
