"""The screen recording's vocabulary: what POST /recording/start takes and what the recording
routes answer. Typed models shared by the server and the client; no ffmpeg here (that is
cubicle.server.screen_recorder)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_SECONDS = 3 * 3600
MAX_MEGABYTES = 4096
MAX_FRAME_RATE = 30
KEPT_RECORDINGS = 5  # finished recordings the desktop keeps; older ones are deleted

Format = Literal["mp4", "webm"]
MEDIA_TYPES: dict[str, str] = {"mp4": "video/mp4", "webm": "video/webm"}


class RecordingStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Format = Field("mp4", description=(
        "mp4: H.264, the cheapest to make (about a tenth of a core at 10 frames/s) and played everywhere; "
        "webm: VP9, about twice the CPU"))
    frame_rate: int = Field(10, ge=1, le=MAX_FRAME_RATE, description="frames per second")
    max_seconds: int = Field(600, ge=1, le=MAX_SECONDS, description="the recording ends by itself after this long")
    max_megabytes: int = Field(256, ge=1, le=MAX_MEGABYTES, description="the recording ends by itself at this size")


class RecordingInfo(BaseModel):
    id: str
    state: Literal["recording", "finished", "failed"]
    format: Format
    media_type: str
    frame_rate: int
    width: int
    height: int
    started_at: float = Field(description="Unix time (seconds) of the first frame, by the desktop's clock")
    duration_s: float = Field(description="seconds recorded so far, or in all once finished")
    size: int = Field(description="bytes of the file so far")
    frames: int = Field(description="frames encoded so far")
    ended_by: Literal["stop", "max_seconds", "max_megabytes", "error"] | None = Field(None, description=(
        "why it ended: POST /recording/stop, a cap, or ffmpeg dying (then error says how)"))
    error: str | None = None
    url: str = Field(description="where the video is fetched, once finished (with the token)")


class RecordingStatus(BaseModel):
    recording: RecordingInfo | None = Field(None, description="the one running now, if any")
    recordings: list[RecordingInfo] = Field(description=(
        f"the finished ones the desktop keeps (the last {KEPT_RECORDINGS}), newest first"))


class RecordingDeleted(BaseModel):
    id: str
    deleted: bool = True
