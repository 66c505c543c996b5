"""Benches of what observes the desktop rather than acting on it: GET /accessibility on a
busy desktop, and the CPU a screen recording costs while a run goes on.

    python -m cubicle.bench.observe [--url URL] [--rounds N] [--seconds S] [--json FILE]

`accessibility_bench` opens the apps a task would (galculator, mousepad, LibreOffice Calc,
Firefox, Chromium), then times the tree of the whole desktop, of what is on the screen, and of
the focused window, each a few rounds: the time the client waited and the server's own
figure, with the nodes read and the apps that did not answer. `recording_bench` acts on the
desktop as a run does (typing, clicks, a window opened and closed, screenshots) for a while
without a recording, then with one in each format, and reads the CPU time of ffmpeg and of the
server from /proc (so the desktop must run on this machine), and the video's size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cubicle.client import CubicleError, DesktopClient

from .desktops import Desktop, with_desktop
from .processes import SERVER_ROLE, cpu_seconds, desktop_processes

BUSY_APPS: tuple[tuple[str, list[str]], ...] = (
    ("galculator", ["galculator"]),
    ("mousepad", ["mousepad"]),
    ("calc", ["libreoffice", "--calc", "--norestore"]),
    ("firefox", ["firefox-esr", "--no-remote", "about:blank"]),
    ("chromium", ["chromium", "--no-sandbox", "--test-type", "--no-first-run", "--no-default-browser-check",
                  "--force-renderer-accessibility", "--disable-dev-shm-usage", "about:blank"]),
)
SCOPES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("desktop", {}),
    ("desktop, visible_only", {"visible_only": True}),
    ("desktop, visible and interactive only", {"visible_only": True, "interactive_only": True}),
    ("focused window", {"focused": True}),
)


@contextlib.contextmanager
def busy_desktop(client: DesktopClient, apps=BUSY_APPS, profile_dir: Path | None = None) -> Iterator[list[str]]:
    """The apps open (each with a profile of its own where it takes one); closed afterwards."""
    profiles = Path(profile_dir or tempfile.mkdtemp(prefix="cubicle-bench-profiles-"))
    before = {window.id for window in client.windows()}
    opened, pids = [], []
    try:
        for name, argv in apps:
            if name == "calc":
                argv = [argv[0], f"-env:UserInstallation={(profiles / 'libreoffice').as_uri()}", *argv[1:]]
            elif name == "firefox":
                argv = [*argv[:2], "--profile", str(profiles / "firefox"), *argv[2:]]
                (profiles / "firefox").mkdir(parents=True, exist_ok=True)
            elif name == "chromium":
                argv = [*argv[:1], f"--user-data-dir={profiles / 'chromium'}", *argv[1:]]
            try:
                launched = client.launch(argv, timeout=90)
            except CubicleError as error:
                print(f"  {name}: not started ({error.message})", file=sys.stderr)
                continue
            pids += [launched.pid] + ([launched.window.pid] if launched.window and launched.window.pid else [])
            opened.append(name)
        time.sleep(3.0)  # let the last one settle
        yield opened
    finally:
        for window in reversed(client.windows()):
            if window.id not in before:
                with contextlib.suppress(CubicleError):
                    client.close_window(window.id)
        time.sleep(2.0)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, 9)


def accessibility_bench(client: DesktopClient, rounds: int = 5) -> dict[str, Any]:
    """GET /accessibility in each scope, `rounds` times: client and server milliseconds, nodes."""
    results: dict[str, Any] = {}
    for label, query in SCOPES:
        waited, served, nodes, unreadable = [], [], [], set()
        for _ in range(rounds):
            started = time.perf_counter()
            tree = client.accessibility(timeout_ms=30_000, app_timeout_ms=5_000, max_nodes=50_000, **query)
            waited.append((time.perf_counter() - started) * 1000)
            served.append(tree.elapsed_ms)
            nodes.append(tree.nodes)
            unreadable |= {entry.name for entry in tree.unreadable}
        results[label] = {
            "client_ms_median": round(statistics.median(waited), 1), "client_ms_max": round(max(waited), 1),
            "server_ms_median": round(statistics.median(served), 1), "nodes": max(nodes),
            "unreadable": sorted(unreadable),
        }
    return results


def _act_like_a_run(client: DesktopClient, seconds: float) -> int:
    """What an agent's run does to the screen, for `seconds`: a screenshot, a click, some typing,
    a window opened and closed now and then. Returns the number of steps done."""
    steps, deadline = 0, time.monotonic() + seconds
    editor = client.launch("mousepad", timeout=30)
    try:
        while time.monotonic() < deadline:
            client.screenshot(max_width=1280)
            client.act({"action": "left_click", "coordinate": [400 + steps % 7 * 20, 300 + steps % 5 * 15]},
                        {"action": "type", "text": f"step {steps}: the quick brown fox jumps over the lazy dog\n"})
            if steps % 5 == 4:
                opened = client.launch("galculator", timeout=30)
                if opened.window:
                    client.close_window(opened.window.id)
            steps += 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(editor.pid, 9)  # its text is not worth a "save?" dialog
    return steps


def _ffmpeg_pid(recording_id: str) -> int | None:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                if argv and argv[0].endswith(b"ffmpeg") and any(recording_id.encode() in part for part in argv):
                    return int(entry)
    return None


def recording_bench(client: DesktopClient, display: str, seconds: float = 20.0, frame_rate: int = 10,
                    formats: tuple[str, ...] = ("mp4", "webm")) -> dict[str, Any]:
    """CPU seconds per second of ffmpeg and of the server while a run goes on, without a
    recording and with one in each format; and the videos' sizes."""
    server = next((pid for pid, role in desktop_processes(display) if role == SERVER_ROLE), None)
    results: dict[str, Any] = {"seconds": seconds, "frame_rate": frame_rate}

    def server_cpu() -> float:
        return (cpu_seconds(server) or 0.0) if server else 0.0

    before = server_cpu()
    started = time.monotonic()
    steps = _act_like_a_run(client, seconds)
    elapsed = time.monotonic() - started
    results["no recording"] = {"steps": steps, "server_cpu": round((server_cpu() - before) / elapsed, 3)}
    for format in formats:
        info = client.start_recording(format=format, frame_rate=frame_rate)
        ffmpeg = _ffmpeg_pid(info.id)
        before, encoder_before, started = server_cpu(), cpu_seconds(ffmpeg) if ffmpeg else None, time.monotonic()
        steps = _act_like_a_run(client, seconds)
        elapsed = time.monotonic() - started
        encoder = (cpu_seconds(ffmpeg) or 0.0) - (encoder_before or 0.0) if ffmpeg and encoder_before is not None else None
        server_used = server_cpu() - before
        finished = client.stop_recording()
        results[format] = {
            "steps": steps, "ffmpeg_cpu": round(encoder / elapsed, 3) if encoder is not None else None,
            "server_cpu": round(server_used / elapsed, 3), "megabytes": round(finished.size / 1e6, 2),
            "megabits_per_second": round(finished.size * 8 / 1e6 / max(finished.duration_s, 0.1), 2),
            "frames": finished.frames,
        }
        with contextlib.suppress(CubicleError):
            client.delete_recording(finished.id)
    return results


