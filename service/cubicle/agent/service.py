"""`cubicle agent serve`: the worker as an HTTP service. Start runs on desktops, watch their
events live over a WebSocket, and steer them (pause, resume, stop, talk, approve).

Each run is carried out by an `Agent` in a thread of its own; one run per desktop at a time,
any number of desktops at once. Everything a run does is in the run store, so the service
keeps no state of its own that a restart would lose: runs it was carrying out when it stopped
are reported as "interrupted".

Like the desktop, every route but /health needs `Authorization: Bearer <token>`, and errors
are `{"error": {"code", "message"}}`. A browser cannot set headers on a WebSocket, so the events
socket also takes the token as a subprotocol `bearer.<token>` or in its first message
`{"token": "..."}`; never in the URL, which ends up in logs.

This module imports nothing of the desktop server (which needs X): the worker runs without X.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Literal

import anthropic
import httpx
from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from cubicle import __version__
from cubicle.client import CubicleError, DesktopClient
from cubicle.server.openapi import error_responses
from cubicle.server.openapi import install as install_openapi  # the error shape is the desktop's
from cubicle.server.security import BodyLimit  # plain ASGI middleware: no X behind it

from .control import RunControl
from .console import install_console
from .live_view import HumanLog
from .live_view import bridge as live_view_bridge
from .live_view import refuse as refuse_live_view
from .loop import Agent, Budgets
from .models import TOOL_VERSIONS, UnknownModel, profile_for
from .policy import Policy, PolicyError
from .replay import write_replay
from .runs import IMAGES_DIR, Run, RunNotFound, RunStore, parse_time, redact

log = logging.getLogger("cubicle.worker")

DEFAULT_DESKTOP = "http://127.0.0.1:8000"
DEFAULT_MODEL = "claude-sonnet-5"
PUBLIC_PATHS = frozenset({"/health", "/"})
PUBLIC_PREFIX = "/console/"  # the console's own files and noVNC: no data in them
SESSION_COOKIE = "cubicle_console"
# What a browser loads by URL (img src, a link to a replay) cannot carry a header: these
# read-only GETs also take the console's cookie.
# A 404 in JSON on routes whose success is not JSON (an explicit content type, or FastAPI
# would document it as the route's own).
JSON_404 = {"description": "No such run or image.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
COOKIE_PATHS = re.compile(r"^/runs/[A-Za-z0-9_.-]+/(images/[A-Za-z0-9][A-Za-z0-9._-]*|replay)$")
MAX_BODY_BYTES = 1024 * 1024
ACTIVE = ("running", "paused")
EVENTS_PROTOCOL = "cubicle.events"
BEARER_PROTOCOL = "bearer."
FIRST_MESSAGE_TIMEOUT_S = 10.0
UNAUTHORIZED = ("Missing or wrong token. Send the header 'Authorization: Bearer <token>' (the token is "
                "CUBICLE_WORKER_TOKEN or CUBICLE_TOKEN, or the one the worker printed at start).")


class WorkerError(Exception):
    """An answer other than success: its status, a code, and a message a person can act on."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


# -- access control and body size (plain ASGI middleware) --------------------------------


def _same_token(expected: str, given: str | None) -> bool:
    # compare_digest takes the same time wherever the first difference is.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _bearer(header: str) -> str | None:
    return header[7:].strip() if header.startswith("Bearer ") else None


def session_cookie_value(token: str) -> str:
    """The console's cookie: derived from the token, so it stays valid across restarts of the
    worker, but not the token itself, and good only for COOKIE_PATHS."""
    return hmac.new(token.encode(), b"cubicle console session", hashlib.sha256).hexdigest()


def _cookie(headers: dict[bytes, bytes], name: str) -> str | None:
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


async def _send_error(send, status: int, code: str, message: str, prefix: str = "http", headers: list | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": f"{prefix}.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + (headers or [])})
    await send({"type": f"{prefix}.response.body", "body": body})


