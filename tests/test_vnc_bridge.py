"""The /vnc bridge: its parser of the client-to-server RFB stream (unit tests), and the bridge
itself in front of the desktop's real x11vnc, spoken to by a raw WebSocket client (through the
desktop's server, and once in this process to hear its on_input)."""

from __future__ import annotations

import contextlib
import json
import struct
import time

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from cubicle.rfb import RfbClientParser, RfbProtocolError
from cubicle.server.app import ACCESS
from cubicle.server.vnc_bridge import install_vnc_bridge
from cubicle.web import TokenAuth, single_token

HANDSHAKE = b"RFB 003.008\n" + b"\x01" + b"\x01"  # version, security type None, ClientInit shared

SET_PIXEL_FORMAT = bytes([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
SET_ENCODINGS = struct.pack(">BxH3i", 2, 3, 7, 1, -239)
UPDATE_REQUEST = struct.pack(">BBHHHH", 3, 1, 0, 0, 1280, 800)
KEY_DOWN = struct.pack(">BBxxI", 4, 1, 0x61)
KEY_UP = struct.pack(">BBxxI", 4, 0, 0x61)
POINTER_PRESS = struct.pack(">BBHH", 5, 1, 300, 200)
POINTER_RELEASE = struct.pack(">BBHH", 5, 0, 300, 200)
CUT_TEXT = struct.pack(">BxxxI", 6, 5) + b"h\xe9llo"
CUT_TEXT_EXTENDED = struct.pack(">Bxxxi", 6, -4) + b"\x01\x00\x00\x01"
CONTINUOUS_UPDATES = struct.pack(">BBHHHH", 150, 1, 0, 0, 1280, 800)
FENCE = struct.pack(">BxxxIB", 248, 0x80000002, 3) + b"abc"
XVP = bytes([250, 0, 1, 2])
SET_DESKTOP_SIZE = struct.pack(">BxHHBx", 251, 1024, 768, 1) + struct.pack(">IHHHHI", 0, 0, 0, 1024, 768, 0)
QEMU_KEY = struct.pack(">BBHII", 255, 0, 1, 0x61, 30)

OTHER = [SET_PIXEL_FORMAT, SET_ENCODINGS, UPDATE_REQUEST, CONTINUOUS_UPDATES, FENCE]
INPUT = [KEY_DOWN, KEY_UP, POINTER_PRESS, POINTER_RELEASE, CUT_TEXT, CUT_TEXT_EXTENDED, XVP, SET_DESKTOP_SIZE, QEMU_KEY]


def recording_parser(view_only: bool) -> tuple[RfbClientParser, list]:
    seen: list = []
    return RfbClientParser(view_only=view_only, on_input=lambda kind, fields: seen.append((kind, fields))), seen


def test_every_message_passes_whole_when_interactive():
    parser, seen = recording_parser(view_only=False)
    stream = HANDSHAKE + b"".join(OTHER + INPUT)
    assert parser.feed(stream) == stream
    assert parser.handshake_done
    assert seen == [
        ("key", {"down": True, "keysym": 0x61}),
        ("key", {"down": False, "keysym": 0x61}),
        ("pointer", {"x": 300, "y": 200, "buttons": 1}),
        ("pointer", {"x": 300, "y": 200, "buttons": 0}),
        ("clipboard", {"text": "héllo"}),
        ("clipboard", {"extended": True, "length": 4}),
        ("xvp", {"version": 1, "operation": 2}),
        ("set_desktop_size", {"width": 1024, "height": 768, "screens": 1}),
        ("qemu_key", {"down": True, "keysym": 0x61, "keycode": 30}),
    ]


def test_view_only_drops_input_and_keeps_the_rest_in_order():
    parser, seen = recording_parser(view_only=True)
    mixed = [UPDATE_REQUEST, POINTER_PRESS, SET_ENCODINGS, KEY_DOWN, CUT_TEXT, FENCE, QEMU_KEY, XVP,
             SET_DESKTOP_SIZE, CONTINUOUS_UPDATES, SET_PIXEL_FORMAT]
    out = parser.feed(HANDSHAKE + b"".join(mixed))
    assert out == HANDSHAKE + UPDATE_REQUEST + SET_ENCODINGS + FENCE + CONTINUOUS_UPDATES + SET_PIXEL_FORMAT
    assert seen == []


@pytest.mark.parametrize("view_only", [True, False])
def test_a_stream_split_at_every_byte_gives_the_same_result(view_only):
    stream = HANDSHAKE + b"".join(OTHER + INPUT + OTHER)
    whole, _ = recording_parser(view_only)
    expected = whole.feed(stream)
    for piece_size in (1, 2, 3, 5, 7, 13, 64):
        parser, seen = recording_parser(view_only)
        out = b"".join(parser.feed(stream[i:i + piece_size]) for i in range(0, len(stream), piece_size))
        assert out == expected, piece_size
        assert len(seen) == (0 if view_only else len(INPUT))


def test_only_complete_messages_are_forwarded():
    parser, seen = recording_parser(view_only=False)
    assert parser.feed(HANDSHAKE + POINTER_PRESS[:4]) == HANDSHAKE
    assert seen == []
    assert parser.feed(POINTER_PRESS[4:] + CUT_TEXT[:9]) == POINTER_PRESS
    assert parser.feed(CUT_TEXT[9:]) == CUT_TEXT
    assert [kind for kind, _ in seen] == ["pointer", "clipboard"]


def test_handshake_of_protocol_3_3_has_no_security_byte():
    parser, _ = recording_parser(view_only=True)
    stream = b"RFB 003.003\n" + b"\x01" + UPDATE_REQUEST + POINTER_PRESS
    assert parser.feed(stream) == b"RFB 003.003\n\x01" + UPDATE_REQUEST


@pytest.mark.parametrize("stream, message", [
    (b"RFB 004.001\n", "version"),
    (b"RFB 003.008\n\x02", "security type 2"),
    (HANDSHAKE + bytes([7, 0, 0, 0]), "type 7"),
    (HANDSHAKE + bytes([255, 1, 0, 0]), "QEMU client message subtype 1"),
    (HANDSHAKE + struct.pack(">BxxxI", 6, 64 * 1024 * 1024), "over the limit"),
])
def test_what_cannot_be_parsed_safely_is_refused(stream, message):
    parser, _ = recording_parser(view_only=False)
    with pytest.raises(RfbProtocolError, match=message):
        parser.feed(stream)


def test_switching_to_view_only_releases_what_is_held():
    parser, _ = recording_parser(view_only=False)
    parser.feed(HANDSHAKE + KEY_DOWN + QEMU_KEY + POINTER_PRESS + struct.pack(">BBHH", 5, 1, 310, 205))
    released = parser.release_all()
    assert released == (struct.pack(">BBxxI", 4, 0, 0x61) + struct.pack(">BBHII", 255, 0, 0, 0x61, 30)
                        + struct.pack(">BBHH", 5, 0, 310, 205))
    assert parser.release_all() == b""
    parser.view_only = True
    assert parser.feed(KEY_UP + POINTER_RELEASE) == b""


def test_keys_released_by_the_client_are_not_released_again():
    parser, _ = recording_parser(view_only=False)
    parser.feed(HANDSHAKE + KEY_DOWN + KEY_UP + POINTER_PRESS + POINTER_RELEASE)
    assert parser.release_all() == b""


# -- the bridge, against the desktop's x11vnc --

def ws_url(desktop) -> str:
    return desktop.url.replace("http://", "ws://") + "/vnc"


def rfb_handshake(send, recv) -> tuple[int, int]:
    """The client's side of the RFB 3.8 handshake, security None; returns the screen size."""
    received = bytearray()

    def read(count: int) -> bytes:
        while len(received) < count:
            received.extend(recv())
        taken = bytes(received[:count])
        del received[:count]
        return taken

    assert read(12) == b"RFB 003.008\n"
    send(b"RFB 003.008\n")
    count = read(1)[0]
    assert 1 in read(count)
    send(b"\x01")
    assert read(4) == b"\x00\x00\x00\x00"  # SecurityResult OK
    send(b"\x01")
    width, height = struct.unpack(">HH", read(4))
    read(16)
    read(struct.unpack(">I", read(4))[0])
    return width, height


@contextlib.contextmanager
def rfb_session(desktop, interactive: bool):
    """A raw WebSocket to the desktop's /vnc, authenticated and through the RFB handshake;
    yields it and the screen size."""
    with connect(ws_url(desktop), open_timeout=10) as ws:
        ws.send(json.dumps({"token": desktop.token, "interactive": interactive}))
        yield ws, rfb_handshake(ws.send, lambda: ws.recv(timeout=10))


def pointer(x: int, y: int, buttons: int) -> bytes:
    return struct.pack(">BBHH", 5, buttons, x, y)


def key(keysym: int, down: bool) -> bytes:
    return struct.pack(">BBxxI", 4, down, keysym)


def test_bridge_drops_view_only_input_and_passes_it_once_interactive(desktop, recorder):
    x, y = recorder.at(150, 100)
    with rfb_session(desktop, interactive=False) as (ws, size):
        assert size == (1280, 800)
        ws.send(pointer(x, y, 0) + pointer(x, y, 1) + pointer(x, y, 0))
        ws.send(key(0x71, True) + key(0x71, False))  # q
        time.sleep(1.0)
        assert recorder.records("press") == [] and recorder.records("key_press") == []
        ws.send(json.dumps({"interactive": True}))
        ws.send(pointer(x, y, 0) + pointer(x, y, 1) + pointer(x, y, 0))
        press = recorder.wait_for(lambda r: r["type"] == "press")
        assert (press["x_root"], press["y_root"], press["button"]) == (x, y, 1)
        ws.send(key(0x71, True) + key(0x71, False))
        assert recorder.wait_for(lambda r: r["type"] == "key_press")["keysym"] == "q"


def test_bridge_releases_a_held_button_when_the_viewer_leaves(desktop, recorder):
    x, y = recorder.at(200, 150)
    with rfb_session(desktop, interactive=True) as (ws, _):
        ws.send(pointer(x, y, 0) + pointer(x, y, 1))
        recorder.wait_for(lambda r: r["type"] == "press")
    release = recorder.wait_for(lambda r: r["type"] == "release")
    assert (release["x_root"], release["y_root"], release["button"]) == (x, y, 1)


def test_bridge_closes_with_1008_on_an_unsupported_message(desktop):
    with rfb_session(desktop, interactive=True) as (ws, _):
        ws.send(bytes([99, 0, 0, 0]))
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
        assert ws.close_code == 1008


def test_on_input_hears_what_an_interactive_viewer_sends_and_cannot_break_it(desktop, recorder):
    # The bridge in this process, in front of the desktop's own x11vnc.
    app = FastAPI()
    app.state.vnc_port = desktop.vnc_port
    bridge = install_vnc_bridge(app)
    app.add_middleware(TokenAuth, check=single_token("in-process-token"), rules=ACCESS)
    heard: list = []

    def listener(kind, fields):
        heard.append((kind, fields))
        raise ValueError("a faulty listener")

    bridge.on_input = listener
    x, y = recorder.at(120, 90)
    with TestClient(app) as http, http.websocket_connect("/vnc") as ws:
        ws.send_text(json.dumps({"token": "in-process-token", "interactive": True}))
        assert rfb_handshake(ws.send_bytes, ws.receive_bytes) == (1280, 800)
        ws.send_bytes(pointer(x, y, 0) + pointer(x, y, 1))
        ws.send_bytes(pointer(x, y, 0))
        release = recorder.wait_for(lambda r: r["type"] == "release")
    assert (release["x_root"], release["y_root"]) == (x, y)
    assert heard == [
        ("pointer", {"x": x, "y": y, "buttons": 0}),
        ("pointer", {"x": x, "y": y, "buttons": 1}),
        ("pointer", {"x": x, "y": y, "buttons": 0}),
    ]
