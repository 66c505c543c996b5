"""Screen capture through the MIT-SHM extension, spoken over python-xlib's own connection.

python-xlib has no MIT-SHM module, so the three requests needed are declared here. The
pixels land in a System V shared memory segment that the X server writes directly: no 4 MB
reply crosses the socket, which is what makes a full-screen grab take about a millisecond.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
from typing import TYPE_CHECKING

from Xlib import X
from Xlib.protocol import rq

if TYPE_CHECKING:
    from Xlib.display import Display
    from Xlib.xobject.drawable import Window

EXTENSION = "MIT-SHM"

_IPC_PRIVATE = 0
_IPC_CREAT = 0o1000
_IPC_RMID = 0

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.shmget.argtypes = (ctypes.c_int, ctypes.c_size_t, ctypes.c_int)
_libc.shmget.restype = ctypes.c_int
_libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
_libc.shmat.restype = ctypes.c_void_p
_libc.shmdt.argtypes = (ctypes.c_void_p,)
_libc.shmctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)


# python-xlib has no type information: its request classes are Any to mypy.
class _Attach(rq.Request):  # type: ignore[misc]
    _request = rq.Struct(
        rq.Card8("opcode"),
        rq.Opcode(1),
        rq.RequestLength(),
        rq.Card32("shmseg"),
        rq.Card32("shmid"),
        rq.Bool("read_only"),
        rq.Pad(3),
    )


class _Detach(rq.Request):  # type: ignore[misc]
    _request = rq.Struct(
        rq.Card8("opcode"),
        rq.Opcode(2),
        rq.RequestLength(),
        rq.Card32("shmseg"),
    )


class _GetImage(rq.ReplyRequest):  # type: ignore[misc]
    _request = rq.Struct(
        rq.Card8("opcode"),
        rq.Opcode(4),
        rq.RequestLength(),
        rq.Drawable("drawable"),
        rq.Int16("x"),
        rq.Int16("y"),
        rq.Card16("width"),
        rq.Card16("height"),
        rq.Card32("plane_mask"),
        rq.Card8("format"),
        rq.Pad(3),
        rq.Card32("shmseg"),
        rq.Card32("offset"),
    )
    _reply = rq.Struct(
        rq.ReplyCode(),
        rq.Card8("depth"),
        rq.Card16("sequence_number"),
        rq.ReplyLength(),
        rq.Card32("visual"),
        rq.Card32("size"),
        rq.Pad(16),
    )


def _segment_mode(display: Display) -> int:
    """Who may attach the segment. The X server attaches it with its own user's rights: when
    that is another user (the image runs the server and the X session as two users), others
    must be able to read and write it. What it holds is pixels of the screen, which every
    program on the display can read anyway."""
    try:
        credentials = display.display.socket.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, x_uid, _ = struct.unpack("3i", credentials)
    except (OSError, AttributeError):
        return 0o600  # not a local socket: MIT-SHM would not work anyway
    return 0o600 if x_uid == os.getuid() else 0o606


class ShmGrabber:
    """Grabs rectangles of the root window (32 bits per pixel, BGRX) into shared memory."""

    def __init__(self, display: Display, root: Window, max_width: int, max_height: int) -> None:
        self._display = display
        self._root = root
        # python-xlib only registers extensions it has modules for; ask the server directly.
        info = display.query_extension(EXTENSION)
        if info is None or not info.present:
            raise OSError("the X server has no MIT-SHM extension")
        self._opcode = info.major_opcode
        self._size = max_width * max_height * 4
        self._shmid = _libc.shmget(_IPC_PRIVATE, self._size, _IPC_CREAT | _segment_mode(display))
        if self._shmid < 0:
            raise OSError(ctypes.get_errno(), "shmget failed")
        address = _libc.shmat(self._shmid, None, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            _libc.shmctl(self._shmid, _IPC_RMID, None)
            raise OSError(ctypes.get_errno(), "shmat failed")
        self._address = address
        self._segment = display.display.allocate_resource_id()
        errors: list[Exception] = []
        try:
            _Attach(
                display=display.display,
                onerror=errors.append,
                opcode=self._opcode,
                shmseg=self._segment,
                shmid=self._shmid,
                read_only=False,
            )
            display.sync()
        finally:
            # Marked for removal now (even if X died meanwhile), so the segment vanishes with
            # us whatever happens; it lives on while attached.
            _libc.shmctl(self._shmid, _IPC_RMID, None)
        if errors:
            _libc.shmdt(self._address)
            raise OSError(f"the X server refused the shared memory segment: {errors[0]}")

    def grab(self, x: int, y: int, width: int, height: int) -> bytes:
        """Pixels of the rectangle, row after row, 4 bytes each (B, G, R, unused)."""
        return ctypes.string_at(self._address, self._grab(x, y, width, height))

    def grab_view(self, x: int, y: int, width: int, height: int) -> memoryview:
        """Like grab, but the segment itself rather than a copy: valid until the next grab or
        close. Release the view when done with it."""
        size = self._grab(x, y, width, height)
        return memoryview((ctypes.c_char * size).from_address(self._address)).cast("B")

    def _grab(self, x: int, y: int, width: int, height: int) -> int:
        """Has the X server write the rectangle into the segment; returns its size in bytes."""
        size = width * height * 4
        if size > self._size:
            raise ValueError("rectangle larger than the shared segment")
        _GetImage(
            display=self._display.display,
            opcode=self._opcode,
            drawable=self._root,
            x=x,
            y=y,
            width=width,
            height=height,
            plane_mask=0xFFFFFFFF,
            format=X.ZPixmap,
            shmseg=self._segment,
            offset=0,
        )
        return size

    def close(self) -> None:
        try:
            _Detach(display=self._display.display, opcode=self._opcode, shmseg=self._segment)
            self._display.flush()
        except Exception:
            pass  # the connection may already be gone; the memory is ours to free regardless
        _libc.shmdt(self._address)
