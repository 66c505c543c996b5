"""WS /vnc: a browser's WebSocket bridged to x11vnc, which listens on 127.0.0.1 only.

The wire protocol, on one WebSocket:

1. The client's first message is text (JSON) ``{"token": "...", "interactive": false}``.
   Browsers cannot put an Authorization header on a WebSocket, and a token in the URL would
   end up in logs and history, so the token travels inside the connection. Until it checks
   out nothing reaches x11vnc and no byte of it comes back; a missing or wrong token (or none
   within AUTH_TIMEOUT seconds) closes the socket with code 4401.
2. Then binary messages carry RFB, both ways. The server's bytes pass untouched; the
   client's are parsed (RfbClientParser) so that a view-only connection cannot send input.
3. Later text messages are control messages: ``{"interactive": true|false}`` switches mode.

Close codes: 4401 token refused; 1008 the client sent RFB (or a control message) the bridge
does not pass; 1013 x11vnc cannot be reached (try again shortly); 1000 x11vnc ended the
session; 1011 a fault in the bridge.
The token is never logged, echoed or put in a close reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import struct
from typing import Any, Callable

from fastapi import FastAPI, WebSocket
from starlette.websockets import WebSocketDisconnect

VNC_PATH = "/vnc"
AUTH_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
CHUNK_BYTES = 64 * 1024
MAX_CUT_TEXT_BYTES = 4 * 1024 * 1024

CLOSE_UNAUTHORIZED = 4401
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
CLOSE_NORMAL = 1000

InputCallback = Callable[[str, dict[str, Any]], None]
logger = logging.getLogger(__name__)


class RfbProtocolError(Exception):
    """The client sent RFB the bridge does not understand or does not let through."""


# Client-to-server messages that act on the desktop: a view-only connection never sends them.
INPUT_KINDS = frozenset({"key", "qemu_key", "pointer", "clipboard", "set_desktop_size", "xvp"})

_VERSIONS = {b"RFB 003.003\n": 3.3, b"RFB 003.007\n": 3.7, b"RFB 003.008\n": 3.8}
_SECURITY_NONE = 1
# Message type -> length, for the messages whose length is fixed.
_FIXED_LENGTHS = {0: 20, 3: 10, 4: 8, 5: 6, 150: 10, 250: 4}


class RfbClientParser:
    """Splits the client-to-server RFB stream into messages and decides which go through.

    ``feed(data)`` takes bytes as they arrive, in pieces of any size, and returns the bytes
    to forward: complete messages only, in order, input messages left out while
    ``view_only``. ``on_input(kind, fields)`` is called for each input message forwarded
    (kinds in INPUT_KINDS), e.g. ``("pointer", {"x": 10, "y": 20, "buttons": 1})``.

    The handshake is the client's half of RFB 3.3/3.7/3.8 with security type None, the only
    one x11vnc offers here (it runs without a password, reachable only through this bridge).
    After it: the standard messages, plus the extensions noVNC sends (continuous updates,
    fence, xvp, SetDesktopSize, QEMU extended key event). Anything else has a length the
    bridge cannot know, so it raises RfbProtocolError rather than guess.
    """

    def __init__(self, view_only: bool = True, on_input: InputCallback | None = None):
        self.view_only = view_only
        self.on_input = on_input
        self._buffer = bytearray()
        self._stage = "version"
        self._version = 0.0
        self._keys_down: dict[tuple[int, int | None], bytes] = {}  # (keysym, keycode) -> the press
        self._pointer = (0, 0, 0)  # x, y, button mask last forwarded

    @property
    def handshake_done(self) -> bool:
        return self._stage == "normal"

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while True:
            message = self._next_message()
            if message is None:
                return bytes(out)
            out += message

    def release_all(self) -> bytes:
        """RFB that lets go of every key and button this connection still holds down, for
        when it turns view-only or goes away in the middle of a drag or a key press."""
        out = bytearray()
        for (keysym, keycode), press in self._keys_down.items():
            if keycode is None:
                out += struct.pack(">BBxxI", 4, 0, keysym)
            else:
                out += press[:2] + b"\x00\x00" + press[4:]
        self._keys_down.clear()
        x, y, mask = self._pointer
        if mask:
            out += struct.pack(">BBHH", 5, 0, x, y)
            self._pointer = (x, y, 0)
        return bytes(out)

    # -- parsing --

    def _take(self, size: int) -> bytes | None:
        if len(self._buffer) < size:
            return None
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        return taken

    def _next_message(self) -> bytes | None:
        if self._stage == "version":
            return self._handshake_version()
        if self._stage == "security":
            return self._handshake_security()
        if self._stage == "client_init":
            taken = self._take(1)
            if taken is not None:
                self._stage = "normal"
            return taken
        return self._normal_message()

    def _handshake_version(self) -> bytes | None:
        taken = self._take(12)
        if taken is None:
            return None
        if taken not in _VERSIONS:
            raise RfbProtocolError(f"unsupported RFB protocol version {taken[:11]!r}")
        self._version = _VERSIONS[taken]
        # In 3.3 the server chooses the security type and the client sends nothing for it.
        self._stage = "client_init" if self._version == 3.3 else "security"
        return taken

    def _handshake_security(self) -> bytes | None:
        taken = self._take(1)
        if taken is None:
            return None
        if taken[0] != _SECURITY_NONE:
            raise RfbProtocolError(f"security type {taken[0]} is not supported through the bridge (only None, 1)")
        self._stage = "client_init"
        return taken

    def _message_length(self) -> int | None:
        """The length of the message at the head of the buffer; None until enough of its
        header has arrived to tell."""
        buffer = self._buffer
        kind = buffer[0]
        if kind in _FIXED_LENGTHS:
            return _FIXED_LENGTHS[kind]
        if kind == 2:  # SetEncodings: u16 count at 2
            return None if len(buffer) < 4 else 4 + 4 * struct.unpack_from(">H", buffer, 2)[0]
        if kind == 6:  # ClientCutText: s32 length at 4, negative for the extended format
            if len(buffer) < 8:
                return None
            size = abs(struct.unpack_from(">i", buffer, 4)[0])
            if size > MAX_CUT_TEXT_BYTES:
                raise RfbProtocolError(f"clipboard text of {size} bytes is over the limit of {MAX_CUT_TEXT_BYTES}")
            return 8 + size
        if kind == 248:  # ClientFence: u8 payload length at 8
            return None if len(buffer) < 9 else 9 + buffer[8]
        if kind == 251:  # SetDesktopSize: u8 screen count at 6, 16 bytes each
            return None if len(buffer) < 8 else 8 + 16 * buffer[6]
        if kind == 255:  # QEMU: only the extended key event (subtype 0) has a known length
            if len(buffer) < 2:
                return None
            if buffer[1] != 0:
                raise RfbProtocolError(f"QEMU client message subtype {buffer[1]} is not supported through the bridge")
            return 12
        raise RfbProtocolError(f"RFB client message type {kind} is not supported through the bridge")

    def _normal_message(self) -> bytes | None:
        if not self._buffer:
            return None
        length = self._message_length()
        if length is None:
            return None
        message = self._take(length)
        if message is None:
            return None
        kind, fields = decode_client_message(message)
        if kind not in INPUT_KINDS:
            return message
        if self.view_only:
            return b""
        self._track(kind, fields, message)
        if self.on_input is not None:
            self.on_input(kind, fields)
        return message

    def _track(self, kind: str, fields: dict[str, Any], message: bytes) -> None:
        if kind in ("key", "qemu_key"):
            key = (fields["keysym"], fields.get("keycode"))
            if fields["down"]:
                self._keys_down[key] = message
            else:
                self._keys_down.pop(key, None)
        elif kind == "pointer":
            self._pointer = (fields["x"], fields["y"], fields["buttons"])


def decode_client_message(message: bytes) -> tuple[str, dict[str, Any]]:
    """The kind and fields of one complete client-to-server message (after the handshake)."""
    kind = message[0]
    if kind == 0:
        bits_per_pixel, depth, big_endian, true_colour = struct.unpack_from(">BBBB", message, 4)
        return "set_pixel_format", {
            "bits_per_pixel": bits_per_pixel, "depth": depth,
            "big_endian": bool(big_endian), "true_colour": bool(true_colour),
        }
    if kind == 2:
        count = struct.unpack_from(">H", message, 2)[0]
        return "set_encodings", {"encodings": list(struct.unpack_from(f">{count}i", message, 4))}
    if kind == 3:
        incremental, x, y, width, height = struct.unpack_from(">BHHHH", message, 1)
        return "update_request", {"incremental": bool(incremental), "x": x, "y": y, "width": width, "height": height}
    if kind == 4:
        down, keysym = struct.unpack_from(">BxxI", message, 1)
        return "key", {"down": bool(down), "keysym": keysym}
    if kind == 5:
        buttons, x, y = struct.unpack_from(">BHH", message, 1)
        return "pointer", {"x": x, "y": y, "buttons": buttons}
    if kind == 6:
        size = struct.unpack_from(">i", message, 4)[0]
        if size < 0:  # extended clipboard: flags and zlib data, not plain text
            return "clipboard", {"extended": True, "length": -size}
        return "clipboard", {"text": message[8:].decode("latin-1")}
    if kind == 150:
        enable, x, y, width, height = struct.unpack_from(">BHHHH", message, 1)
        return "continuous_updates", {"enable": bool(enable), "x": x, "y": y, "width": width, "height": height}
    if kind == 248:
        return "fence", {"flags": struct.unpack_from(">I", message, 4)[0], "payload": message[9:]}
    if kind == 250:
        return "xvp", {"version": message[2], "operation": message[3]}
    if kind == 251:
        width, height = struct.unpack_from(">HH", message, 2)
        return "set_desktop_size", {"width": width, "height": height, "screens": message[6]}
    if kind == 255 and message[1] == 0:
        down, keysym, keycode = struct.unpack_from(">HII", message, 2)
        return "qemu_key", {"down": bool(down), "keysym": keysym, "keycode": keycode}
    raise RfbProtocolError(f"RFB client message type {kind} is not supported through the bridge")


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

    def __init__(self, token: str, vnc_port: int, host: str = "127.0.0.1", on_input: InputCallback | None = None):
        self._token = token.encode()
        self.vnc_port = vnc_port
        self.host = host
        self.on_input = on_input

    def _authenticate(self, first: dict[str, Any]) -> bool:
        offered = first.get("token")
        if not isinstance(offered, str) or not offered:
            return False
        return hmac.compare_digest(offered.encode(), self._token)

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            try:
                message = await asyncio.wait_for(websocket.receive(), AUTH_TIMEOUT)
            except asyncio.TimeoutError:
                raise _Close(CLOSE_UNAUTHORIZED, "no token received") from None
            if message["type"] == "websocket.disconnect":
                return
            first = _control_message(message.get("text") or message.get("bytes") or b"")
            if not self._authenticate(first):
                raise _Close(CLOSE_UNAUTHORIZED, "missing or wrong token")
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.vnc_port), CONNECT_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                raise _Close(CLOSE_TRY_AGAIN, "the VNC server is not reachable, try again shortly") from None
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
                    return CLOSE_NORMAL, "closed by the viewer"
                data = message.get("bytes")
                if data is None:
                    control = _control_message(message.get("text") or "")
                    if not isinstance(control.get("interactive"), bool):
                        return CLOSE_POLICY, 'control messages are {"interactive": true|false}'
                    if control["interactive"] is False and not parser.view_only:
                        writer.write(parser.release_all())
                    parser.view_only = not control["interactive"]
                    continue
                try:
                    forward = parser.feed(data)
                except RfbProtocolError as error:
                    return CLOSE_POLICY, str(error)[:120]
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
                    return CLOSE_NORMAL, "the VNC server ended the session"
                await websocket.send_bytes(chunk)  # waits while the browser is behind

        tasks = [asyncio.ensure_future(browser_to_vnc()), asyncio.ensure_future(vnc_to_browser())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finished = next(iter(done))
        error = finished.exception()
        if error is None:
            return finished.result()
        if isinstance(error, (OSError, RuntimeError, WebSocketDisconnect)):
            return CLOSE_NORMAL, "connection ended"
        logger.warning("vnc bridge: %s", type(error).__name__)
        return 1011, "bridge error"


def install_vnc_bridge(app: FastAPI, token: str) -> VncBridge:
    """Adds WS /vnc; the bridge is also app.state.vnc_bridge (set its on_input to listen)."""
    bridge = VncBridge(token, app.state.vnc_port)
    app.state.vnc_bridge = bridge

    @app.websocket(VNC_PATH)
    async def vnc(websocket: WebSocket) -> None:
        await bridge.serve(websocket)

    return bridge
