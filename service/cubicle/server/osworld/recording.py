"""OSWorld's screen recording: POST /start_recording starts one, POST /end_recording stops it and
answers with the MP4. One at a time, as in OSWorld.

ffmpeg grabs the display (x11grab, the pointer drawn in) and encodes H.264 into a file in the
desktop's state folder. It has started once it reports its first progress (within a second);
one that exits first could not open the display or the encoder, and its last words say why.
It is stopped with "q" on its input, so that it writes the MP4's index and the file plays.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

FRAME_RATE = 15
START_TIMEOUT_S = 5.0
STOP_TIMEOUT_S = 15.0


class RecordingError(Exception):
    """What went wrong, to be answered with `status` (400: the caller's order, 500: ffmpeg)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def recording_path() -> Path:
    folder = os.environ.get("CUBICLE_STATE_DIR") or tempfile.gettempdir()
    return Path(folder) / "osworld-recording.mp4"


class ScreenRecorder:
    def __init__(self, display: str):
        self.display = display
        self.path = recording_path()
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    def recording(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, size: tuple[int, int]) -> None:
        async with self._lock:
            if self.recording():
                raise RecordingError(400, "Recording is already in progress.")
            ffmpeg = shutil.which("ffmpeg")
            if ffmpeg is None:
                raise RecordingError(500, "ffmpeg is not installed on the desktop: it records the screen.")
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            width, height = size
            process = await asyncio.create_subprocess_exec(
                ffmpeg, "-hide_banner", "-nostats", "-loglevel", "error", "-y",
                "-f", "x11grab", "-draw_mouse", "1", "-framerate", str(FRAME_RATE), "-video_size", f"{width}x{height}",
                "-i", self.display,
                # H.264 in 4:2:0 wants even sides; a pixel of padding where the screen has none.
                "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
                "-progress", "pipe:1", str(self.path),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True)
            assert process.stdout is not None and process.stderr is not None
            try:
                first = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
            except TimeoutError:
                first = b""
            if not first:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                why = (await process.stderr.read()).decode("utf-8", "replace").strip()[-2000:]
                raise RecordingError(500, f"Failed to start recording: ffmpeg stopped at once ({why or 'no message'}).")
            self._process = process
            # Its progress reports must be read, or ffmpeg blocks once the pipe is full.
            asyncio.get_running_loop().create_task(self._drain(process))

    @staticmethod
    async def _drain(process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while await process.stdout.read(65536):
            pass

    async def stop(self) -> Path:
        """Ends the recording; the MP4's path."""
        async with self._lock:
            process, self._process = self._process, None
            if process is None or process.returncode is not None:
                raise RecordingError(400, "No recording in progress to stop.")
            assert process.stdin is not None and process.stderr is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                process.stdin.write(b"q")
                await process.stdin.drain()
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                process.kill()
                await process.wait()
                raise RecordingError(500, f"ffmpeg did not stop within {STOP_TIMEOUT_S:g} s and was killed; the "
                                     "recording is lost.") from None
            why = (await process.stderr.read()).decode("utf-8", "replace").strip()[-2000:]
            if not self.path.is_file() or self.path.stat().st_size == 0:
                raise RecordingError(500, f"Recording failed: the file is missing or empty ({why or 'no message'}).")
            return self.path

    async def close(self) -> None:
        if self.recording():
            with contextlib.suppress(RecordingError):
                await self.stop()
