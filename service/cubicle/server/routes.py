"""The HTTP routes. Thin: parse, check, hand to DesktopService, shape the answer."""

from __future__ import annotations

import asyncio
import re
import shlex
import time
from typing import Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from cubicle import actions as a
from cubicle import x11
from cubicle.web import ApiError, error_responses, exact_json_types, only_known_query

from .desktop_user import DesktopUser
from .errors import BatchRefused
from .host_routes import get_user
from .plan import Planner
from .service import DesktopService

router = APIRouter(dependencies=[Depends(only_known_query), Depends(exact_json_types)])


async def get_service(request: Request) -> DesktopService:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a hop that
    # cost every request here a few hundred microseconds.
    return request.app.state.service


_INTEGER = re.compile(r"-?[0-9]+")  # int() alone would also take '1_0' or other scripts' digits
# What _parse_region takes, for the schema (negative numbers parse, but never fit the screen).
_SPACE = f"[{a.WHITESPACE}]*"
REGION_PATTERN = f"^{_SPACE}[0-9]+{_SPACE}(,{_SPACE}[0-9]+{_SPACE}){{3}}$"


def _parse_region(text: str, screen: tuple[int, int]) -> tuple[int, int, int, int]:
    """'x0,y0,x1,y1' in screen pixels -> (x, y, width, height), checked like a zoom action's region."""
    parts = text.split(",")
    if len(parts) != 4 or not all(_INTEGER.fullmatch(part.strip()) for part in parts):
        raise ApiError(422, "invalid_region", f"region must be four integers x0,y0,x1,y1, not {text!r}.")
    x0, y0, x1, y1 = (int(part.strip()) for part in parts)  # int() alone strips less ('\x1e' stays)
    return Planner(screen, None).region((x0, y0, x1, y1))


@router.get(
    "/health", response_model=a.Health, tags=["status"], summary="Is the X server, the window manager and VNC up? (no token needed)",
    responses={503: {"model": a.Health, "description": "some part is down: status is \"degraded\""}},
)
async def health(request: Request) -> JSONResponse:
    display_name = request.app.state.service.desktop.display_name
    vnc_port = request.app.state.vnc_port
    user: DesktopUser = request.app.state.user
    x_state, vnc, runner = await asyncio.gather(asyncio.to_thread(x11.probe, display_name), _vnc_up(vnc_port), user.alive())
    ok = x_state["x"] and x_state["window_manager"] and vnc and runner
    body = a.Health(status="ok" if ok else "degraded", vnc=vnc, runner=runner, **x_state)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


