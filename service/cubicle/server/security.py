"""Access control and request-size limits, as plain ASGI middleware (they cover WebSockets too).

Only the Authorization header counts: a token in a query string would end up in logs and
browser history, so it is never read from there. Browsers cannot set headers on a
WebSocket: the WebSocket routes named in `in_band_websockets` check the token themselves,
inside the connection, before anything else happens on it.
"""

from __future__ import annotations

import hmac
import json
import secrets

# The docs and viewer pages and their script files hold no data; the schema and the screen
# they load need the token.
PUBLIC_PATHS = frozenset({"/health", "/docs", "/view"})
PUBLIC_PREFIXES = ("/docs/static/", "/view/novnc/")
MAX_BODY_BYTES = 2 * 1024 * 1024


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_matches(expected: str, header_value: str | None) -> bool:
    if not header_value or not header_value.startswith("Bearer "):
        return False
    # compare_digest takes the same time wherever the first difference is.
    return hmac.compare_digest(header_value[7:].strip().encode(), expected.encode())


async def _send_json(send, status: int, code: str, message: str, headers: list | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + (headers or []),
    })
    await send({"type": "http.response.body", "body": body})


class TokenAuth:
    def __init__(self, app, token: str, in_band_websockets: frozenset[str] = frozenset()):
        self.app = app
        self.token = token
        self.in_band_websockets = in_band_websockets  # WebSocket paths that authenticate in their first message

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket" and path in self.in_band_websockets:
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        value = headers.get(b"authorization", b"").decode("latin-1")
        if token_matches(self.token, value):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401, "reason": "missing or wrong token"})
            return
        await _send_json(
            send, 401, "unauthorized",
            "Missing or wrong token. Send the header 'Authorization: Bearer <token>' "
            "(the token is CUBICLE_TOKEN, or the one the server printed at start).",
            [(b"www-authenticate", b"Bearer")],
        )


class BodyLimit:
    """Refuses bodies over MAX_BODY_BYTES with 413 before they are parsed."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"The request body is larger than {self.limit} bytes."
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            return await _send_json(send, 413, "body_too_large", message)
        received = 0
        refused = False

        async def counting_receive():
            # The framework turns an exception raised while reading into its own 400, so an
            # oversized streamed body is answered here and the app sees the client leave.
            nonlocal received, refused
            event = await receive()
            if event["type"] == "http.request" and not refused:
                received += len(event.get("body", b""))
                if received > self.limit:
                    refused = True
                    await _send_json(send, 413, "body_too_large", message)
                    return {"type": "http.disconnect"}
            return event

        async def guarded_send(event):
            if not refused:  # once refused, nothing the app says reaches the client
                await send(event)

        await self.app(scope, counting_receive, guarded_send)
