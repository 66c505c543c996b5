"""The worker's HTTP routes: starting, listing and steering runs, and what a browser loads by
URL (a run's images and replay, the console's cookie). Thin: check, hand to the RunManager,
shape the answer. The WebSocket routes are in live_routes.py."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from cubicle.web import ApiError, error_responses, exact_json_types, only_known_query

from .api_models import (
    Decision,
    DecisionMade,
    FleetDesktopList,
    HandedBack,
    Health,
    Message,
    NewRun,
    Queued,
    RunDetail,
    RunList,
    RunView,
)
from .auth import SESSION_COOKIE, session_cookie_value
from .replay import write_replay
from .run_manager import RunManager
from .runs import IMAGES_DIR, redact

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
VIDEO_TYPES = {"recording.mp4": "video/mp4", "recording.webm": "video/webm"}
# A 404 in JSON on routes whose success is not JSON (an explicit content type, or FastAPI
# would document it as the route's own).
JSON_404 = {"description": "No such run or image.",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}

router = APIRouter(dependencies=[Depends(only_known_query), Depends(exact_json_types)])


def get_manager(request: Request) -> RunManager:
    return request.app.state.runs


@router.get("/health")
def health() -> Health:
    return Health(status="ok")


# -- runs ---------------------------------------------------------------------------------


@router.post("/runs", status_code=201, responses=error_responses(409, 502, 503), response_model_exclude_unset=True)
def create_run(body: NewRun, manager: RunManager = Depends(get_manager)) -> RunView:
    active = manager.start(body)
    return RunView(**manager.describe(active.run.meta, active))


@router.get("/runs", response_model_exclude_unset=True)
def list_runs(manager: RunManager = Depends(get_manager)) -> RunList:
    return RunList(runs=[RunView(**shown) for shown in manager.list()])


@router.get("/runs/{run_id}", responses=error_responses(404), response_model_exclude_unset=True)
def get_run(run_id: str, events: bool = True, manager: RunManager = Depends(get_manager)) -> RunDetail:
    run, active = manager.find(run_id)
    shown: dict[str, Any] = manager.describe(run.meta, active)
    shown["pending"] = redact(list(active.control.pending.values())) if active else []
    if events:
        shown["events"] = run.events()
    return RunDetail(**shown)


@router.post("/runs/{run_id}/pause", status_code=202, responses=error_responses(404, 409), response_model_exclude_unset=True)
def pause(run_id: str, manager: RunManager = Depends(get_manager)) -> RunView:
    active = manager.require_active(run_id, "paused")
    active.control.pause()
    return RunView(**manager.describe(active.run.meta, active))


@router.post("/runs/{run_id}/resume", responses=error_responses(404, 409), response_model_exclude_unset=True)
def resume(run_id: str, manager: RunManager = Depends(get_manager)) -> RunView:
    active = manager.require_active(run_id, "resumed")
    if active.control.taken_over:
        raise ApiError(409, "taken_over", f"A human has control of run {run_id}: hand it back "
                       f"(POST /runs/{run_id}/handback), and the run resumes.")
    active.control.resume()
    return RunView(**manager.describe(active.run.meta, active))


@router.post("/runs/{run_id}/stop", status_code=202, responses=error_responses(404, 409), response_model_exclude_unset=True)
def stop(run_id: str, manager: RunManager = Depends(get_manager)) -> RunView:
    active = manager.require_active(run_id, "stopped")
    active.control.stop()
    return RunView(**manager.describe(active.run.meta, active))


@router.post("/runs/{run_id}/message", status_code=202, responses=error_responses(404, 409))
def post_message(run_id: str, body: Message, manager: RunManager = Depends(get_manager)) -> Queued:
    active = manager.require_active(run_id, "sent a message")
    active.control.post_message(body.text)
    return Queued(id=active.run.id, queued=True)


@router.post("/runs/{run_id}/approvals/{approval_id}", responses=error_responses(404))
def decide(run_id: str, approval_id: str, body: Decision, manager: RunManager = Depends(get_manager)) -> DecisionMade:
    run, active = manager.find(run_id)
    if active is None or not active.control.decide(approval_id, body.approve, body.note):
        waiting = sorted(active.control.pending) if active else []
        raise ApiError(404, "approval_not_found", f"Nothing in run {run.id} waits for approval under {approval_id!r}"
                       + (f"; waiting: {', '.join(waiting)}." if waiting else "."))
    return DecisionMade(id=run.id, approval_id=approval_id, approved=body.approve, note=body.note)


@router.post("/runs/{run_id}/takeover", responses=error_responses(404, 409), response_model_exclude_unset=True)
def take_over(run_id: str, manager: RunManager = Depends(get_manager)) -> RunView:
    active = manager.require_active(run_id, "taken over")
    if not active.control.take_over():
        raise ApiError(409, "already_taken_over", f"A human already has control of run {run_id}; hand it back first.")
    active.log("taken_over", step=active.run.meta["totals"]["steps"], actor="human")
    return RunView(**manager.describe(active.run.meta, active))


@router.post("/runs/{run_id}/handback", responses=error_responses(404, 409), response_model_exclude_unset=True)
async def hand_back(run_id: str, manager: RunManager = Depends(get_manager)) -> HandedBack:
    active = await run_in_threadpool(manager.require_active, run_id, "handed back")
    if not active.control.taken_over or active.human_log is None:
        raise ApiError(409, "not_taken_over", f"Nobody has taken run {run_id} over: there is nothing to hand back.")
    # Everything the human did is in the log before the model hears about it.
    await active.human_log.end_input()
    actions = active.control.hand_back()
    if actions is None:
        raise ApiError(409, "not_taken_over", f"Run {run_id} was handed back already.")
    return HandedBack(**manager.describe(active.run.meta, active), human_actions=actions)


# -- the fleet's desktops -----------------------------------------------------------------


@router.get("/desktops", responses=error_responses(502, 503),
            summary="The desktops of the worker's fleet (CUBICLE_FLEET_URL), for the console to list and watch")
def fleet_desktops(manager: RunManager = Depends(get_manager)) -> FleetDesktopList:
    return FleetDesktopList(desktops=[desktop.model_dump(exclude={"token"}) for desktop in manager.fleet.list()])


# -- what a browser loads by URL ----------------------------------------------------------


@router.get("/runs/{run_id}/images/{name}", response_class=FileResponse, responses={
    200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}, "description": "the screenshot"},
    404: JSON_404})
def run_image(run_id: str, name: str, manager: RunManager = Depends(get_manager)) -> FileResponse:
    run, _ = manager.find(run_id)
    path = run.folder / IMAGES_DIR / name
    if not SAFE_NAME.match(name) or not path.is_file():
        raise ApiError(404, "image_not_found", f"Run {run.id} has no image {name!r}.")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=86400"})


def _run_video(run_id: str, manager: RunManager, name: str) -> FileResponse:
    run, _ = manager.find(run_id)
    path = run.folder / name
    if not path.is_file():
        # The run is there; it holds no such video (409, as for a run in the wrong state: 404
        # says the run is unknown).
        raise ApiError(409, "not_recorded", f"Run {run.id} has no {name}: runs are recorded when started with "
                       "\"record\": true, in the format the desktop recorded.")
    return FileResponse(path, media_type=VIDEO_TYPES[name], headers={"Cache-Control": "private, max-age=86400"})


# A recorded run's video, where its replay page finds it (relative to /runs/{id}/replay); seekable (Range).
@router.get("/runs/{run_id}/recording.mp4", response_class=FileResponse, responses={
    200: {"content": {"video/mp4": {}}, "description": "the run's screen recording"}, 404: JSON_404,
    **error_responses(409)})
def run_video_mp4(run_id: str, manager: RunManager = Depends(get_manager)) -> FileResponse:
    return _run_video(run_id, manager, "recording.mp4")


@router.get("/runs/{run_id}/recording.webm", response_class=FileResponse, responses={
    200: {"content": {"video/webm": {}}, "description": "the run's screen recording"}, 404: JSON_404,
    **error_responses(409)})
def run_video_webm(run_id: str, manager: RunManager = Depends(get_manager)) -> FileResponse:
    return _run_video(run_id, manager, "recording.webm")


@router.get("/runs/{run_id}/replay", response_class=HTMLResponse, responses={
    200: {"content": {"text/html": {}}, "description": "the replay page"}, 404: JSON_404})
def run_replay(run_id: str, manager: RunManager = Depends(get_manager)) -> HTMLResponse:
    run, _ = manager.find(run_id)
    # Written afresh: the run may have gone on since. Its images are under images/, which
    # resolves to the route above.
    path = write_replay(run)
    return HTMLResponse(path.read_text(encoding="utf-8"), headers={"Cache-Control": "no-store"})


@router.post("/session", status_code=204, response_class=Response)
def open_session(request: Request) -> Response:
    """For the console: a cookie that lets <img> and links load run images and replays."""
    response = Response(status_code=204)
    response.set_cookie(SESSION_COOKIE, session_cookie_value(request.app.state.token), httponly=True,
                        samesite="strict", path="/runs")
    return response
