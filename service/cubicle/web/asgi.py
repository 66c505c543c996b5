"""The few ASGI messages the middleware sends itself: a JSON error before any app has run."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json_error(send: Send, status: int, code: str, message: str,
                          headers: list[tuple[bytes, bytes]] | None = None, prefix: str = "http") -> None:
    """An error response in the one shape. prefix "websocket.http" answers a WebSocket
    handshake with it (the ASGI extension uvicorn implements)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({
        "type": f"{prefix}.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + (headers or []),
    })
    await send({"type": f"{prefix}.response.body", "body": body})


def header(scope: Scope, name: bytes) -> str:
    """A request header's value ('' when absent); names are lower case in ASGI."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return ""