async def _vnc_up(port: int) -> bool:
    """x11vnc is up when it greets with the RFB protocol version."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (TimeoutError, OSError):
        return False
    try:
        greeting = await asyncio.wait_for(reader.read(12), 1.0)
        return greeting.startswith(b"RFB ")
    except (TimeoutError, OSError):
        return False
    finally:
        writer.close()


@router.get("/screen", response_model=a.ScreenInfo, tags=["screen"], responses=error_responses(503))
async def screen(service: DesktopService = Depends(get_service)) -> a.ScreenInfo:
    width, height = await service.on_x_thread(service.desktop.screen_size)
    return a.ScreenInfo(width=width, height=height, display=service.desktop.display_name)


@router.get(
    "/screenshot",
    tags=["screen"],
    summary="Capture the screen (or a zoomed region) as PNG, JPEG or WebP",
    responses={
        200: {"model": a.ImageData, "content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}},
              "description": "the image (with json=true: the image in base64 and its sizes); sizes and scale in X-* headers"},
        **error_responses(422, 503),
    },
)
async def screenshot(
    format: Literal["png", "jpeg", "webp"] = "png",
    quality: int = Query(80, ge=1, le=100),
    max_width: int | None = Query(None, ge=16, le=16384),
    max_height: int | None = Query(None, ge=16, le=16384),
    scale: float | None = Query(None, gt=0, le=1),
    region: str | None = Query(None, json_schema_extra={"pattern": REGION_PATTERN}, description=(
        "x0,y0,x1,y1 in screen pixels: capture this area at full resolution and enlarge it; 0 <= x0 < x1 <= width "
        "and 0 <= y0 < y1 <= height of the screen (else 422 invalid_region)")),
    cursor: bool = False,
    settle: bool = Query(False, description="wait until the screen has been still for quiet_ms first"),
    quiet_ms: int = Query(150, ge=10, le=5000),
    timeout_ms: int = Query(3000, ge=0, le=60000),
    json: bool = Query(False, description="answer with JSON (base64 image and sizes) instead of the image"),
    service: DesktopService = Depends(get_service),
):
    options = a.ImageOptions(format=format, quality=quality, max_width=max_width, max_height=max_height, scale=scale, cursor=cursor)
    box = None
    if region is not None:
        box = _parse_region(region, await service.on_x_thread(service.desktop.screen_size))
    settle_options = a.SettleOptions(quiet_ms=quiet_ms, timeout_ms=timeout_ms) if settle else None
    rendered = await service.screenshot(options, box, settle_options)
    if json:
        return JSONResponse(rendered.as_image_data().model_dump(), headers={"Cache-Control": "no-store"})
    return Response(rendered.data, media_type=rendered.media_type, headers=rendered.headers())


@router.post(
    "/actions",
    response_model=a.ActionResponse,
    tags=["input"],
    summary="Run one action or a batch, in order, stopping at the first failure",
    responses=error_responses(422, 503, model=BatchRefused),
)
async def run_actions(request: a.ActionRequest, service: DesktopService = Depends(get_service)) -> JSONResponse:
    status, response = await service.run_batch(request)
    return JSONResponse(response.model_dump(exclude_none=True), status_code=status)


@router.get("/cursor", response_model=a.Point, tags=["input"], responses=error_responses(503))
async def cursor(service: DesktopService = Depends(get_service)) -> a.Point:
    x, y = await service.on_x_thread(service.desktop.cursor_position)
    return a.Point(x=x, y=y)


_WINDOW_ID = re.compile(r"(0[xX][0-9a-fA-F]+|[0-9]+)")
WINDOW_ID = Path(json_schema_extra={"pattern": f"^{_WINDOW_ID.pattern}$"},
                 description="decimal or 0x hex, as GET /windows lists it (an id no window has: 404 window_not_found)")


def _window_id(text: str) -> int:
    # Strictly digits or 0x hex: int() alone would also take ' 12', '1_0' or '0b11'.
    if not _WINDOW_ID.fullmatch(text):
        raise ApiError(422, "invalid_window_id", f"Window id must be a number (decimal or 0x hex), not {text!r}.")
    return int(text, 16) if text[:2].lower() == "0x" else int(text)


@router.get("/windows", response_model=list[a.Window], tags=["windows"], responses=error_responses(503))
async def windows(service: DesktopService = Depends(get_service)) -> list[a.Window]:
    found = await service.on_x_thread(service.desktop.windows)
    return [a.Window(**vars(window)) for window in found]


@router.post("/windows/{window_id}/activate", response_model=a.WindowActionResponse, tags=["windows"], responses=error_responses(404, 422, 503))
async def activate(window_id: str = WINDOW_ID, service: DesktopService = Depends(get_service)) -> a.WindowActionResponse:
    number = _window_id(window_id)
    done = await service.on_x_thread(service.desktop.activate, number)
    return a.WindowActionResponse(id=number, done=done)


@router.post("/windows/{window_id}/close", response_model=a.WindowActionResponse, tags=["windows"], responses=error_responses(404, 422, 503))
async def close(window_id: str = WINDOW_ID, service: DesktopService = Depends(get_service)) -> a.WindowActionResponse:
    number = _window_id(window_id)
    done = await service.on_x_thread(service.desktop.close_window, number)
    return a.WindowActionResponse(id=number, done=done)


@router.post("/apps/launch", response_model=a.LaunchResponse, tags=["windows"], responses=error_responses(422, 503))
async def launch(body: a.LaunchRequest, service: DesktopService = Depends(get_service),
                 user: DesktopUser = Depends(get_user)) -> a.LaunchResponse:
    try:
        argv = shlex.split(body.command) if isinstance(body.command, str) else list(body.command)
    except ValueError as error:
        raise ApiError(422, "invalid_command", f"Cannot split the command: {error}.") from None
    if not argv or not argv[0]:
        raise ApiError(422, "invalid_command", "The command is empty; give a program name such as 'mousepad'.")
    if any("\0" in part for part in argv):
        raise ApiError(422, "invalid_command", "The command contains a NUL character, which no program can take; remove it.")
    before = set(await service.on_x_thread(service.desktop.window_ids))
    pid = await user.launch(argv)
    window = await _launched_window(service, before, pid, body.timeout) if body.wait_for_window else None
    return a.LaunchResponse(pid=pid, window=a.Window(**vars(window)) if window else None)


LAUNCH_POLL_S = 0.1
# LibreOffice maps its document window first and names it a moment later.
UNTITLED_GRACE_S = 1.0


async def _launched_window(service: DesktopService, before: set[int], pid: int, timeout: float) -> x11.WindowInfo | None:
    """The window a launched program opened for its user. Not a splash screen (soffice shows
    one first, then closes it), a main window before a dialog, and one still there a poll
    after it appeared, with its title if it gets one within UNTITLED_GRACE_S."""
    deadline = time.monotonic() + timeout
    candidate, since = None, 0.0
    while True:
        current = await service.on_x_thread(service.desktop.windows_with_roles)
        # Our pid first. X reuses window ids of clients that just left, so a new window may
        # carry an id from `before`; launchers that fork (firefox, soffice) show other pids.
        # Topmost first within each rank (the sort is stable).
        ranked = sorted(
            ((w, role) for w, role in reversed(current) if (w.pid == pid or w.id not in before) and role in ("main", "dialog")),
            key=lambda item: (item[0].pid != pid, item[1] != "main"),
        )
        found = ranked[0][0] if ranked else None
        now = time.monotonic()
        if found is None or candidate is None or found.id != candidate.id:
            candidate, since = found, now
        elif found.title or now - since >= UNTITLED_GRACE_S:
            return found
        if now >= deadline:
            return found
        await asyncio.sleep(LAUNCH_POLL_S)


@router.get("/clipboard", response_model=a.ClipboardText, tags=["clipboard"], responses=error_responses(503))
async def get_clipboard(service: DesktopService = Depends(get_service)) -> a.ClipboardText:
    return a.ClipboardText(text=await asyncio.to_thread(service.desktop.clipboard.get))


@router.put("/clipboard", response_model=a.ClipboardText, tags=["clipboard"], responses=error_responses(503))
async def put_clipboard(body: a.ClipboardText, service: DesktopService = Depends(get_service)) -> a.ClipboardText:
    await asyncio.to_thread(service.desktop.clipboard.set, body.text)
    return body
