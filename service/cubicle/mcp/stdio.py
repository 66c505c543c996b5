"""`cubicle mcp --desktop URL`: the MCP server over stdio, for clients that launch a command
(Claude Desktop, or Claude Code without HTTP). It reaches the desktop over its HTTP API with
the desktop's token, read from $CUBICLE_TOKEN or a file (never from the command line, which
other users of the machine can read). The process serves one client: one session.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from mcp.server import ServerRequestContext
from mcp.server.stdio import stdio_server

from cubicle.client import AsyncDesktopClient, CubicleError

from .http import API_TIMEOUT_S
from .server import create_server
from .space import SessionSpaces

TOKEN_VARIABLE = "CUBICLE_TOKEN"
SESSION = "stdio"


class StdioFailure(Exception):
    """The command cannot serve: a message for its user, on stderr."""


def read_token(token_file: str | None) -> str:
    """The token from the file when one is named, else from $CUBICLE_TOKEN."""
    if token_file is not None:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise StdioFailure(f"cannot read the token file {token_file}: {error}") from None
        if not token:
            raise StdioFailure(f"the token file {token_file} is empty")
        return token
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise StdioFailure(f"no token: set {TOKEN_VARIABLE} or pass --token-file FILE (a file holding the desktop's token)")
    return token


class RemoteDesktop:
    """One client of the desktop's API for the process's one session."""

    def __init__(self, client: AsyncDesktopClient):
        self.client = client

    def session_key(self, ctx: ServerRequestContext[Any, Any]) -> str | None:
        return SESSION

    @asynccontextmanager
    async def desktop(self, ctx: ServerRequestContext[Any, Any]) -> AsyncIterator[AsyncDesktopClient]:
        yield self.client


async def _check(client: AsyncDesktopClient, url: str) -> None:
    """A wrong token or a URL that is no desktop will not mend itself: say so now. A desktop
    still starting may: the tools say so call by call."""
    try:
        await client.screen()
    except CubicleError as error:
        if error.status in (401, 404):
            raise StdioFailure(f"the desktop at {url} refused: {error}") from None
    except httpx.HTTPError:
        pass


async def serve(url: str, token: str) -> None:
    async with AsyncDesktopClient(url, token, timeout=API_TIMEOUT_S) as client:
        await _check(client, url)
        server = create_server(RemoteDesktop(client), SessionSpaces(), handshake_only=False)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())


def run(url: str, token_file: str | None) -> int:
    try:
        anyio.run(serve, url.rstrip("/"), read_token(token_file))
    except StdioFailure as failure:
        print(f"cubicle mcp: {failure}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0
