"""The fleet's own routes: create, list, look at, keep alive, reset and delete desktops. Thin:
check, hand to the FleetManager (in the thread pool: it blocks on the engine), shape the answer."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from cubicle.web import ApiError, error_responses, exact_json_types, only_known_query

from .backends import osworld_address
from .manager import Desktop, FleetManager, iso
from .models import DesktopList, DesktopUrls, DesktopView, Health, KeepAlive, NewDesktop, Status

router = APIRouter(dependencies=[Depends(only_known_query), Depends(exact_json_types)])
# [^\n], not '.': a schema's '.' (ECMA-262) also stops at \r, \u2028 and \u2029.
LABEL_FILTER = re.compile(r"(?P<key>[A-Za-z0-9][A-Za-z0-9._/-]{0,62})=(?P<value>[^\n]{0,256})")
LABEL_PATTERN = "^" + re.sub(r"\?P<[a-z]+>", "?:", LABEL_FILTER.pattern) + "$"  # as the schema says it


def get_manager(request: Request) -> FleetManager:
    return request.app.state.manager


def view(request: Request, desktop: Desktop, token: str | None = None) -> DesktopView:
    base = str(request.base_url).rstrip("/") + f"/desktops/{desktop.id}"
    websocket = "ws" + base[len("http"):]
    shown = DesktopView(
        id=desktop.id, status=desktop.status, created_at=iso(desktop.created_at),  # type: ignore[arg-type]
        expires_at=iso(desktop.expires_at), idle_timeout_s=desktop.idle_timeout_s,
        last_active_at=iso(desktop.last_active_at), width=desktop.width, height=desktop.height,
        labels=desktop.labels, backend=request.app.state.manager.backend.name,
        urls=DesktopUrls(api=base, view=base + "/view", vnc=websocket + "/vnc"))
    # Shown only when there is one: a failure's reason, and the token in the answer to a create.
    if desktop.reason:
        shown.reason = desktop.reason
    if token is not None:
        shown.token = token
    if desktop.osworld and desktop.address:
        shown.osworld = osworld_address(desktop.address)
    return shown


@router.get("/health")
def health(manager: FleetManager = Depends(get_manager)) -> Health:
    desktops, pooled = manager.counts()
    return Health(status="ok", backend=manager.backend.name, desktops=desktops, pooled=pooled)


@router.post("/desktops", status_code=201, response_model_exclude_unset=True, responses=error_responses(429, 502, 503, 504),
             summary="A new desktop (from the warm pool when one fits): its id, URLs and token, shown only here")
async def create_desktop(body: NewDesktop, request: Request, manager: FleetManager = Depends(get_manager)) -> DesktopView:
    desktop, token = await run_in_threadpool(manager.create, body)
    return view(request, desktop, token)


@router.get("/desktops", response_model_exclude_unset=True, summary="The desktops, oldest first")
def list_desktops(request: Request, label: list[str] = Query([], description="key=value; several: all must match",
                                                           json_schema_extra={"items": {"type": "string", "pattern": LABEL_PATTERN}}),
                  status: Status | None = None, manager: FleetManager = Depends(get_manager)) -> DesktopList:
    wanted = {}
    for item in label:
        match = LABEL_FILTER.fullmatch(item)
        if match is None:
            raise ApiError(422, "invalid_request", f"label: {item[:80]!r} is not key=value (e.g. label=team=eval).")
        wanted[match["key"]] = match["value"]
    return DesktopList(desktops=[view(request, d) for d in manager.list(wanted, status)])


@router.get("/desktops/{desktop_id}", response_model_exclude_unset=True, responses=error_responses(404))
def get_desktop(desktop_id: str, request: Request, manager: FleetManager = Depends(get_manager)) -> DesktopView:
    return view(request, manager.get(desktop_id))


@router.delete("/desktops/{desktop_id}", status_code=204, response_class=Response, responses=error_responses(404, 503),
               summary="Remove the desktop and everything made for it")
async def delete_desktop(desktop_id: str, manager: FleetManager = Depends(get_manager)) -> Response:
    await run_in_threadpool(manager.delete, desktop_id)
    return Response(status_code=204)


@router.post("/desktops/{desktop_id}/keepalive", response_model_exclude_unset=True, responses=error_responses(404),
             summary="Restart its idle timer; with ttl_s, a new TTL from now")
def keepalive(desktop_id: str, request: Request, body: KeepAlive | None = None,
              manager: FleetManager = Depends(get_manager)) -> DesktopView:
    return view(request, manager.keepalive(desktop_id, body.ttl_s if body else None))


@router.post("/desktops/{desktop_id}/reset", response_model_exclude_unset=True, responses=error_responses(404, 429, 502, 503, 504),
             summary="A fresh desktop from the image under the same id, token, labels and expiry")
async def reset(desktop_id: str, request: Request, manager: FleetManager = Depends(get_manager)) -> DesktopView:
    return view(request, await run_in_threadpool(manager.reset, desktop_id))
