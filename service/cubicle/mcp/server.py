"""The MCP server of a desktop: the SDK's low-level `Server` with the tool table, reaching the
desktop the way its transport says (`DesktopReach`: the in-process API for /mcp, a URL for
stdio).

The server keeps a session's coordinate space between its calls. Over HTTP only the protocol
revisions of the initialize handshake have sessions, so there its `server/discover` names
those alone: that is how a client of the 2026-07-28 revision is told to fall back to the
handshake (the SDKs' clients do). A request of that revision sent without asking still gets
an answer, in the default space (see space.py). Over stdio the process is the session,
whatever the revision.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from cubicle import __version__
from cubicle.client import AsyncDesktopClient

from .space import SessionSpaces
from .tools import ToolTable

SERVER_NAME = "cubicle"
INSTRUCTIONS = (
    "Operate a Linux desktop as a person would. Take a screenshot first, and whenever you need to see the result "
    "of an action: the coordinates of every call are pixels of your last screenshot (zoom looks closer without "
    "changing that). shell, read_file and write_file run as the desktop's user."
)


class DesktopReach(Protocol):
    """How the tools of one request reach the desktop, and which session the request is of."""

    def session_key(self, ctx: ServerRequestContext[Any, Any]) -> str | None: ...

    def desktop(self, ctx: ServerRequestContext[Any, Any]) -> AbstractAsyncContextManager[AsyncDesktopClient]: ...


def create_server(reach: DesktopReach, spaces: SessionSpaces, handshake_only: bool, table: ToolTable | None = None) -> Server[Any]:
    """`handshake_only`: steer clients to the revisions with sessions (for HTTP)."""
    table = table or ToolTable()

    async def list_tools(ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=table.definitions)

    async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name not in table.tools:
            # Not the tool's error but the call's: a protocol error, as the specification has it.
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool {params.name!r}; tools/list names the tools.")
        space = spaces.get(reach.session_key(ctx))
        async with reach.desktop(ctx) as desktop:
            return await table.call(params.name, params.arguments or {}, desktop, space)

    server: Server[Any] = Server(SERVER_NAME, version=__version__, title="cubicle desktop", instructions=INSTRUCTIONS,
                                 on_list_tools=list_tools, on_call_tool=call_tool)
    if not handshake_only:
        return server

    async def discover(ctx: ServerRequestContext[Any, Any], params: types.RequestParams | None) -> types.DiscoverResult:
        return types.DiscoverResult(supported_versions=list(HANDSHAKE_PROTOCOL_VERSIONS),
                                    capabilities=server.get_capabilities(), instructions=INSTRUCTIONS)

    server.add_request_handler("server/discover", types.RequestParams, discover)
    return server
