"""Assembles the desktop's FastAPI application: routes, errors, auth, body limits, the viewer."""

from __future__ import annotations

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI

from cubicle import __version__, x11
from cubicle.mcp.http import MCP_PATH, McpEndpoint
from cubicle.web import AccessRules, BodyLimit, TokenAuth
from cubicle.web.auth import FIRST_MESSAGE_ONLY, Credential, WebSocketWays
from cubicle.web.openapi import install as install_openapi

from . import accessibility_routes, apps_routes, errors, host_routes, recording_routes, token_routes
from .cdp_bridge import CDP_PATH, install_cdp_bridge
from .desktop_user import DesktopUser, LocalUser, RunnerUser
from .docs import install_docs
from .openapi import amend_schema
from .routes import router
from .screen_recorder import ScreenRecorder
from .service import DesktopService
from .viewer import install_viewer
from .vnc_bridge import VNC_PATH, install_vnc_bridge

RUNNER_SOCKET_VARIABLE = "CUBICLE_RUNNER_SOCKET"

# The docs and viewer pages and their script files hold no data; the schema and the screen
# they load need the token. /vnc takes its token in the first message only: browsers cannot
# set headers on a WebSocket, and the first message carries the viewer's mode as well. /cdp
# takes the header (Playwright's connect_over_cdp sends one) or a first message (a client that
# cannot set headers, or the fleet's proxy); CDP has no subprotocol to select.
ACCESS = AccessRules(
    unauthorized_message=("Missing or wrong token. Send the header 'Authorization: Bearer <token>' "
                          "(the token is CUBICLE_TOKEN, or the one the server printed at start)."),
    public_paths=frozenset({"/health", "/docs", "/view"}),
    public_prefixes=("/docs/static/", "/view/novnc/", "/view/static/"),
    websockets={VNC_PATH: FIRST_MESSAGE_ONLY, CDP_PATH: WebSocketWays(header=True, subprotocol=False, first_message=True)},
)


def desktop_user(display: str, cdp_port: int = 9222) -> DesktopUser:
    """The runner of the desktop user when one is configured, else this process itself."""
    socket_spec = os.environ.get(RUNNER_SOCKET_VARIABLE, "").strip()
    return RunnerUser(socket_spec) if socket_spec else LocalUser(display, cdp_port)


def create_app(token: str | Credential, display: str, vnc_port: int = 5900, user: DesktopUser | None = None,
               cdp_port: int = 9222) -> FastAPI:
    """`token`: the token itself, or a Credential (its digest, replaceable through PUT /token)."""
    credential = token if isinstance(token, Credential) else Credential.from_text(token)
    service = DesktopService(x11.X11Desktop(display))
    user = user or desktop_user(display, cdp_port)
    recorder = ScreenRecorder.from_environment(display)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        async with mcp.running():
            yield
        await recorder.close()  # a running recording's file is finished, not cut off
        await user.close()
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
    app.state.user = user
    app.state.recorder = recorder
    app.state.vnc_port = vnc_port
    app.state.credential = credential
    app.include_router(router)
    app.include_router(host_routes.router)
    app.include_router(token_routes.router)
    app.include_router(apps_routes.router)
    app.include_router(accessibility_routes.router)
    app.include_router(recording_routes.router)
    errors.install(app)
    install_openapi(app, ACCESS.public_paths, amend_schema)
    install_docs(app)
    install_viewer(app)
    install_vnc_bridge(app)
    install_cdp_bridge(app)
    # The MCP face: its tools call this app's own routes, in-process, with the caller's token.
    mcp = McpEndpoint(app)
    # A Route serves an ASGI app as it is; add_route's annotation names only request handlers.
    app.add_route(MCP_PATH, mcp, methods=["GET", "POST", "DELETE"], include_in_schema=False)  # type: ignore[arg-type]
    # Outermost first: oversized bodies are refused before auth reads anything else.
    app.add_middleware(TokenAuth, check=credential.check, rules=ACCESS)
    app.add_middleware(BodyLimit)
    return app
