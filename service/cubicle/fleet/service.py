"""`cubicle fleet serve`: desktops on demand, on the Docker engine or on Kubernetes, each reached
through the fleet at /desktops/{id}/... with its own token.

This module assembles the parts (routes.py, proxy.py, auth.py, manager.py, backends/) on the
shared web layer, and runs them. The fleet's token is CUBICLE_FLEET_TOKEN: never a desktop's,
the worker's or the model API's.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from cubicle import __version__
from cubicle.web import BodyLimit, TokenAuth, install_error_handlers, new_token
from cubicle.web.auth import token_digest
from cubicle.web.openapi import install as install_openapi

from . import proxy, routes
from .auth import ACCESS, FleetAccess, operator_token
from .backends import Backend, BackendError, Limits
from .manager import FleetManager, FleetSettings

FLEET_TOKEN_VARIABLE = "CUBICLE_FLEET_TOKEN"
OTHER_TOKENS = ("CUBICLE_TOKEN", "CUBICLE_WORKER_TOKEN", "ANTHROPIC_API_KEY")
MAX_BODY_BYTES = 2 * 1024 * 1024  # the desktop's own limit: the proxy refuses the same


def create_fleet_app(token: str, backend: Backend, settings: FleetSettings) -> FastAPI:
    manager = FleetManager(backend, settings, operator_digest=lambda ref: token_digest(operator_token(token, ref)))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await run_in_threadpool(manager.start)
        app.state.http = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=5.0))
        yield
        await app.state.http.aclose()
        await run_in_threadpool(manager.shutdown)
        await run_in_threadpool(backend.close)

    app = FastAPI(title="cubicle fleet", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  description="Desktops on demand. The fleet's routes take its token; /desktops/{id}/... is that "
                  "desktop's own API (see its /openapi.json), with that desktop's token.")
    app.state.manager = manager
    app.state.fleet_token = token
    app.include_router(routes.router)
    app.include_router(proxy.router)
    install_error_handlers(app, not_found_hint="See the README for the fleet's routes.")
    install_openapi(app, ACCESS.public_paths, lambda schema: state_limits(schema, settings))
    app.add_middleware(TokenAuth, check=FleetAccess(token, manager), rules=ACCESS)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app


def state_limits(schema: dict[str, Any], settings: FleetSettings) -> None:
    """What this fleet was started with, in its schema: the longest TTL it grants."""
    for name in ("NewDesktop", "KeepAlive"):
        ttl = schema["components"]["schemas"].get(name, {}).get("properties", {}).get("ttl_s")
        for shape in [ttl, *(ttl or {}).get("anyOf", [])] if ttl else []:
            if shape.get("type") == "integer":
                shape["maximum"] = settings.max_ttl_s


def fleet_token() -> str:
    token = os.environ.get(FLEET_TOKEN_VARIABLE, "").strip()
    if not token:
        token = new_token()
        print(f"cubicle fleet serve: no {FLEET_TOKEN_VARIABLE} set, generated one for this run: {token}",
              file=sys.stderr, flush=True)
    for name in OTHER_TOKENS:
        if os.environ.get(name, "").strip() == token:
            raise ValueError(f"the fleet's token ({FLEET_TOKEN_VARIABLE}) is also {name}: give the fleet a token of "
                             "its own, or whoever holds the other could run and open every desktop.")
    return token


def make_backend(args: argparse.Namespace) -> Backend:
    if args.backend == "kubernetes":
        from .backends.kubernetes import KubernetesBackend

        return KubernetesBackend(args.name, namespace=args.namespace, image_pull_policy=args.image_pull_policy)
    from .backends.docker import DockerBackend

    state = Path(args.state_dir or os.environ.get("CUBICLE_FLEET_STATE_DIR") or Path.home() / ".local/state/cubicle-fleet")
    return DockerBackend(args.name, state)


def settings_from(args: argparse.Namespace) -> FleetSettings:
    return FleetSettings(image=args.image, image_without_office=args.image_without_office, name=args.name,
                         warm=args.warm, max_desktops=args.max_desktops, max_ttl_s=args.max_ttl,
                         limits=Limits(cpus=args.cpus, memory_mib=args.memory, pids=args.pids))


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="cubicle fleet: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per proxied request otherwise
    try:
        token = fleet_token()
        backend = make_backend(args)
    except (ValueError, BackendError) as error:
        print(f"cubicle fleet serve: {error}", file=sys.stderr)
        return 2
    app = create_fleet_app(token, backend, settings_from(args))
    print(f"cubicle fleet serve: on http://{args.host}:{args.port}, {args.backend} backend, image {args.image}"
          f"{f', {args.warm} warm' if args.warm else ''}", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
