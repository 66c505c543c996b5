"""`cubicle serve`: run the API with uvicorn against an X display."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

import uvicorn

from cubicle.web import new_token
from cubicle.web.auth import DIGEST_PREFIX, Credential, digest_of

from .app import create_app

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


def _read_credential() -> Credential | None:
    """CUBICLE_TOKEN (the token, or 'sha256:<its digest>'), else the file CUBICLE_TOKEN_FILE
    names. Taken out of the environment afterwards, so the apps, shells and clipboard helpers
    this server starts never see it.

    A token replaced through PUT /token is kept beside that file (`<file>.rotated`: the new
    digest and the digest it replaced), so it outlives a restart of the server or of its
    container, but not a change of the configured token."""
    given = os.environ.pop("CUBICLE_TOKEN", "").strip()
    path = os.environ.get("CUBICLE_TOKEN_FILE")
    if not given and path and os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            given = handle.read().strip()
    if not given:
        return None
    configured = Credential.from_text(given)
    plain = None if given.startswith(DIGEST_PREFIX) else given  # given as a token, not its digest
    if not path:
        return Credential(configured.digest, None, operator_digest(), token=plain)
    rotated_path = path + ".rotated"

    def store(digest: str) -> None:
        _write_private(rotated_path, f"{digest}\n{configured.digest}\n")

    try:
        with open(rotated_path, encoding="utf-8") as handle:
            new, base = (handle.read().split() + ["", ""])[:2]
    except OSError:
        new, base = "", ""
    if new and base == configured.digest:
        return Credential(new, store, operator_digest())  # rotated: only its digest is known
    return Credential(configured.digest, store, operator_digest(), token=plain)


def operator_digest() -> str | None:
    """CUBICLE_OPERATOR_TOKEN: the digest ('sha256:<hex>') of the fleet's way into this desktop."""
    given = os.environ.pop("CUBICLE_OPERATOR_TOKEN", "").strip()
    return digest_of(given) if given else None


def _write_private(path: str, text: str) -> None:
    temporary = f"{path}.new"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def serve(display: str | None, host: str, port: int, vnc_port: int, cdp_port: int = 9222) -> None:
    _keep_freed_memory()
    _close_memory_to_others()
    display = display or os.environ.get("DISPLAY") or ":0"
    credential = _read_credential()
    if credential is None:
        token = new_token()
        # Printed once, to the console of whoever started the server; never logged per request.
        print(f"cubicle: no CUBICLE_TOKEN set, generated one for this run: {token}", file=sys.stderr, flush=True)
        credential = Credential.from_text(token)
    app = create_app(token=credential, display=display, vnc_port=vnc_port, cdp_port=cdp_port)
    print(f"cubicle: serving display {display} on http://{host}:{port}", file=sys.stderr, flush=True)
    # Access logs off: URLs carry no secrets here, but there is no reason to keep them either.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
