"""The runs a worker carries out: one thread each, their live events, and the folder of all runs.

Everything a run does is in the run store, so the manager keeps no state a restart would
lose: runs an earlier worker was carrying out when it stopped are reported as "interrupted".
One run per desktop at a time, any number of desktops at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anthropic
import httpx

from cubicle.client import CubicleError, DesktopClient
from cubicle.web import ApiError, token_matches

from .api_models import NewRun
from .control import RunControl
from .events import RunEvent
from .fleet_desktops import NEW, FleetDesktops
from .human_log import HumanLog
from .loop import TOOLSET_VERSION, Agent, Budgets, browser_refusal
from .models import UnknownModel, profile_for
from .policy import Policy
from .recordings import discard_recording, keep_recording, start_recording
from .runs import Run, RunNotFound, RunStore, parse_time, redact

log = logging.getLogger("cubicle.worker")

ACTIVE = ("running", "paused")


class EventHub:
    """Passes one run's events from the agent's thread to any number of asyncio listeners,
    each with a queue of its own on its own event loop. `None` in a queue means: no more."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self.closed = False

    def publish(self, event: RunEvent | None) -> None:
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
        entry: tuple[asyncio.AbstractEventLoop, asyncio.Queue] = (asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            if self.closed:
                return None
            self._listeners.add(entry)
        return entry[1]

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._listeners = {entry for entry in self._listeners if entry[1] is not queue}


@dataclass
class ActiveRun:
    run: Run
    agent: Agent
    control: RunControl
    hub: EventHub
    desktop: str
    client: DesktopClient
    desktop_token: str = field(default="", repr=False)
    fleet_desktop: str | None = None  # the fleet desktop taken for this run, deleted at its end
    thread: threading.Thread | None = field(default=None, repr=False)
    human_log: HumanLog | None = field(default=None, repr=False)

    def log(self, kind: str, **fields: Any) -> RunEvent:
        """An event written by the service rather than the agent, shown live like the agent's."""
        event = self.run.append(kind, **fields)
        self.hub.publish(event)
        return event

    @property
    def busy(self) -> bool:
        return self.run.meta["status"] in ACTIVE


def _desktop_url(value: str) -> str:
    """One spelling per desktop (scheme and host in lower case, the port explicit), so that
    two spellings of one desktop cannot both get a run."""
    try:
        url = httpx.URL(value.strip())
    except (httpx.InvalidURL, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ApiError(422, "invalid_request", f"desktop must be an http:// or https:// URL, not {value!r}.")
    port = url.port or (443 if url.scheme == "https" else 80)
    path = url.path.rstrip("/")
    return f"{url.scheme}://{url.host.lower()}:{port}{path}"


def _desktop_failure(url: str, error: Exception) -> ApiError:
    """Why a desktop could not start a run, worded for the person who asked."""
    if isinstance(error, CubicleError):
        if error.status == 401:
            return ApiError(502, "desktop_unauthorized", (
                f"The desktop at {url} refused the token (401): send its token as desktop_token, "
                "or start the worker with CUBICLE_TOKEN set to it."))
        if error.status == 503:
            return ApiError(503, "desktop_unavailable", f"The desktop at {url} is not ready: {error.message}")
        return ApiError(502, "desktop_error", f"The desktop at {url} answered {error.status} {error.code}: {error.message}")
    if isinstance(error, httpx.TimeoutException):
        return ApiError(502, "desktop_unreachable", f"The desktop at {url} did not answer in time ({type(error).__name__}).")
    if isinstance(error, httpx.HTTPError):
        return ApiError(502, "desktop_unreachable",
                           f"Cannot reach the desktop at {url}: {error or type(error).__name__}. Is it running, and is the URL right?")
    return ApiError(502, "desktop_error", f"The server at {url} does not answer like a cubicle desktop: {type(error).__name__}: {error}")


class RunManager:
    """The runs this worker carries out, one thread each, and the folder of all runs."""

    def __init__(self, store: RunStore, anthropic_factory: Callable[[], anthropic.Anthropic], policy: Policy | None,
                 default_desktop: str, default_model: str, worker_token: str, fleet: FleetDesktops | None = None):
        self.store = store
        self.fleet = fleet or FleetDesktops.from_environment()
        self.worker_token = worker_token
        self.anthropic_factory = anthropic_factory
        self.policy = policy
        self.default_desktop = default_desktop
        self.default_model = default_model
        self.started_at = datetime.now(UTC)
        self._lock = threading.Lock()
        self._active: dict[str, ActiveRun] = {}
        self._desktops: dict[str, ActiveRun | None] = {}  # None: a run is starting there

    # -- starting ---------------------------------------------------------------------

    def start(self, request: NewRun) -> ActiveRun:
        """Check the request, take the first screenshot and create the run (blocking), then
        carry it out in a thread of its own."""
        task = request.task.strip()
        model = (request.model or self.default_model).strip()
        try:
            profile = profile_for(model, request.tool_version)
        except UnknownModel as error:
            raise ApiError(422, "unknown_model", str(error)) from None
        if request.browser and profile.tool_version != TOOLSET_VERSION:
            raise ApiError(422, "invalid_request", f"browser: {browser_refusal(model, profile.tool_version)}.")
        if request.desktop == NEW:
            return self._start_on_a_new_desktop(request, task, model)
        url = _desktop_url(request.desktop or self.default_desktop)
        # The worker's own desktop token goes only to its default desktop, never to a URL a
        # caller names: that would hand the token to whoever listens there.
        if request.desktop_token is not None:
            token = request.desktop_token
            if token_matches(self.worker_token, token):
                raise ApiError(422, "invalid_request", (
                    "desktop_token is the worker's own token: a desktop must never hold it (its programs could "
                    "then use the worker). Send the desktop's own token."))
        elif url == _desktop_url(self.default_desktop):
            token = os.environ.get("CUBICLE_TOKEN", "")
        else:
            raise ApiError(422, "invalid_request",
                              f"desktop_token is needed for {url}: the worker's own token is only sent to its default desktop.")
        return self._start_on(url, token, task, model, request)

    def _start_on_a_new_desktop(self, request: NewRun, task: str, model: str) -> ActiveRun:
        if request.desktop_token is not None:
            raise ApiError(422, "invalid_request", 'desktop_token goes with a desktop URL: a desktop "new" comes with '
                           "a token of its own.")
        api = self._check_model_api()  # before a desktop is taken for nothing
        claimed = self.fleet.claim(labels={"cubicle.worker": "run"})
        RunStore.add_secret(claimed.token)
        try:
            return self._start_on(_desktop_url(claimed.urls.api), claimed.token or "", task, model, request,
                                  fleet_desktop=claimed.id, api=api)
        except BaseException:
            self.fleet.release(claimed.id)
            raise

    def _check_model_api(self) -> anthropic.Anthropic:
        api = self.anthropic_factory()
        RunStore.add_secret(getattr(api, "api_key", None))
        RunStore.add_secret(getattr(api, "auth_token", None))
        if not (getattr(api, "api_key", None) or getattr(api, "auth_token", None)):
            raise ApiError(503, "model_api_unconfigured", "The worker has no Anthropic API key: start it with ANTHROPIC_API_KEY set.")
        return api

    def _start_on(self, url: str, token: str, task: str, model: str, request: NewRun,
                  fleet_desktop: str | None = None, api: anthropic.Anthropic | None = None) -> ActiveRun:
        RunStore.add_secret(token)
        api = api or self._check_model_api()
        self._reserve(url)
        client = DesktopClient(url, token or "", timeout=httpx.Timeout(120.0, connect=10.0))
        try:
            control, hub = RunControl(), EventHub()
            agent = Agent(client, model, self.store, desktop_url=url, tool_version=request.tool_version,
                          budgets=Budgets(request.max_steps, request.max_tokens, request.max_cost),
                          anthropic_client=api, on_event=hub.publish, control=control, policy=self.policy,
                          browser=request.browser)
            recording = None
            try:
                # Before the first screenshot, so that the video shows the whole run.
                recording = start_recording(client) if request.record else None
                run = agent.start(task)
            except (CubicleError, httpx.HTTPError, ValueError) as error:
                if recording is not None:
                    discard_recording(client, recording)
                raise _desktop_failure(url, error) from None
        except BaseException:
            client.close()
            with self._lock:
                if url in self._desktops and self._desktops[url] is None:
                    del self._desktops[url]
            raise
        if fleet_desktop is not None:
            run.update(fleet_desktop=fleet_desktop, keep_desktop=request.keep_desktop)
        if recording is not None:
            run.update(recording=recording)
        active = ActiveRun(run, agent, control, hub, url, client, desktop_token=token or "",
                           fleet_desktop=None if request.keep_desktop else fleet_desktop)
        active.human_log = HumanLog(run, agent, control, hub.publish)
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
                    raise ApiError(409, "desktop_busy", f"Desktop {url} is busy: a run is starting on it; wait.")
                if holder.busy:
                    raise ApiError(409, "desktop_busy", f"Desktop {url} is busy with run {holder.run.id}; stop it or wait.")
            self._desktops[url] = None

    def _execute(self, active: ActiveRun) -> None:
        try:
            active.agent.execute(active.run)
        except Exception as error:  # the run is already marked failed, with the reason
            log.error("run %s failed: %s", active.run.id, redact(f"{type(error).__name__}: {error}"))
        finally:
            if active.human_log is not None:
                active.human_log.close()
            if active.run.meta.get("recording"):
                keep_recording(active.client, active.run)
            active.client.close()
            if active.fleet_desktop is not None:
                self.fleet.release(active.fleet_desktop)
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
            raise ApiError(404, "run_not_found", f"No run {run_id!r}. GET /runs lists them.") from None
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
        return [self.describe(meta, active.get(meta.get("id", ""))) for meta in self.store.list()]

    def require_active(self, run_id: str, verb: str) -> ActiveRun:
        run, active = self.find(run_id)
        if active is None or not active.busy:
            status = self.describe(run.meta, active)["status"]
            raise ApiError(409, "run_not_active", f"Run {run.id} is {status}: only a running or paused run can be {verb}.")
        return active