class WorkerAuth:
    """The token on every route but /health; never read from the query string.

    HTTP requests send `Authorization: Bearer <token>`. WebSockets may send that header, or
    offer the subprotocol `bearer.<token>` (the server then selects `cubicle.events` when it is
    offered too, else echoes the bearer one, as browsers require a selected subprotocol), or
    send `{"token": "<token>"}` as their first message within 10 s (for tokens a subprotocol
    cannot carry). A wrong header or subprotocol refuses the handshake with a 401; a wrong or
    missing first message closes the socket with code 4401.
    """

    def __init__(self, app, token: str):
        self.app = app
        self.token = token
        self.cookie = session_cookie_value(token)

    async def __call__(self, scope, receive, send):
        path = scope.get("path") or ""
        if scope["type"] not in ("http", "websocket") or path in PUBLIC_PATHS or (
                path.startswith(PUBLIC_PREFIX) and scope["type"] == "http" and scope.get("method") in ("GET", "HEAD")):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        header = headers.get(b"authorization", b"").decode("latin-1")
        if scope["type"] == "http":
            if _same_token(self.token, _bearer(header)):
                return await self.app(scope, receive, send)
            if scope.get("method") in ("GET", "HEAD") and COOKIE_PATHS.match(path) and not header:
                if _same_token(self.cookie, _cookie(headers, SESSION_COOKIE)):
                    return await self.app(scope, receive, send)
            return await _send_error(send, 401, "unauthorized", UNAUTHORIZED, headers=[(b"www-authenticate", b"Bearer")])

        offered = list(scope.get("subprotocols") or [])
        bearers = [p[len(BEARER_PROTOCOL):] for p in offered if p.startswith(BEARER_PROTOCOL)]
        if header or bearers:
            if _same_token(self.token, _bearer(header)) or any(_same_token(self.token, b) for b in bearers):
                return await self.app(scope, receive, self._selecting_subprotocol(send, offered))
            return await self._refuse(scope, send)
        return await self._first_message(scope, receive, send, offered)

    @staticmethod
    def _selecting_subprotocol(send, offered: list[str]):
        chosen = EVENTS_PROTOCOL if EVENTS_PROTOCOL in offered else next(
            (p for p in offered if p.startswith(BEARER_PROTOCOL)), None)

        async def selecting_send(message):
            if message["type"] == "websocket.accept" and not message.get("subprotocol"):
                message = {**message, "subprotocol": chosen}
            await send(message)
        return selecting_send

    @staticmethod
    async def _refuse(scope, send) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await _send_error(send, 401, "unauthorized", UNAUTHORIZED, prefix="websocket.http")
        else:
            await send({"type": "websocket.close", "code": 4401, "reason": "missing or wrong token"})

    async def _first_message(self, scope, receive, send, offered: list[str]) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept", "subprotocol": EVENTS_PROTOCOL if EVENTS_PROTOCOL in offered else None})
        try:
            first = await asyncio.wait_for(receive(), FIRST_MESSAGE_TIMEOUT_S)
        except asyncio.TimeoutError:
            first = {"type": "websocket.receive", "text": ""}
        if first["type"] != "websocket.receive":
            return  # the client left
        try:
            given = json.loads(first.get("text") or first.get("bytes") or b"").get("token")
        except (ValueError, AttributeError):
            given = None
        if not isinstance(given, str) or not _same_token(self.token, given):
            await send({"type": "websocket.close", "code": 4401,
                        "reason": 'missing or wrong token: send {"token": "..."} as the first message'})
            return
        connect = [{"type": "websocket.connect"}]

        async def app_receive():
            return connect.pop() if connect else await receive()

        async def app_send(message):
            if message["type"] != "websocket.accept":  # already accepted above
                await send(message)

        await self.app(scope, app_receive, app_send)


# -- live events ---------------------------------------------------------------------------


class EventHub:
    """Passes one run's events from the agent's thread to any number of asyncio listeners,
    each with a queue of its own on its own event loop. `None` in a queue means: no more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self.closed = False

    def publish(self, event: dict[str, Any] | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for loop, queue in listeners:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:
                pass  # that listener's loop is closed: the server is shutting down

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self.publish(None)

    def subscribe(self) -> asyncio.Queue | None:
        """A queue that gets every event published from now on; None once the run has ended."""
        entry = (asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            if self.closed:
                return None
            self._listeners.add(entry)
        return entry[1]

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._listeners = {entry for entry in self._listeners if entry[1] is not queue}


# -- runs ----------------------------------------------------------------------------------


@dataclass
class ActiveRun:
    run: Run
    agent: Agent
    control: RunControl
    hub: EventHub
    desktop: str
    client: DesktopClient
    desktop_token: str = field(default="", repr=False)
    thread: threading.Thread | None = field(default=None, repr=False)
    human_log: HumanLog | None = field(default=None, repr=False)

    def log(self, kind: str, **fields: Any) -> dict[str, Any]:
        """An event written by the service rather than the agent, shown live like the agent's."""
        event = self.run.append(kind, **fields)
        self.hub.publish(event)
        return event

    @property
    def busy(self) -> bool:
        return self.run.meta["status"] in ACTIVE


