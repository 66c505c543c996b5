"""`cubicle serve`: run the API with uvicorn against an X display."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import uvicorn

from .app import create_app
from cubicle.web import new_token

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's malloc.h


def _keep_freed_memory() -> None:
    """Every screenshot allocates a few 3-4 MB buffers. By default glibc maps each with mmap
    and unmaps it when freed, so the next frame page-faults all of it back in: in a VM that
    tripled the time of a PNG round trip. Fixed thresholds make freed buffers get reused."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(_M_MMAP_THRESHOLD, 64 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):
        pass  # not glibc: nothing to tune


def _close_memory_to_others() -> None:
    """Not dumpable: /proc/<pid>/mem, environ and ptrace are closed even to processes of the
    same user (programs on the desktop, where a host runs everything as one user)."""
    PR_SET_DUMPABLE = 4
    try:
        ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux


def _read_token() -> str:
    """CUBICLE_TOKEN, else the file CUBICLE_TOKEN_FILE names. Taken out of the environment
    afterwards, so the apps, shells and clipboard helpers this server starts never see it."""
    token = os.environ.pop("CUBICLE_TOKEN", "").strip()
    path = os.environ.get("CUBICLE_TOKEN_FILE")
    if not token and path:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    return token


def serve(display: str | None, host: str, port: int, vnc_port: int) -> None:
    _keep_freed_memory()
    _close_memory_to_others()
    display = display or os.environ.get("DISPLAY") or ":0"
    token = _read_token()
    if not token:
        token = new_token()
        # Printed once, to the console of whoever started the server; never logged per request.
        print(f"cubicle: no CUBICLE_TOKEN set, generated one for this run: {token}", file=sys.stderr, flush=True)
    app = create_app(token=token, display=display, vnc_port=vnc_port)
    print(f"cubicle: serving display {display} on http://{host}:{port}", file=sys.stderr, flush=True)
    # Access logs off: URLs carry no secrets here, but there is no reason to keep them either.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
