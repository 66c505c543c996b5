"""The screen recording's routes: start, stop, status, the video file. Thin: hand to the
ScreenRecorder (screen_recorder.py), which runs ffmpeg in the server's process tree."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse

from cubicle import recording as r
from cubicle.web import ErrorResponse, error_responses, exact_json_types, only_known_query
from cubicle.web.errors import MethodNotAllowed

from .routes import get_service
from .screen_recorder import ScreenRecorder
from .service import DesktopService

router = APIRouter(dependencies=[Depends(only_known_query), Depends(exact_json_types)])

RECORDING_ID = Path(pattern="^[0-9a-f]{16}$", description="as POST /recording/start answered it")
FAILED: dict[int | str, dict[str, Any]] = {500: {"model": ErrorResponse, "description": "recording_failed: ffmpeg could not record, or died; the message "
                "has its last words"}}


async def get_recorder(request: Request) -> ScreenRecorder:
    return request.app.state.recorder


@router.post(
    "/recording/start", response_model=r.RecordingInfo, response_model_exclude_none=True, tags=["recording"],
    summary="Start recording the screen (one recording at a time; the pointer is drawn in)",
    responses={**error_responses(409, 422, 503), **FAILED},
)
async def start_recording(body: r.RecordingStart | None = None, recorder: ScreenRecorder = Depends(get_recorder),
                          service: DesktopService = Depends(get_service)) -> r.RecordingInfo:
    screen = await service.on_x_thread(service.desktop.screen_size)
    return await recorder.start(body or r.RecordingStart(), screen)


@router.post(
    "/recording/stop", response_model=r.RecordingInfo, response_model_exclude_none=True, tags=["recording"],
    summary="Stop the recording (or collect one that a cap ended) and say where its video is",
    responses={**error_responses(409), **FAILED},
)
async def stop_recording(recorder: ScreenRecorder = Depends(get_recorder)) -> r.RecordingInfo:
    return await recorder.stop()


# GET /recording/start would otherwise reach GET /recording/{recording_id} and be refused
# there as a bad id (422): it is a method the path does not take, and its 405 names POST.
@router.api_route("/recording/start", methods=["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"],
                  include_in_schema=False)
@router.api_route("/recording/stop", methods=["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"],
                  include_in_schema=False)
async def other_methods_of_start_and_stop() -> None:
    raise MethodNotAllowed(["POST"])


@router.get("/recording", response_model=r.RecordingStatus, response_model_exclude_none=True, tags=["recording"],
            summary="The running recording, if any, and the finished ones the desktop keeps")
async def recording_status(recorder: ScreenRecorder = Depends(get_recorder)) -> r.RecordingStatus:
    return recorder.status()


@router.get(
    "/recording/{recording_id}", tags=["recording"], summary="A finished recording's video (MP4 or WebM)",
    response_class=FileResponse,
    responses={200: {"content": {"video/mp4": {}, "video/webm": {}}, "description": "the video file"},
               **error_responses(404, 409)},
)
async def recording_file(recording_id: str = RECORDING_ID, recorder: ScreenRecorder = Depends(get_recorder)) -> FileResponse:
    path, media_type = recorder.file(recording_id)
    return FileResponse(path, media_type=media_type, filename=path.name, headers={"Cache-Control": "no-store"})


@router.delete("/recording/{recording_id}", response_model=r.RecordingDeleted, tags=["recording"],
               summary="Delete a finished recording's video", responses=error_responses(404, 409))
async def delete_recording(recording_id: str = RECORDING_ID,
                           recorder: ScreenRecorder = Depends(get_recorder)) -> r.RecordingDeleted:
    recorder.delete(recording_id)
    return r.RecordingDeleted(id=recording_id)
