"""GET /accessibility: the apps' accessibility trees. Thin: check the query, turn a window id
(or "the focused one") into the X window's process, title and place, have the desktop user
read the tree (cubicle.server.atspi, in the runner), and put the boxes in the caller's space."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from cubicle import accessibility as t
from cubicle import x11
from cubicle.actions import Size
from cubicle.imaging import from_screen
from cubicle.web import ApiError, ErrorResponse, error_responses, exact_json_types, only_known_query

from .desktop_user import DesktopUser
from .host_routes import get_user
from .routes import _WINDOW_ID, _window_id, get_service
from .service import DesktopService

router = APIRouter(dependencies=[Depends(only_known_query), Depends(exact_json_types)])

# 1 to 16384 each way, as POST /actions takes a coordinate_space.
_SIDE = "([1-9][0-9]{0,3}|1[0-5][0-9]{3}|16[0-2][0-9]{2}|163[0-7][0-9]|1638[0-4])"
_SPACE = re.compile(f"{_SIDE}x{_SIDE}")
SPACE_PATTERN = f"^{_SPACE.pattern}$"


@router.get(
    "/accessibility", response_model=t.AccessibilityTree, response_model_exclude_none=True, tags=["accessibility"],
    summary="The accessibility tree of the desktop's apps (or of one window): roles, names, states, boxes, actions",
    description=(
        "What GTK 3 apps, Firefox, Chromium and LibreOffice publish through AT-SPI: one node per widget, with its role, "
        "name, states, box on the screen, actions, value, text and children. Bounded: an app that does not answer "
        "within app_timeout_ms is listed under `unreadable` (never waited for), the whole answer comes by timeout_ms "
        "with what was read by then, and max_depth / max_nodes cap its size (`truncated`, `children_omitted`). "
        "Programs that publish no tree (xterm, Tk or plain X programs) are not in it."),
    responses={
        404: {"model": ErrorResponse, "description": (
            "window_not_found: no such window; no_focused_window; window_not_accessible: the window's app publishes no "
            "tree (or none for that window)")},
        **error_responses(503),
    },
)
async def accessibility(
    window: str | None = Query(None, json_schema_extra={"pattern": f"^{_WINDOW_ID.pattern}$"}, description=(
        "only this window and its app: decimal or 0x hex, as GET /windows lists it (an id no window has: 404 "
        "window_not_found)")),
    focused: bool = Query(False, description="only the focused window and its app (404 no_focused_window if none); "
                          "not with window (422)"),
    max_depth: int = Query(t.MAX_DEPTH, ge=0, le=t.MAX_DEPTH, description="levels below each app node (0: the apps alone)"),
    max_nodes: int = Query(t.DEFAULT_MAX_NODES, ge=1, le=t.MAX_NODES, description="nodes read at most, breadth-first"),
    timeout_ms: int = Query(5000, ge=100, le=t.MAX_TIMEOUT_MS, description="answer by then with what was read"),
    app_timeout_ms: int = Query(1000, ge=50, le=t.MAX_APP_TIMEOUT_MS, description=(
        "an app that answers nothing for this long is given up (listed in unreadable)")),
    visible_only: bool = Query(False, description="only nodes on the screen (state showing), and their showing children"),
    interactive_only: bool = Query(False, description=(
        "only nodes one can act on (with actions, or focusable, editable, selectable or checkable), and the windows "
        "holding them, each under its nearest kept ancestor")),
    details: bool = Query(False, description="also each node's toolkit attributes and AT-SPI interfaces"),
    coordinate_space: str | None = Query(None, json_schema_extra={"pattern": SPACE_PATTERN}, description=(
        "WIDTHxHEIGHT (e.g. 1024x640) of a scaled screenshot: boxes in its pixels rather than the screen's, as "
        "POST /actions takes them with the same coordinate_space")),
    service: DesktopService = Depends(get_service),
    user: DesktopUser = Depends(get_user),
) -> JSONResponse:
    if window is not None and focused:
        raise ApiError(422, "invalid_request", "Give window or focused=true, not both.")
    space = _parse_space(coordinate_space) if coordinate_space is not None else None
    target, scope, window_id = None, "desktop", None
    if window is not None or focused:
        found = await service.on_x_thread(service.desktop.windows)
        if focused:
            chosen = next((w for w in found if w.focused), None)
            if chosen is None:
                raise ApiError(404, "no_focused_window", "No window has the focus now; give window=<id> (GET /windows).")
            scope = "focused"
        else:
            number = _window_id(window or "")
            chosen = next((w for w in found if w.id == number), None)
            if chosen is None:
                raise x11.WindowNotFound(number)
            scope = "window"
        if not chosen.pid:
            raise ApiError(404, "window_not_accessible", (
                f"Window {chosen.id} ({chosen.title!r}) does not say which process it belongs to (no _NET_WM_PID): "
                "its program publishes no accessibility tree."))
        window_id = chosen.id
        target = t.WindowTarget(pid=chosen.pid, title=chosen.title,
                                box=t.Box(x=chosen.x, y=chosen.y, width=chosen.width, height=chosen.height))
    request = t.TreeRequest(
        window=target, max_depth=max_depth, max_nodes=max_nodes, timeout_ms=timeout_ms, app_timeout_ms=app_timeout_ms,
        visible_only=visible_only, interactive_only=interactive_only, details=details,
    )
    tree = await user.read_accessibility(request)
    tree.scope = scope  # type: ignore[assignment]
    tree.window = window_id
    if space is not None:
        screen = await service.on_x_thread(service.desktop.screen_size)
        for app in tree.apps:
            _boxes_to_space(app, (space.width, space.height), screen)
        tree.coordinate_space = space
    return JSONResponse(tree.model_dump(exclude_none=True), headers={"Cache-Control": "no-store"})


def _parse_space(text: str) -> Size:
    match = _SPACE.fullmatch(text)
    if not match or not all(1 <= int(part) <= 16384 for part in match.groups()):
        raise ApiError(422, "invalid_coordinate_space", (
            f"coordinate_space must be WIDTHxHEIGHT with each between 1 and 16384 (e.g. 1024x640), not {text!r}."))
    return Size(width=int(match.group(1)), height=int(match.group(2)))


def _boxes_to_space(node: t.AccessibleNode, space: tuple[int, int], screen: tuple[int, int]) -> None:
    """Screen boxes into the space's pixels: the corners as the screen pixels they cover, so that
    the centre of the mapped box is where POST /actions in that space clicks the widget."""
    stack = [node]
    while stack:
        current = stack.pop()
        if current.box is not None:
            box = current.box
            x0, y0 = from_screen(box.x, box.y, space, screen)
            x1, y1 = from_screen(box.x + box.width - 1, box.y + box.height - 1, space, screen)
            current.box = t.Box(x=x0, y=y0, width=x1 - x0 + 1, height=y1 - y0 + 1)
        stack.extend(current.children)
