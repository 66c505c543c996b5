"""Request bodies over a limit are refused with 413 before anything parses them."""

from __future__ import annotations

from .asgi import ASGIApp, Message, Receive, Scope, Send, header, send_json_error

DEFAULT_LIMIT = 2 * 1024 * 1024


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int = DEFAULT_LIMIT):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"The request body is larger than {self.limit} bytes."
        length = header(scope, b"content-length")
        if length.isdigit() and int(length) > self.limit:
            return await send_json_error(send, 413, "body_too_large", message)
        received = 0
        refused = False

        async def counting_receive() -> Message:
            # The framework turns an exception raised while reading into its own 400, so an
            # oversized streamed body is answered here and the app sees the client leave.
            nonlocal received, refused
            event = await receive()
            if event["type"] == "http.request" and not refused:
                received += len(event.get("body", b""))
                if received > self.limit:
                    refused = True
                    await send_json_error(send, 413, "body_too_large", message)
                    return {"type": "http.disconnect"}
            return event

        async def guarded_send(event: Message) -> None:
            if not refused:  # once refused, nothing the app says reaches the client
                await send(event)

        await self.app(scope, counting_receive, guarded_send)