class NewRun(BaseModel):
    # strict: "5" is not a number and true is not 5 (lax mode would read them so).
    model_config = ConfigDict(extra="forbid", strict=True)

    task: str = Field(min_length=1, max_length=100_000)
    desktop: str | None = Field(None, description="the desktop's URL (default $CUBICLE_DESKTOP_URL)")
    desktop_token: str | None = Field(None, description="the desktop's token (default $CUBICLE_TOKEN); never shown")
    model: str | None = None
    tool_version: Literal[TOOL_VERSIONS] | None = None  # type: ignore[valid-type]
    max_steps: int = Field(50, ge=1, le=10_000)
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str = Field(min_length=1, max_length=20_000)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    approve: StrictBool
    note: str = Field("", max_length=2_000)


def _desktop_url(value: str) -> str:
    """One spelling per desktop (scheme and host in lower case, the port explicit), so that
    two spellings of one desktop cannot both get a run."""
    try:
        url = httpx.URL(value.strip())
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise WorkerError(422, "invalid_request", f"desktop must be an http:// or https:// URL, not {value!r}.")
    port = url.port or (443 if url.scheme == "https" else 80)
    path = url.path.rstrip("/")
    return f"{url.scheme}://{url.host.lower()}:{port}{path}"


def _desktop_failure(url: str, error: Exception) -> WorkerError:
    """Why a desktop could not start a run, worded for the person who asked."""
    if isinstance(error, CubicleError):
        if error.status == 401:
            return WorkerError(502, "desktop_unauthorized", (
                f"The desktop at {url} refused the token (401): send its token as desktop_token, "
                "or start the worker with CUBICLE_TOKEN set to it."))
        if error.status == 503:
            return WorkerError(503, "desktop_unavailable", f"The desktop at {url} is not ready: {error.message}")
        return WorkerError(502, "desktop_error", f"The desktop at {url} answered {error.status} {error.code}: {error.message}")
    if isinstance(error, httpx.TimeoutException):
        return WorkerError(502, "desktop_unreachable", f"The desktop at {url} did not answer in time ({type(error).__name__}).")
    if isinstance(error, httpx.HTTPError):
        return WorkerError(502, "desktop_unreachable",
                           f"Cannot reach the desktop at {url}: {error or type(error).__name__}. Is it running, and is the URL right?")
    return WorkerError(502, "desktop_error", f"The server at {url} does not answer like a cubicle desktop: {type(error).__name__}: {error}")


