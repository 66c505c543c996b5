"""Real MCP clients for the tests of the MCP face: the official SDK's (over streamable HTTP
and over stdio, launching `cubicle mcp`) and the MCP Inspector's CLI (installed from
tests/mcp-inspector's lockfile by scripts/setup)."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from PIL import Image

from support import ROOT

INSPECTOR = ROOT / "tests" / "mcp-inspector" / "node_modules" / ".bin" / "inspector"


@contextlib.asynccontextmanager
async def over_http(url: str, token: str | None, mode: str = "auto") -> AsyncIterator[Client]:
    """An MCP session with the desktop (or fleet) at `url`, its token as the bearer header."""
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with httpx2.AsyncClient(headers=headers, timeout=120) as http:
        async with Client(streamable_http_client(url + "/mcp", http_client=http), mode=mode) as client:
            yield client


def stdio_parameters(url: str, token_file: Path | None, env: dict[str, str] | None = None) -> StdioServerParameters:
    args = ["-m", "cubicle", "mcp", "--desktop", url] + (["--token-file", str(token_file)] if token_file else [])
    return StdioServerParameters(command=sys.executable, args=args, env=env or {"PATH": os.environ["PATH"]})


@contextlib.asynccontextmanager
async def over_stdio(url: str, token_file: Path) -> AsyncIterator[Client]:
    """An MCP session with `cubicle mcp --desktop URL --token-file FILE`, launched as a command."""
    async with Client(stdio_parameters(url, token_file)) as client:
        yield client


def token_file(directory: Path, token: str) -> Path:
    path = directory / "cubicle-token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def image_of(result: types.CallToolResult) -> Image.Image:
    (block,) = [block for block in result.content if isinstance(block, types.ImageContent)]
    return Image.open(io.BytesIO(base64.b64decode(block.data))).convert("RGB")


def ok(result: types.CallToolResult) -> types.CallToolResult:
    assert not result.is_error, text_of(result)
    return result


# -- the MCP Inspector's CLI ----------------------------------------------------------------------


@dataclass
class InspectorRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def answer(self) -> dict[str, Any]:
        """The JSON the CLI printed on stdout."""
        return json.loads(self.stdout)


def inspector(home: Path, *args: str, timeout: float = 120) -> InspectorRun:
    """`inspector --cli ARGS`, with a home and a catalog of its own (nothing written to the user's)."""
    if not INSPECTOR.exists():
        pytest.fail(f"{INSPECTOR} is missing: scripts/setup installs it (npm ci in tests/mcp-inspector)")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "MCP_CATALOG_PATH": str(home / "mcp.json"), "NO_COLOR": "1"}
    done = subprocess.run([str(INSPECTOR), "--cli", *args], capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)
    return InspectorRun(done.returncode, done.stdout, done.stderr)
