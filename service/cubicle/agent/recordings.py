"""A run's screen recording (NewRun.record): started on the desktop before the run's first
screenshot, stopped when the run ends, and its video fetched into the run folder, where the
replay page plays it beside the steps. The desktop records (cubicle.server.screen_recorder);
the worker only asks and fetches."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import httpx

from cubicle.client import CubicleError, DesktopClient

from .runs import Run

log = logging.getLogger("cubicle.worker")

VIDEO_NAMES = {"mp4": "recording.mp4", "webm": "recording.webm"}


def start_recording(client: DesktopClient) -> dict[str, Any]:
    """What the run's metadata keeps of a recording just started: its id on the desktop and
    when it started by this worker's clock (the steps' times are by the same clock)."""
    info = client.start_recording()
    return {"id": info.id, "format": info.format, "started_at": time.time(), "state": "recording"}


def discard_recording(client: DesktopClient, recording: dict[str, Any]) -> None:
    """The run did not start after all: stop its recording and delete the video."""
    with contextlib.suppress(CubicleError, httpx.HTTPError):
        client.stop_recording()
        client.delete_recording(recording["id"])


def keep_recording(client: DesktopClient, run: Run) -> None:
    """Stop the run's recording and fetch its video into the run folder (as recording.mp4);
    whatever fails is written into the run's metadata rather than raised (the run is over)."""
    recording = dict(run.meta["recording"])
    name = VIDEO_NAMES.get(str(recording.get("format")), "recording.mp4")
    try:
        info = client.stop_recording()
        recording.update(duration_s=info.duration_s, frames=info.frames, ended_by=info.ended_by)
        temporary = run.folder / (name + ".part")
        size = client.download_recording(info.id, temporary)
        temporary.replace(run.folder / name)
        recording.update(state="kept", file=name, size=size)
        with contextlib.suppress(CubicleError, httpx.HTTPError):
            client.delete_recording(info.id)  # the desktop keeps a few; this one is safe in the run folder
    except (CubicleError, httpx.HTTPError, OSError) as error:
        log.warning("run %s: its recording could not be kept: %s", run.id, error)
        recording.update(state="failed", error=str(error))
    run.update(recording=recording)

