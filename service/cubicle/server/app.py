"""Assembles the FastAPI application: routes, errors, auth, body limits, the live viewer."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from cubicle import __version__, x11

from . import errors, openapi
from .docs import install_docs
from .routes import router
from .security import PUBLIC_PATHS, BodyLimit, TokenAuth
from .service import DesktopService
from .viewer import install_viewer
from .vnc_bridge import VNC_PATH, install_vnc_bridge

# -- shell and files (the desktop user's bash and file editor) --
from . import host_routes
from .files import FileAccess
from .shell import ShellSession


def create_app(token: str, display: str, vnc_port: int = 5900, app_log: str | None = None) -> FastAPI:
    service = DesktopService(x11.X11Desktop(display, app_log=app_log))
    shell = ShellSession(display)  # shell and files

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        shell.close()  # shell and files: no shell outlives the server
        service.close()

    app = FastAPI(
        title="cubicle desktop API",
        version=__version__,
        description="See and operate a Linux desktop: screenshots, mouse and keyboard actions, windows. "
        "Every route but /health needs `Authorization: Bearer <token>`.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.vnc_port = vnc_port
    app.include_router(router)
    # -- shell and files --
    app.state.shell = shell
    app.state.files = FileAccess.from_environment()
    app.include_router(host_routes.router)
    # --
    errors.install(app)
    openapi.install(app, PUBLIC_PATHS)
    install_docs(app)
    install_viewer(app)
    install_vnc_bridge(app, token)
    # Outermost first: oversized bodies are refused before auth reads anything else.
    # /vnc checks the token itself, in its first WebSocket message (browsers cannot send headers there).
    app.add_middleware(TokenAuth, token=token, in_band_websockets=frozenset({VNC_PATH}))
    app.add_middleware(BodyLimit)
    return app
