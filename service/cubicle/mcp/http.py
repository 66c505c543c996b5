"""/mcp on the desktop's own server: the MCP server over streamable HTTP.

The route sits behind the desktop's token middleware like every other: a request without the
token (`Authorization: Bearer`, never in the URL) is refused before MCP reads it. Each tool
call then goes to the desktop's API in-process (the app itself, through httpx's ASGI
transport) with the caller's own token, so it passes the same middleware, checks and error
handlers as a request from outside, and a token replaced meanwhile stops working here too.

A session is the transport's (`Mcp-Session-Id`); its coordinate space is forgotten when the
client ends it (DELETE). Through the fleet, /desktops/{id}/mcp is proxied here like any route.

The SDK (some 25 MB and a second or more to import) is loaded when /mcp is first asked for,
off the event loop, not when the desktop starts: a desktop nobody reaches over MCP pays nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import httpx

from cubicle.client import AsyncDesktopClient
from cubicle.web.asgi import ASGIApp, Receive, Scope, Send, header, send_json_error
from cubicle.web.auth import bearer_token

from .space import SessionSpaces

if TYPE_CHECKING:
    from mcp.server import ServerRequestContext
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

MCP_PATH = "/mcp"
SESSION_HEADER = "mcp-session-id"
MAX_SESSIONS = 100  # at once, on one desktop; a client past that is answered 503
SESSION_IDLE_TIMEOUT_S = 30 * 60
API_TIMEOUT_S = 330.0  # a call may keep the desktop busy up to 300 s (wait, hold_key)


class InProcessDesktop:
    """The desktop's own API, called in-process with the token the MCP request carried."""

    def __init__(self, api: ASGIApp):
        self._api = api

    def session_key(self, ctx: ServerRequestContext[Any, Any]) -> str | None:
        return ctx.request.headers.get(SESSION_HEADER) if ctx.request is not None else None

    @asynccontextmanager
    async def desktop(self, ctx: ServerRequestContext[Any, Any]) -> AsyncIterator[AsyncDesktopClient]:
        token = bearer_token(ctx.request.headers.get("authorization", "")) if ctx.request is not None else None
        transport = httpx.ASGITransport(app=self._api)
        async with AsyncDesktopClient("http://desktop", token or "", timeout=API_TIMEOUT_S, transport=transport) as client:
            yield client


class McpEndpoint:
    """The ASGI app of /mcp; `running()` belongs in the app's lifespan."""

    def __init__(self, api: ASGIApp):
        self._api = api
        self.spaces = SessionSpaces()
        self.manager: StreamableHTTPSessionManager | None = None
        self._wanted: anyio.Event | None = None  # set by the first request
        self._started: anyio.Event | None = None  # the manager runs, or could not be made
        self._failure: str | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            self._wanted, self._started = anyio.Event(), anyio.Event()
            tasks.start_soon(self._serve_once_wanted)
            try:
                yield
            finally:
                self._wanted = None
                tasks.cancel_scope.cancel()

    def _new_manager(self) -> StreamableHTTPSessionManager:
        from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

        from .server import create_server

        server = create_server(InProcessDesktop(self._api), self.spaces, handshake_only=True)
        return StreamableHTTPSessionManager(app=server, session_idle_timeout=SESSION_IDLE_TIMEOUT_S,
                                            max_sessions=MAX_SESSIONS)

    async def _serve_once_wanted(self) -> None:
        assert self._wanted is not None and self._started is not None
        await self._wanted.wait()
        try:
            manager = await anyio.to_thread.run_sync(self._new_manager)
        except Exception as error:  # the desktop goes on without its MCP face, and says why
            self._failure = f"{type(error).__name__}: {error}"
            self._started.set()
            return
        async with manager.run():
            self.manager = manager
            self._started.set()
            await anyio.sleep_forever()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted, started = self._wanted, self._started
        if wanted is None or started is None:
            await send_json_error(send, 503, "mcp_unavailable", "The MCP server is not running (the app was served "
                                  "without its lifespan); try again once the desktop has started.")
            return
        wanted.set()
        await started.wait()
        if self.manager is None:
            await send_json_error(send, 500, "mcp_unavailable", f"The MCP server could not start: {self._failure}.")
            return
        await self.manager.handle_request(scope, receive, send)
        session = header(scope, SESSION_HEADER.encode())
        if scope.get("method") == "DELETE" and session:
            self.spaces.forget(session)