def run(desktop: Desktop, rounds: int, seconds: float, json_path: str | None) -> int:
    report: dict[str, Any] = {}
    with DesktopClient(desktop.url, desktop.token, timeout=120) as client:
        print("GET /accessibility, apps as a task would have them open ...", file=sys.stderr)
        with busy_desktop(client) as opened:
            report["accessibility"] = {"apps": opened, **accessibility_bench(client, rounds)}
        print(f"screen recording while a run goes on ({seconds:.0f} s each) ...", file=sys.stderr)
        report["recording"] = recording_bench(client, desktop.display, seconds)
    for label, figures in report["accessibility"].items():
        if isinstance(figures, dict):
            print(f"accessibility, {label}: {figures['client_ms_median']} ms median (max {figures['client_ms_max']}), "
                  f"{figures['nodes']} nodes" + (f", unreadable: {figures['unreadable']}" if figures["unreadable"] else ""))
    for label, figures in report["recording"].items():
        if isinstance(figures, dict):
            print(f"recording, {label}: {json.dumps(figures)}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cubicle.bench.observe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running desktop on this machine (default: start one); token in CUBICLE_TOKEN")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=20.0, help="of run-like activity per recording setting")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    return with_desktop(args.url, lambda desktop: run(desktop, args.rounds, args.seconds, args.json))


if __name__ == "__main__":
    sys.exit(main())