class RunManager:
    """The runs this worker carries out, one thread each, and the folder of all runs."""

    def __init__(self, store: RunStore, anthropic_factory: Callable[[], anthropic.Anthropic], policy: Policy | None,
                 default_desktop: str, default_model: str):
        self.store = store
        self.anthropic_factory = anthropic_factory
        self.policy = policy
        self.default_desktop = default_desktop
        self.default_model = default_model
        self.started_at = datetime.now(timezone.utc)
        self._lock = threading.Lock()
        self._active: dict[str, ActiveRun] = {}
        self._desktops: dict[str, ActiveRun | None] = {}  # None: a run is starting there

    # -- starting ---------------------------------------------------------------------

    def start(self, request: NewRun) -> ActiveRun:
        """Check the request, take the first screenshot and create the run (blocking), then
        carry it out in a thread of its own."""
        task = request.task.strip()
        if not task:
            raise WorkerError(422, "invalid_request", "task: must not be empty")
        url = _desktop_url(request.desktop or self.default_desktop)
        model = (request.model or self.default_model).strip()
        try:
            profile_for(model, request.tool_version)
        except UnknownModel as error:
            raise WorkerError(422, "unknown_model", str(error)) from None
        # The worker's own desktop token goes only to its default desktop, never to a URL a
        # caller names: that would hand the token to whoever listens there.
        if request.desktop_token is not None:
            token = request.desktop_token
        elif url == _desktop_url(self.default_desktop):
            token = os.environ.get("CUBICLE_TOKEN", "")
        else:
            raise WorkerError(422, "invalid_request",
                              f"desktop_token is needed for {url}: the worker's own token is only sent to its default desktop.")
        RunStore.add_secret(token)
        api = self.anthropic_factory()
        RunStore.add_secret(getattr(api, "api_key", None))
        RunStore.add_secret(getattr(api, "auth_token", None))
        if not (getattr(api, "api_key", None) or getattr(api, "auth_token", None)):
            raise WorkerError(503, "model_api_unconfigured", "The worker has no Anthropic API key: start it with ANTHROPIC_API_KEY set.")

        self._reserve(url)
        client = DesktopClient(url, token or "", timeout=httpx.Timeout(120.0, connect=10.0))
        try:
            control, hub = RunControl(), EventHub()
            agent = Agent(client, model, self.store, desktop_url=url, tool_version=request.tool_version,
                          budgets=Budgets(request.max_steps, request.max_tokens, request.max_cost),
                          anthropic_client=api, on_event=hub.publish, control=control, policy=self.policy)
            try:
                run = agent.start(task)
            except (CubicleError, httpx.HTTPError, ValueError) as error:
                raise _desktop_failure(url, error) from None
        except BaseException:
            client.close()
            with self._lock:
                if url in self._desktops and self._desktops[url] is None:
                    del self._desktops[url]
            raise
        active = ActiveRun(run, agent, control, hub, url, client, desktop_token=token or "")
        active.human_log = HumanLog(active, hub.publish)
        active.thread = threading.Thread(target=self._execute, args=(active,), name=f"run-{run.id}", daemon=True)
        with self._lock:
            self._active[run.id] = active
            self._desktops[url] = active
        log.info("run %s started on %s with %s", run.id, url, model)
        active.thread.start()
        return active

    def _reserve(self, url: str) -> None:
        with self._lock:
            if url in self._desktops:
                holder = self._desktops[url]
                if holder is None:
                    raise WorkerError(409, "desktop_busy", f"Desktop {url} is busy: a run is starting on it; wait.")
                if holder.busy:
                    raise WorkerError(409, "desktop_busy", f"Desktop {url} is busy with run {holder.run.id}; stop it or wait.")
            self._desktops[url] = None

    def _execute(self, active: ActiveRun) -> None:
        try:
            active.agent.execute(active.run)
        except Exception as error:  # the run is already marked failed, with the reason
            log.error("run %s failed: %s", active.run.id, redact(f"{type(error).__name__}: {error}"))
        finally:
            if active.human_log is not None:
                active.human_log.close()
            active.client.close()
            with self._lock:
                self._active.pop(active.run.id, None)
                if self._desktops.get(active.desktop) is active:
                    del self._desktops[active.desktop]
            active.hub.close()
            meta = active.run.meta
            log.info("run %s ended: %s (%s)", active.run.id, meta["status"], meta.get("stop_reason"))

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop every run at its next step and give them a moment to write their end."""
        with self._lock:
            running = list(self._active.values())
        for active in running:
            active.control.stop()
        deadline = time.monotonic() + timeout
        for active in running:
            if active.thread is not None:
                active.thread.join(max(0.0, deadline - time.monotonic()))

    # -- looking up -------------------------------------------------------------------

    def find(self, run_id: str) -> tuple[Run, ActiveRun | None]:
        with self._lock:
            active = self._active.get(run_id)
        if active is not None:
            return active.run, active
        try:
            run = self.store.open(run_id)
        except RunNotFound:
            raise WorkerError(404, "run_not_found", f"No run {run_id!r}. GET /runs lists them.") from None
        with self._lock:
            active = self._active.get(run.id)
        return (active.run, active) if active else (run, None)

    def describe(self, meta: dict[str, Any], active: ActiveRun | None) -> dict[str, Any]:
        """A run's metadata as clients see it: live for runs carried out here; runs on disk
        that were left running or paused by an earlier worker are "interrupted" (the file is
        left as it is). A run created since this worker started, by another process sharing
        the folder, is shown as recorded."""
        if active is not None:
            meta = active.run.meta
            return {**meta, "active": True, "pause_requested": active.control.paused,
                    "stop_requested": active.control.stopped, "taken_over": active.control.taken_over}
        if meta.get("status") in ACTIVE:
            created = parse_time(meta.get("created_at"))
            if created is None or created < self.started_at:
                meta = {**meta, "status": "interrupted", "recorded_status": meta["status"]}
        return {**meta, "active": False}

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            active = dict(self._active)
        return [self.describe(meta, active.get(meta.get("id"))) for meta in self.store.list()]

    def require_active(self, run_id: str, verb: str) -> ActiveRun:
        run, active = self.find(run_id)
        if active is None or not active.busy:
            status = self.describe(run.meta, active)["status"]
            raise WorkerError(409, "run_not_active", f"Run {run.id} is {status}: only a running or paused run can be {verb}.")
        return active


# -- the application ----------------------------------------------------------------------


def only_known_query(request: HTTPConnection) -> None:
    """Unknown query parameters are refused, as unknown body fields are: a misspelt
    `?event=false` must not silently send every event."""
    route = request.scope.get("route")
    if not request.query_params or route is None or not hasattr(route, "dependant"):
        return
    known = {field.alias for field in route.dependant.query_params}
    unknown = [name for name in dict.fromkeys(request.query_params) if name not in known]
    if unknown:
        takes = f"this route takes {', '.join(sorted(known))}" if known else "this route takes none"
        raise WorkerError(422, "invalid_request", f"{unknown[0]!r}: unknown query parameter (check its spelling; {takes}).")


def _location(loc: tuple) -> str:
    parts = [f"[{item}]" if isinstance(item, int) else str(item) for item in loc if item != "body"]
    return ".".join(parts).replace(".[", "[") or "body"


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(WorkerError)
    async def _worker_error(_: Request, error: WorkerError) -> JSONResponse:
        return JSONResponse(redact(error.body()), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if "json" not in content_type and await request.body():
            return JSONResponse({"error": {"code": "unsupported_media_type", "message": (
                f"The body must be JSON sent with 'Content-Type: application/json', not {content_type or 'no content type'!r}.")}},
                status_code=415)
        problems = error.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return JSONResponse({"error": {"code": "malformed_body", "message": "The body is not valid JSON."}}, status_code=400)
        described = []
        for problem in problems:  # never the input itself: it may hold a token
            where = _location(tuple(problem.get("loc", ())))
            what = {"missing": "this field is required", "extra_forbidden": "unknown field"}.get(problem.get("type"), problem.get("msg"))
            described.append(f"{where}: {what}")
        return JSONResponse({"error": {"code": "invalid_request", "message": "; ".join(dict.fromkeys(described))}}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        message = {404: "No such route. See the README for the worker's routes."}.get(error.status_code, str(error.detail))
        return JSONResponse({"error": {"code": codes.get(error.status_code, "http_error"), "message": message}},
                            status_code=error.status_code, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        message = redact(f"Unexpected worker error: {type(error).__name__}: {error}")
        return JSONResponse({"error": {"code": "internal_error", "message": message}}, status_code=500)


def create_worker_app(
    token: str,
    store: RunStore,
    anthropic_factory: Callable[[], anthropic.Anthropic] | None = None,
    policy: Policy | None = None,
    default_desktop: str | None = None,
    default_model: str | None = None,
) -> FastAPI:
    """The worker's API. `anthropic_factory` makes each run's Messages API client (default:
    `anthropic.Anthropic(max_retries=2)`, which reads ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL);
    `policy` holds actions of every run for approval."""
    RunStore.add_secret(token)
    manager = RunManager(
        store,
        anthropic_factory or (lambda: anthropic.Anthropic(max_retries=2)),
        policy,
        default_desktop or os.environ.get("CUBICLE_DESKTOP_URL") or DEFAULT_DESKTOP,
        default_model or os.environ.get("CUBICLE_MODEL") or DEFAULT_MODEL,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await run_in_threadpool(manager.shutdown)

    app = FastAPI(title="cubicle agent worker", version=__version__, docs_url=None, redoc_url=None, lifespan=lifespan,
                  dependencies=[Depends(only_known_query)],
                  description="Start agent runs on cubicle desktops, watch and steer them. "
                  "Every route but /health needs `Authorization: Bearer <token>`.")
    app.state.runs = manager

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.post("/runs", status_code=201, responses=error_responses(409, 502, 503))
    def create_run(body: NewRun) -> dict[str, Any]:
        active = manager.start(body)
        return manager.describe(active.run.meta, active)

    @app.get("/runs")
    def list_runs() -> dict[str, Any]:
        return {"runs": manager.list()}

    @app.get("/runs/{run_id}", responses=error_responses(404))
    def get_run(run_id: str, events: bool = True) -> dict[str, Any]:
        run, active = manager.find(run_id)
        shown = manager.describe(run.meta, active)
        shown["pending"] = redact(list(active.control.pending.values())) if active else []
        if events:
            shown["events"] = run.events()
        return shown

    @app.post("/runs/{run_id}/pause", status_code=202, responses=error_responses(404, 409))
    def pause(run_id: str) -> dict[str, Any]:
        active = manager.require_active(run_id, "paused")
        active.control.pause()
        return manager.describe(active.run.meta, active)

    @app.post("/runs/{run_id}/resume", responses=error_responses(404, 409))
    def resume(run_id: str) -> dict[str, Any]:
        active = manager.require_active(run_id, "resumed")
        if active.control.taken_over:
            raise WorkerError(409, "taken_over", f"A human has control of run {run_id}: hand it back "
                              f"(POST /runs/{run_id}/handback), and the run resumes.")
        active.control.resume()
        return manager.describe(active.run.meta, active)

    @app.post("/runs/{run_id}/stop", status_code=202, responses=error_responses(404, 409))
    def stop(run_id: str) -> dict[str, Any]:
        active = manager.require_active(run_id, "stopped")
        active.control.stop()
        return manager.describe(active.run.meta, active)

    @app.post("/runs/{run_id}/message", status_code=202, responses=error_responses(404, 409))
    def post_message(run_id: str, body: Message) -> dict[str, Any]:
        active = manager.require_active(run_id, "sent a message")
        active.control.post_message(body.text)
        return {"id": active.run.id, "queued": True}

    @app.post("/runs/{run_id}/approvals/{approval_id}", responses=error_responses(404))
    def decide(run_id: str, approval_id: str, body: Decision) -> dict[str, Any]:
        run, active = manager.find(run_id)
        if active is None or not active.control.decide(approval_id, body.approve, body.note):
            waiting = sorted(active.control.pending) if active else []
            raise WorkerError(404, "approval_not_found", f"Nothing in run {run.id} waits for approval under {approval_id!r}"
                              + (f"; waiting: {', '.join(waiting)}." if waiting else "."))
        return {"id": run.id, "approval_id": approval_id, "approved": body.approve, "note": body.note}

    @app.post("/runs/{run_id}/takeover", responses=error_responses(404, 409))
    def take_over(run_id: str) -> dict[str, Any]:
        active = manager.require_active(run_id, "taken over")
        if not active.control.take_over():
            raise WorkerError(409, "already_taken_over", f"A human already has control of run {run_id}; hand it back first.")
        active.log("taken_over", step=active.run.meta["totals"]["steps"], actor="human")
        return manager.describe(active.run.meta, active)

    @app.post("/runs/{run_id}/handback", responses=error_responses(404, 409))
    async def hand_back(run_id: str) -> dict[str, Any]:
        active = await run_in_threadpool(manager.require_active, run_id, "handed back")
        if not active.control.taken_over:
            raise WorkerError(409, "not_taken_over", f"Nobody has taken run {run_id} over: there is nothing to hand back.")
        # Everything the human did is in the log before the model hears about it.
        await active.human_log.end_input()
        actions = active.control.hand_back()
        if actions is None:
            raise WorkerError(409, "not_taken_over", f"Run {run_id} was handed back already.")
        return {**manager.describe(active.run.meta, active), "human_actions": actions}

    @app.websocket("/runs/{run_id}/vnc")
    async def live_view(websocket: WebSocket, run_id: str) -> None:
        await websocket.accept()
        try:
            _, active = await run_in_threadpool(manager.find, run_id)
        except WorkerError as error:
            await refuse_live_view(websocket, error.message)
            return
        if active is None or not active.busy:
            await refuse_live_view(websocket, f"Run {run_id} has ended: the live view is for running and paused runs.")
            return
        await live_view_bridge(websocket, active)

    @app.get("/runs/{run_id}/images/{name}", response_class=FileResponse, responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}, "description": "the screenshot"},
        404: JSON_404})
    def run_image(run_id: str, name: str) -> FileResponse:
        run, _ = manager.find(run_id)
        path = run.folder / IMAGES_DIR / name
        if not SAFE_NAME.match(name) or not path.is_file():
            raise WorkerError(404, "image_not_found", f"Run {run.id} has no image {name!r}.")
        return FileResponse(path, headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/runs/{run_id}/replay", response_class=HTMLResponse, responses={
        200: {"content": {"text/html": {}}, "description": "the replay page"}, 404: JSON_404})
    def run_replay(run_id: str) -> HTMLResponse:
        run, _ = manager.find(run_id)
        # Written afresh: the run may have gone on since. Its images are under images/, which
        # resolves to the route above.
        path = write_replay(run)
        return HTMLResponse(path.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})

    @app.post("/session", status_code=204, response_class=Response)
    def open_session() -> Response:
        """For the console: a cookie that lets <img> and links load run images and replays."""
        response = Response(status_code=204)
        response.set_cookie(SESSION_COOKIE, session_cookie_value(token), httponly=True, samesite="strict", path="/runs")
        return response

    install_console(app)

    @app.websocket("/runs/{run_id}/events")
    async def run_events(websocket: WebSocket, run_id: str) -> None:
        await websocket.accept()
        try:
            run, active = await run_in_threadpool(manager.find, run_id)
        except WorkerError as error:
            await websocket.close(code=4404, reason=error.message[:120])
            return
        try:
            await _stream_events(websocket, run, active.hub if active else None)
        except WebSocketDisconnect:
            pass

    _install_errors(app)
    install_openapi(app, PUBLIC_PATHS)
    # Outermost first: oversized bodies are refused before anything else is read.
    app.add_middleware(WorkerAuth, token=token)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    return app


async def _stream_events(websocket: WebSocket, run: Run, hub: EventHub | None) -> None:
    """Every event on disk, then each new one as it comes, until run_finished."""
    # Listen first, then read the disk: an event written in between arrives twice, never
    # not at all, and the copy is recognised by its seq.
    subscription = queue = hub.subscribe() if hub else None
    receiver: asyncio.Task | None = None
    getter: asyncio.Task | None = None
    try:
        last = -1
        for event in await run_in_threadpool(run.events):
            await websocket.send_text(json.dumps(event, ensure_ascii=False))
            last = event.get("seq", last)
            if event.get("type") == "run_finished":
                queue = None
        if queue is not None:
            receiver = asyncio.ensure_future(websocket.receive())  # to notice the client leaving
        while queue is not None:
            getter = getter or asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                if receiver.result()["type"] == "websocket.disconnect":
                    return
                receiver = asyncio.ensure_future(websocket.receive())  # what clients send is ignored
            if getter not in done:
                continue
            event, getter = getter.result(), None
            if event is None:
                break
            seq = event.get("seq")
            if isinstance(seq, int) and seq <= last:
                continue
            await websocket.send_text(json.dumps(event, ensure_ascii=False))
            last = seq if isinstance(seq, int) else last
            if event.get("type") == "run_finished":
                break
        if receiver is not None:
            receiver.cancel()
            receiver = None
        await websocket.close(code=1000)
    finally:
        for task in (receiver, getter):
            if task is not None:
                task.cancel()
        if hub is not None and subscription is not None:
            hub.unsubscribe(subscription)


# -- `cubicle agent serve` ------------------------------------------------------------------


def worker_token() -> str:
    """CUBICLE_WORKER_TOKEN, else CUBICLE_TOKEN, else a new one printed once on the terminal."""
    token = os.environ.get("CUBICLE_WORKER_TOKEN", "").strip() or os.environ.get("CUBICLE_TOKEN", "").strip()
    if not token:
        token = secrets.token_urlsafe(32)
        print(f"cubicle agent serve: no CUBICLE_WORKER_TOKEN or CUBICLE_TOKEN set, generated one for this run: {token}",
              file=sys.stderr, flush=True)
    return token


def serve(host: str, port: int, runs_dir: str | None, policy_path: str | None) -> int:
    import uvicorn

    try:
        policy = Policy.load(policy_path) if policy_path else None
    except PolicyError as error:
        print(f"cubicle agent serve: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="cubicle agent serve: %(message)s")
    store = RunStore(runs_dir)
    app = create_worker_app(worker_token(), store, policy=policy)
    held = f", {len(policy)} policy rules" if policy else ""
    print(f"cubicle agent serve: on http://{host}:{port}, runs in {store.root}{held}", file=sys.stderr, flush=True)
    # Access logs off: nothing secret is in a URL here, but nothing needs keeping either.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    return 0
