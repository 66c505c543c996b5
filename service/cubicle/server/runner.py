"""`cubicle runner`: the desktop user's half of the API. It runs the shell commands, the file
reads and writes and the programs that the API server is asked for, as the desktop user, and
answers the server over a unix socket.

Why a process of its own: in the desktop image the server runs as another user than the
desktop's programs, so that nothing a program on the desktop can read (a file, a process's
memory or environment, a log, a socket) holds the API token. The runner holds no secret:
whoever can reach its socket can already run programs as the desktop user. On a host
(`cubicle desktop`) its socket is a file in the state folder, which only the user can open;
in the image it is in the abstract namespace of the pair's private network namespace.
"""

from __future__ import annotations

import os
import socket
import sys
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from cubicle import __version__
from cubicle.accessibility import TreeRequest
from cubicle.web import ApiError

from . import atspi, errors, host_routes
from .desktop_user import DesktopUser, LocalUser, socket_address

ACCESSIBILITY_BUS_WAIT_S = 5.0


class LaunchArgv(BaseModel):
    model_config = ConfigDict(extra="forbid")
    argv: list[str] = Field(min_length=1, max_length=1000)


launch_router = APIRouter()


@launch_router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@launch_router.post("/launch")
async def launch(body: LaunchArgv, user: DesktopUser = Depends(host_routes.get_user)) -> dict[str, int]:
    if not body.argv[0] or any("\0" in part for part in body.argv):
        raise ApiError(422, "invalid_command", "argv[0] is empty or an argument holds a NUL character.")
    return {"pid": await user.launch(body.argv)}


@launch_router.post("/accessibility")
async def accessibility(body: TreeRequest, user: Annotated[DesktopUser, Depends(host_routes.get_user)]) -> JSONResponse:
    """The accessibility tree (the server shapes it for GET /accessibility)."""
    return JSONResponse((await user.read_accessibility(body)).model_dump(exclude_none=True))


@launch_router.post("/browser")
async def browser(user: Annotated[DesktopUser, Depends(host_routes.get_user)]) -> dict[str, str]:
    """Chromium running on the display (started if need be): where its DevTools answer."""
    return {"websocket": await user.ensure_browser()}


def create_runner_app(display: str, cdp_port: int = 9222) -> FastAPI:
    user = LocalUser(display, cdp_port)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await user.close()

    app = FastAPI(title="cubicle runner", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.user = user
    app.include_router(host_routes.router)
    app.include_router(launch_router)
    errors.install(app)
    return app


def listening_socket(spec: str) -> socket.socket:
    """Bound and listening; a path socket is made 0600 (only this user may connect)."""
    address = socket_address(spec)
    if not address.startswith("\0") and os.path.exists(address):
        os.unlink(address)  # left by a runner that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(address)
    finally:
        os.umask(old_umask)
    sock.listen(128)
    return sock


def serve_runner(display: str | None, socket_spec: str, cdp_port: int = 9222) -> None:
    import uvicorn

    display = display or os.environ.get("DISPLAY") or ":0"
    # Programs are started only through us: once we answer, the accessibility bus is there for them.
    if os.environ.get(atspi.BUS_ADDRESS_VARIABLE) and not atspi.wait_for_bus(ACCESSIBILITY_BUS_WAIT_S):
        print("cubicle runner: the accessibility bus does not answer yet; apps started now publish no tree",
              file=sys.stderr, flush=True)
    sock = listening_socket(socket_spec)
    print(f"cubicle runner: display {display}, socket {socket_spec}", file=sys.stderr, flush=True)
    uvicorn.run(create_runner_app(display, cdp_port), fd=sock.fileno(), log_level="warning", access_log=False)
