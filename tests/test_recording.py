"""Screen recordings on the real desktop: ffmpeg's video, decoded with ffmpeg again, shows what
was done while it recorded (a window of a colour of its own, the pointer over it); the caps on
time and size end a recording by themselves; one recording at a time; a missing or dying ffmpeg
is a clear error; a worker's run with "record": true keeps its video and plays it in its replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import anthropic
import httpx
import pytest
from PIL import Image

from cubicle.agent.runs import RunStore
from cubicle.agent.service import create_worker_app
from cubicle.client import CubicleError
from cubicle.recording import RecordingStart
from cubicle.server.screen_recorder import ScreenRecorder
from cubicle.web import ApiError
from fake_anthropic import FakeAnthropic, message, text, tool_use
from support import Serving, wait_until

MAGENTA = (255, 0, 255)


def probe(video: Path) -> dict:
    shown = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,width,height,nb_read_frames:format=duration", "-of", "json", str(video)],
        capture_output=True, text=True, timeout=120, check=True)
    data = json.loads(shown.stdout)
    return {**data["streams"][0], "duration": float(data["format"].get("duration") or 0)}


def frame_at(video: Path, seconds: float, out: Path) -> Image.Image:
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video), "-ss", f"{max(0.0, seconds):.2f}", "-frames:v", "1",
                    "-y", str(out)], check=True, timeout=120)
    with Image.open(out) as image:
        return image.convert("RGB")


def near(colour: tuple[int, int, int], wanted: tuple[int, int, int], slack: int = 40) -> bool:
    return all(abs(a - b) <= slack for a, b in zip(colour, wanted))


def ffmpeg_of(recording_id: str) -> int:
    """The pid of the ffmpeg writing this recording (a child of the desktop's server)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if command and command[0].endswith(b"ffmpeg") and any(recording_id.encode() in part for part in command):
                    return int(entry)
    raise AssertionError(f"no ffmpeg records {recording_id}")


@pytest.fixture
def recording_client(client):
    """The session's client, with no recording running before or after the test."""
    with contextlib.suppress(CubicleError):
        client.stop_recording()
    yield client
    with contextlib.suppress(CubicleError):
        client.stop_recording()


@contextlib.contextmanager
def window_of(client, *argv: str, title: str):
    before = {w.id for w in client.windows()}
    launched = client.launch([*argv, "-title", title], timeout=30)
    try:
        yield launched.window or wait_until(
            lambda: next((w for w in client.windows() if w.id not in before and w.title == title), None), 20, title)
    finally:
        with contextlib.suppress(CubicleError):
            if launched.window:
                client.close_window(launched.window.id)
        with contextlib.suppress(ProcessLookupError):
            os.kill(launched.pid, signal.SIGKILL)
        wait_until(lambda: not any(w.title == title for w in client.windows()), 20, f"{title} gone")


def test_the_video_shows_a_window_opened_while_recording_and_the_pointer(recording_client, tmp_path):
    client = recording_client
    client.act({"action": "mouse_move", "coordinate": [5, 5]})
    started = client.start_recording(frame_rate=10)
    assert started.state == "recording" and started.format == "mp4" and started.media_type == "video/mp4"
    screen = client.screen()
    assert (started.width, started.height) == (screen.width, screen.height)
    time.sleep(1.5)
    with window_of(client, "xterm", "-bg", "#ff00ff", "-fg", "#ff00ff", "-geometry", "40x12+400+300",
                   title="cubicle-magenta") as window:
        time.sleep(1.5)
        shown_at = time.time()
        time.sleep(1.0)
        inside = (window.x + window.width // 2, window.y + window.height // 2)
        client.act({"action": "mouse_move", "coordinate": list(inside)})
        time.sleep(1.5)
        pointed_at = time.time()
        time.sleep(1.0)
        finished = client.stop_recording()
    assert finished.state == "finished" and finished.ended_by == "stop" and finished.id == started.id
    assert finished.frames >= 50 and finished.duration_s >= 5.0 and finished.size > 0
    video = tmp_path / "recording.mp4"
    assert client.download_recording(finished.id, video) == video.stat().st_size > 0
    probed = probe(video)
    assert probed["codec_name"] == "h264" and (probed["width"], probed["height"]) == (screen.width, screen.height)
    assert int(probed["nb_read_frames"]) >= 50 and probed["duration"] >= 5.0

    # What the screen showed at each moment: before the window, the window, the pointer on it.
    probe_point = (inside[0] - 60, inside[1])  # in the window, away from the pointer
    before = frame_at(video, 0.5, tmp_path / "before.png")
    assert not near(before.getpixel(probe_point), MAGENTA), before.getpixel(probe_point)
    opened = frame_at(video, shown_at - started.started_at, tmp_path / "opened.png")
    assert near(opened.getpixel(probe_point), MAGENTA), opened.getpixel(probe_point)
    assert near(opened.getpixel(inside), MAGENTA)  # the pointer was still in the corner
    pointed = frame_at(video, pointed_at - started.started_at, tmp_path / "pointed.png")
    arrow = [pointed.getpixel((inside[0] + dx, inside[1] + dy)) for dx in range(1, 6) for dy in range(2, 10)]
    assert sum(not near(pixel, MAGENTA) for pixel in arrow) >= 8, arrow  # the pointer is drawn in

    listed = client.recordings()
    assert listed.recording is None and listed.recordings[0].id == finished.id


def test_one_recording_at_a_time_and_stop_needs_one(recording_client):
    client = recording_client
    with pytest.raises(CubicleError) as idle:
        client.stop_recording()
    assert idle.value.status == 409 and idle.value.code == "not_recording"
    running = client.start_recording()
    with pytest.raises(CubicleError) as second:
        client.start_recording(format="webm")
    assert second.value.status == 409 and second.value.code == "recording_running" and running.id in second.value.message
    assert client.recordings().recording.id == running.id
    with pytest.raises(CubicleError) as early:
        client.download_recording(running.id, "/dev/null")
    assert early.value.status == 409
    assert client.stop_recording().id == running.id


def test_webm_is_vp9(recording_client, tmp_path):
    client = recording_client
    started = client.start_recording(format="webm", frame_rate=5)
    time.sleep(2.5)
    finished = client.stop_recording()
    assert finished.media_type == "video/webm" and finished.frames >= 8
    video = tmp_path / "recording.webm"
    client.download_recording(started.id, video)
    assert probe(video)["codec_name"] == "vp9"
    with httpx.Client(base_url=client.base_url, headers={"Authorization": f"Bearer {client.token}"}) as http:
        response = http.get(f"/recording/{started.id}")
    assert response.headers["content-type"] == "video/webm" and response.content == video.read_bytes()


def test_the_time_cap_ends_a_recording_by_itself(recording_client, tmp_path):
    client = recording_client
    started = client.start_recording(max_seconds=2)
    ended = wait_until(lambda: client.recordings().recording is None, 15, "the recording to end by itself", 0.2)
    assert ended
    finished = client.stop_recording()  # collects it: its info, not an error
    assert finished.id == started.id and finished.state == "finished" and finished.ended_by == "max_seconds"
    video = tmp_path / "capped.mp4"
    client.download_recording(finished.id, video)
    assert 1.5 <= probe(video)["duration"] <= 2.3


def test_the_size_cap_ends_a_recording_by_itself(recording_client, tmp_path):
    client = recording_client
    # A screen that changes all over, all the time: text from /dev/urandom.
    with window_of(client, "xterm", "-geometry", "200x60+0+0", "-e", "sh", "-c", "base64 /dev/urandom",
                   title="cubicle-noise"):
        time.sleep(1.0)
        started = client.start_recording(frame_rate=10, max_megabytes=1)
        wait_until(lambda: client.recordings().recording is None, 60, "the recording to reach 1 MB", 0.2)
    finished = client.stop_recording()
    assert finished.id == started.id and finished.ended_by == "max_megabytes", finished
    video = tmp_path / "capped.mp4"
    size = client.download_recording(finished.id, video)
    seconds = probe(video)["duration"]  # what it holds plays
    # The file ends within a second's worth past the cap: it is written in pieces of half a
    # second, and a busy encoder may hold one more piece when the cap is reached.
    assert 1_000_000 <= size <= 1_000_000 + size / seconds * 1.0, (size, seconds)


def test_a_dying_ffmpeg_is_a_500_that_says_so_and_keeps_what_it_recorded(recording_client, tmp_path):
    client = recording_client
    started = client.start_recording(frame_rate=10)
    time.sleep(3.0)  # past its first keyframe interval: a fragment is on disk
    os.kill(ffmpeg_of(started.id), signal.SIGKILL)
    wait_until(lambda: client.recordings().recording is None, 10, "the server to see ffmpeg gone", 0.1)
    with pytest.raises(CubicleError) as failed:
        client.stop_recording()
    assert failed.value.status == 500 and failed.value.code == "recording_failed"
    assert "ffmpeg exited with code -9" in failed.value.message and f"/recording/{started.id}" in failed.value.message
    video = tmp_path / "partial.mp4"
    assert client.download_recording(started.id, video) > 0
    assert probe(video)["duration"] > 0
    # The next recording starts as usual.
    client.start_recording()
    assert client.stop_recording().state == "finished"


def test_an_ffmpeg_that_cannot_record_is_a_500_with_its_words(desktop, tmp_path):
    recorder = ScreenRecorder(":2999", tmp_path)  # no X server there
    with pytest.raises(ApiError) as failed:
        asyncio.run(recorder.start(RecordingStart(), (640, 480)))
    assert failed.value.status == 500 and failed.value.code == "recording_failed"
    assert "Cannot open display" in failed.value.message or "display" in failed.value.message.lower()
    assert recorder.status().recording is None


def test_without_ffmpeg_a_start_is_a_503_that_says_what_to_install(desktop, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without ffmpeg on it
    recorder = ScreenRecorder(desktop.display, tmp_path)
    with pytest.raises(ApiError) as refused:
        asyncio.run(recorder.start(RecordingStart(), (640, 480)))
    assert refused.value.status == 503 and refused.value.code == "recording_unavailable"
    assert "ffmpeg is not installed" in refused.value.message and "desktop/packages.txt" in refused.value.message


@pytest.mark.parametrize("body", [
    {"format": "avi"}, {"frame_rate": 0}, {"frame_rate": 31}, {"max_seconds": 0}, {"max_megabytes": 0},
    {"frame_rate": "10"}, {"frame_rate": True}, {"sound": True},
])
def test_bad_starts_are_refused_and_start_nothing(desktop, recording_client, body):
    response = httpx.post(desktop.url + "/recording/start", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {desktop.token}"})
    assert response.status_code == 422, response.text
    assert recording_client.recordings().recording is None


def test_unknown_recordings_are_404_and_bad_ids_422(desktop):
    headers = {"Authorization": f"Bearer {desktop.token}"}
    assert httpx.get(desktop.url + "/recording/0123456789abcdef", headers=headers).status_code == 404
    assert httpx.delete(desktop.url + "/recording/0123456789abcdef", headers=headers).status_code == 404
    assert httpx.get(desktop.url + "/recording/not-an-id", headers=headers).status_code == 422
    assert httpx.get(desktop.url + "/recording/0123456789abcdef").status_code == 401


# -- a worker's recorded run ----------------------------------------------------------------------

WORKER_TOKEN = "worker-token-" + os.urandom(8).hex()


def test_a_run_with_record_keeps_its_video_and_the_replay_plays_it(desktop, recording_client, tmp_path):
    api = FakeAnthropic([
        lambda request: message(tool_use("computer", {"action": "mouse_move", "coordinate": [300, 300]})),
        lambda request: message(tool_use("computer", {"action": "wait", "duration": 2})),
        lambda request: message(text("done")),
    ])
    runs = tmp_path / "runs"
    app = create_worker_app(
        WORKER_TOKEN, RunStore(runs), default_desktop=desktop.url, policy=None,
        anthropic_factory=lambda: anthropic.Anthropic(api_key="sk-ant-test-" + "r" * 24, base_url=api.url, max_retries=0),
    )
    serving = Serving(app)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{serving.port}", timeout=60,
                          headers={"Authorization": f"Bearer {WORKER_TOKEN}"}) as worker:
            created = worker.post("/runs", json={"task": "Move the mouse.", "model": "claude-haiku-4-5", "record": True,
                                                 "desktop": desktop.url, "desktop_token": desktop.token})
            assert created.status_code == 201, created.text
            run_id = created.json()["id"]
            shown = wait_until(lambda: (lambda run: run if not run["active"] else None)(worker.get(f"/runs/{run_id}").json()),
                               90, "the run to end", 0.2)
            assert shown["status"] == "finished", shown
            recording = shown["recording"]
            assert recording["state"] == "kept" and recording["file"] == "recording.mp4", recording
            video = runs / run_id / "recording.mp4"
            assert probe(video)["duration"] >= 2.0 and recording["size"] == video.stat().st_size
            assert recording_client.recordings().recording is None  # stopped on the desktop, and fetched
            replay = worker.get(f"/runs/{run_id}/replay").text
            assert '<video src="recording.mp4"' in replay and 'href="recording.mp4#t=' in replay
            served = worker.get(f"/runs/{run_id}/recording.mp4")
            assert served.status_code == 200 and served.headers["content-type"] == "video/mp4"
            assert served.content == video.read_bytes()
            part = worker.get(f"/runs/{run_id}/recording.mp4", headers={"Range": "bytes=0-99"})
            assert part.status_code == 206 and len(part.content) == 100  # seekable in the page's player
    finally:
        serving.stop()
        api.close()
