"""Screen recordings: ffmpeg grabbing the X display (x11grab, the pointer drawn in), one at a
time, each ended by POST /recording/stop or by its own caps on time and size.

ffmpeg runs here, in the server's process tree, rather than in the runner's: it is an X client
like the server itself, and its file then belongs to the server's user (in the image, a user
that no program on the desktop can read the files of) and is served from here without passing
through the runner. The videos are kept in the server's state folder (the last few; older ones
are deleted as new ones start).

ffmpeg reports its progress on a pipe (`-progress`): frames, size and time are known while it
records, its first report says that it really records (else its last words are the error), and
its end says whether a cap ended it. It is stopped the way it finishes a file properly ('q' on
its input), then by SIGINT, then killed. MP4 is written fragmented, so that even a killed
ffmpeg leaves a file that plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cubicle import recording as r
from cubicle.web import ApiError

FFMPEG = "ffmpeg"
_FIRST_REPORT_S = 5.0  # ffmpeg reports twice a second; the first report says it records
_QUIT_GRACE_S = 10.0
_SIGINT_GRACE_S = 5.0
_LOG_TAIL_CHARS = 600

# Chosen by measuring (see cubicle.bench.observe): at 10 frames/s of a busy 1280x800 screen,
# x264 "ultrafast" costs 7-8 % of a core and ~2 Mbit/s; VP9 in real-time mode ~16 % and more
# bytes; VP8 ~30 %. CRF 30 keeps text readable.
_CODECS = {
    "mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-pix_fmt", "yuv420p",
            "-movflags", "+frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "500000"],
    "webm": ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1", "-crf", "40",
             "-b:v", "1M", "-pix_fmt", "yuv420p", "-cluster_time_limit", "500"],
}
# Written in pieces of half a second at most (MP4 fragments, WebM clusters): the size cap (-fs)
# is checked as pieces are written, so a file ends at most half a second's worth past it.


@dataclass(eq=False)
class _Recording:
    id: str
    options: r.RecordingStart
    width: int
    height: int
    path: Path
    log_path: Path
    process: asyncio.subprocess.Process
    started_at: float = field(default_factory=time.time)
    frames: int = 0
    size: int = 0
    seconds: float = 0.0
    reported: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    stop_requested: bool = False
    ended_by: str | None = None
    error: str | None = None
    reader: asyncio.Task[None] | None = None

    def info(self) -> r.RecordingInfo:
        state = "recording" if not self.ended.is_set() else ("failed" if self.ended_by == "error" else "finished")
        size = self.size
        with contextlib.suppress(OSError):
            size = max(size, self.path.stat().st_size)
        return r.RecordingInfo(
            id=self.id, state=state, format=self.options.format, media_type=r.MEDIA_TYPES[self.options.format],
            frame_rate=self.options.frame_rate, width=self.width, height=self.height, started_at=round(self.started_at, 3),
            duration_s=round(self.seconds, 3), size=size, frames=self.frames, ended_by=self.ended_by, error=self.error,
            url=f"/recording/{self.id}",
        )


class ScreenRecorder:
    def __init__(self, display: str, folder: Path | None = None):
        self.display = display
        self.folder = folder or Path(tempfile.mkdtemp(prefix="cubicle-recordings-"))
        self._current: _Recording | None = None
        self._finished: list[_Recording] = []  # newest first
        self._lock = asyncio.Lock()

    @classmethod
    def from_environment(cls, display: str) -> ScreenRecorder:
        """Recordings in <state folder>/recordings when the desktop has one (a temporary folder otherwise)."""
        state = os.environ.get("CUBICLE_STATE_DIR")
        if state:
            folder = Path(state) / "recordings"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            return cls(display, folder)
        return cls(display)

    # -- the routes' verbs ------------------------------------------------------------------

    async def start(self, options: r.RecordingStart, screen: tuple[int, int]) -> r.RecordingInfo:
        async with self._lock:
            current = self._current
            if current is not None and not current.ended.is_set():
                raise ApiError(409, "recording_running", (
                    f"Recording {current.id} is running (one at a time): stop it with POST /recording/stop first."))
            if current is not None:
                self._keep(current)
                self._current = None
            program = shutil.which(FFMPEG)
            if program is None:
                raise ApiError(503, "recording_unavailable", (
                    "ffmpeg is not installed on the desktop, so it cannot record: install the Debian package ffmpeg "
                    "(it is in desktop/packages.txt)."))
            self._prune(keep=r.KEPT_RECORDINGS - 1)
            recording = await self._spawn(program, options, screen)
            self._current = recording
            try:
                await asyncio.wait_for(_first(recording.reported, recording.ended), _FIRST_REPORT_S)
            except TimeoutError:
                pass  # slow to start, but running: its reports will come
            if recording.ended.is_set() and recording.ended_by == "error":
                self._current = None
                self._keep(recording)
                raise ApiError(500, "recording_failed", f"ffmpeg could not record: {recording.error}")
            return recording.info()

    async def stop(self) -> r.RecordingInfo:
        async with self._lock:
            recording = self._current
            if recording is None:
                raise ApiError(409, "not_recording", "No recording is running: start one with POST /recording/start.")
            if not recording.ended.is_set():
                recording.stop_requested = True
                await self._end(recording)
            self._current = None
            self._keep(recording)
            info = recording.info()
        if info.state == "failed":
            kept = f" What it recorded until then is at GET {info.url}." if info.size else ""
            raise ApiError(500, "recording_failed", f"The recording failed: {info.error}.{kept}")
        return info

    def status(self) -> r.RecordingStatus:
        current = self._current
        running = current.info() if current is not None and not current.ended.is_set() else None
        ended = ([current] if current is not None and current.ended.is_set() else []) + self._finished
        return r.RecordingStatus(recording=running, recordings=[recording.info() for recording in ended])

    def file(self, recording_id: str) -> tuple[Path, str]:
        """The finished recording's file and media type."""
        recording = self._find(recording_id)
        if not recording.ended.is_set():
            raise ApiError(409, "recording_running", f"Recording {recording_id} is still running: stop it first.")
        if not recording.path.is_file():
            raise ApiError(404, "recording_not_found", f"Recording {recording_id} left no file (ffmpeg: {recording.error}).")
        return recording.path, r.MEDIA_TYPES[recording.options.format]

    def delete(self, recording_id: str) -> None:
        recording = self._find(recording_id)
        if not recording.ended.is_set():
            raise ApiError(409, "recording_running", f"Recording {recording_id} is running: stop it first.")
        if self._current is recording:
            self._current = None
        with contextlib.suppress(ValueError):
            self._finished.remove(recording)
        self._remove_files(recording)

    async def close(self) -> None:
        """Ends a running recording properly (the server is stopping)."""
        recording = self._current
        if recording is not None and not recording.ended.is_set():
            recording.stop_requested = True
            await self._end(recording)

    # -- ffmpeg ---------------------------------------------------------------------------

    async def _spawn(self, program: str, options: r.RecordingStart, screen: tuple[int, int]) -> _Recording:
        recording_id = secrets.token_hex(8)
        path = self.folder / f"{recording_id}.{options.format}"
        log_path = self.folder / f"{recording_id}.log"
        width, height = screen
        argv = [
            program, "-hide_banner", "-nostats", "-loglevel", "error", "-progress", "pipe:1",
            "-f", "x11grab", "-draw_mouse", "1", "-framerate", str(options.frame_rate),
            "-video_size", f"{width}x{height}", "-i", f"{self.display}+0,0",
            *(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"] if width % 2 or height % 2 else []),  # 4:2:0 wants even sizes
            # flush_packets: each piece reaches the file as it is made, not when 32 KiB have gathered.
            *_CODECS[options.format], "-g", str(options.frame_rate * 2), "-flush_packets", "1",
            "-t", str(options.max_seconds), "-fs", str(options.max_megabytes * 1_000_000), "-y", str(path),
        ]
        with open(log_path, "wb") as log:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                env=dict(os.environ, DISPLAY=self.display), start_new_session=True,
            )
        recording = _Recording(recording_id, options, width, height, path, log_path, process)
        recording.reader = asyncio.get_running_loop().create_task(self._follow(recording))
        return recording

    async def _follow(self, recording: _Recording) -> None:
        """Reads ffmpeg's progress reports until it exits, then says how it ended."""
        assert recording.process.stdout is not None
        report: dict[str, str] = {}
        try:
            async for raw in recording.process.stdout:
                key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
                report[key] = value
                if key == "progress":  # the last line of each report
                    recording.frames = _number(report.get("frame"), recording.frames)
                    recording.size = _number(report.get("total_size"), recording.size)
                    microseconds = _number(report.get("out_time_us"), -1)
                    if microseconds >= 0:
                        recording.seconds = microseconds / 1e6
                    recording.reported.set()
            await recording.process.wait()
        finally:
            # However this ends (even cancelled), the recording is over for everyone waiting on it.
            if not recording.ended.is_set():
                self._ended(recording, recording.process.returncode)

    def _ended(self, recording: _Recording, code: int | None) -> None:
        options = recording.options
        if recording.stop_requested:
            recording.ended_by = "stop"
        elif code == 0 and recording.seconds >= options.max_seconds - 2.0 / options.frame_rate:
            recording.ended_by = "max_seconds"
        elif code == 0 and recording.size >= options.max_megabytes * 1_000_000 * 0.9:
            recording.ended_by = "max_megabytes"
        elif code == 0:
            recording.ended_by = "stop"
        else:
            recording.ended_by = "error"
            recording.error = f"ffmpeg exited with code {code} after {recording.seconds:.1f} s: {self._last_words(recording)}"
        recording.ended.set()

    async def _end(self, recording: _Recording) -> None:
        """'q' (ffmpeg finishes the file and exits), then SIGINT, then SIGKILL."""
        process = recording.process
        if process.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                process.stdin.write(b"q")
                await process.stdin.drain()
                process.stdin.close()
        for grace, then in ((_QUIT_GRACE_S, signal.SIGINT), (_SIGINT_GRACE_S, signal.SIGKILL)):
            try:
                await asyncio.wait_for(recording.ended.wait(), grace)
                return
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(then)
        await asyncio.wait_for(recording.ended.wait(), _SIGINT_GRACE_S)

    def _last_words(self, recording: _Recording) -> str:
        try:
            text = recording.log_path.read_text(errors="replace").strip()
        except OSError:
            text = ""
        return text[-_LOG_TAIL_CHARS:] or "it said nothing"

    # -- keeping ---------------------------------------------------------------------------

    def _find(self, recording_id: str) -> _Recording:
        for recording in ([self._current] if self._current else []) + self._finished:
            if recording.id == recording_id:
                return recording
        kept = ", ".join(recording.id for recording in self._finished) or "none"
        raise ApiError(404, "recording_not_found", f"No recording {recording_id!r} (kept: {kept}). GET /recording lists them.")

    def _keep(self, recording: _Recording) -> None:
        if recording not in self._finished:
            self._finished.insert(0, recording)

    def _prune(self, keep: int) -> None:
        for recording in self._finished[keep:]:
            self._remove_files(recording)
        del self._finished[keep:]

    @staticmethod
    def _remove_files(recording: _Recording) -> None:
        for path in (recording.path, recording.log_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _number(text: str | None, default: int) -> int:
    try:
        return int(text) if text not in (None, "", "N/A") else default
    except ValueError:
        return default
