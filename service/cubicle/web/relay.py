"""Two-way relays of a WebSocket to another connection (VNC, CDP, a desktop behind the fleet):
how one ends the other."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from . import closes


async def first_to_end(pumps: list[Coroutine[Any, Any, tuple[int, str]]], ended: tuple[type[BaseException], ...],
                       what: str) -> tuple[int, str]:
    """Run a bridge's two pumps (one per direction) until either ends, cancel the other, and
    return the close code and reason for the browser: the pump's own, 1000 when a connection
    just went away (`ended`), 1011 for anything else (logged as a fault of `what`)."""
    tasks = [asyncio.ensure_future(pump) for pump in pumps]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    error = next(iter(done)).exception()
    if error is None:
        return next(iter(done)).result()
    if isinstance(error, ended):
        return closes.NORMAL, "connection ended"
    logging.getLogger(__name__).warning("%s: %s", what, type(error).__name__)
    return closes.ERROR, "bridge error"

