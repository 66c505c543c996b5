"""The client's half of RFB (the VNC protocol), parsed as it streams by.

Both bridges that carry a browser's VNC connection use it: the desktop's WS /vnc (to
x11vnc) and the worker's live view of a run (to the desktop's /vnc). Parsing lets a bridge
keep view-only connections from sending input, let go of keys and buttons a viewer still
holds when it leaves, and see a person's input (to record it while they have control).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

MAX_CUT_TEXT_BYTES = 4 * 1024 * 1024

InputCallback = Callable[[str, dict[str, Any]], None]


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


