"""`cubicle agent serve`: the worker as an HTTP service. Start runs on desktops, watch their
events live over a WebSocket, and steer them (pause, resume, stop, talk, approve, take over).

This module only assembles the parts: the run manager (run_manager.py), the routes
(routes.py, live_routes.py), the console (console.py), and the shared web layer's errors,
token checks and body limit. Like the desktop, every route but /health needs
`Authorization: Bearer <token>` (auth.py), and errors are `{"error": {"code", "message"}}`.

It imports nothing of the desktop server (which needs X): the worker runs without X.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from contextlib import asynccontextmanager

import anthropic
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from cubicle import __version__
from cubicle.web import BodyLimit, TokenAuth, install_error_handlers, single_token
from cubicle.web.openapi import install as install_openapi

from . import live_routes, routes
from .auth import DESKTOP_TOKEN_VARIABLE, PUBLIC_PATHS, SameTokenRefused, access_rules, check_distinct, worker_token
from .console import install_console
from .fleet_desktops import FleetDesktops
from .policy import Policy, PolicyError
from .run_manager import RunManager
from .runs import RunStore, redact

DEFAULT_DESKTOP = "http://127.0.0.1:8000"
DEFAULT_MODEL = "claude-sonnet-5"
MAX_BODY_BYTES = 1024 * 1024


def create_worker_app(
    token: str,
    store: RunStore,
    anthropic_factory: Callable[[], anthropic.Anthropic] | None = None,
    policy: Policy | None = None,
    default_desktop: str | None = None,
    default_model: str | None = None,
    fleet: FleetDesktops | None = None,
) -> FastAPI:
    """The worker's API. `anthropic_factory` makes each run's Messages API client (default:
    `anthropic.Anthropic(max_retries=2)`, which reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL);
    `policy` holds actions of every run for approval; `fleet` gives runs their `desktop: "new"`
    (default: CUBICLE_FLEET_URL and CUBICLE_FLEET_TOKEN). Refuses a token equal to the desktop's."""
    check_distinct(token, os.environ.get(DESKTOP_TOKEN_VARIABLE, "").strip())
    RunStore.add_secret(token)
    manager = RunManager(
        store,
        anthropic_factory or (lambda: anthropic.Anthropic(max_retries=2)),
        policy,
        default_desktop or os.environ.get("CUBICLE_DESKTOP_URL") or DEFAULT_DESKTOP,
        default_model or os.environ.get("CUBICLE_MODEL") or DEFAULT_MODEL,
        worker_token=token,
        fleet=fleet,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await run_in_threadpool(manager.shutdown)

    app = FastAPI(title="cubicle agent worker", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Start agent runs on cubicle desktops, watch and steer them. "
                  "Every route but /health needs `Authorization: Bearer <token>`.")
    app.state.runs = manager
    app.state.token = token
    app.include_router(routes.router)
    app.include_router(live_routes.router)
    install_console(app)
    install_error_handlers(app, not_found_hint="See the README for the worker's routes.", redact=redact)
    install_openapi(app, PUBLIC_PATHS)
    # Outermost first: oversized bodies are refused before anything else is read.
    app.add_middleware(TokenAuth, check=single_token(token), rules=access_rules(token))
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app


def serve(host: str, port: int, runs_dir: str | None, policy_path: str | None) -> int:
    import uvicorn

    try:
        policy = Policy.load(policy_path) if policy_path else None
        token = worker_token()
    except (PolicyError, SameTokenRefused) as error:
        print(f"cubicle agent serve: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="cubicle agent serve: %(message)s")
    store = RunStore(runs_dir)
    app = create_worker_app(token, store, policy=policy)
    held = f", {len(policy)} policy rules" if policy else ""
    print(f"cubicle agent serve: on http://{host}:{port}, runs in {store.root}{held}", file=sys.stderr, flush=True)
    # Access logs off: nothing secret is in a URL here, but nothing needs keeping either.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0
