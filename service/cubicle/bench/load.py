"""`cubicle bench --load`: many clients on one real desktop at once; `--faults`: its parts
killed under that load.

The load: --clients (16) clients, each a closed loop without pauses, each request drawn at
random from an even mix of eight kinds: screenshots (PNG and JPEG, full size and scaled to
1024 px wide) and actions (pointer moves, left clicks, harmless keys, a short line typed into a
scratch terminal), for --seconds (60). The same mix from one client, measured just before in
the same run, is the comparison, so the figures are ratios to it. The server's resident memory
is read before, during and after the load.

Nothing the load does can harm the desktop. Left clicks go to the bare background (openbox
binds nothing to them there) or to a terminal the bench opens, whose input goes to
`cat > /dev/null`; keys are arrows, Shift, Escape and BackSpace; text (ASCII) is typed only in a
batch that first clicks that terminal, and batches never interleave, so it lands there.

--faults: during the load, Xvfb, then openbox, then x11vnc, then Xvfb again with supervisord
held (SIGSTOP) for 2 s so that the outage cannot be shorter than that, are killed with SIGKILL
(the PIDs come from supervisord, or /proc when its socket is unknown). For each the bench
times, from the kill: the first 503 (for X), screenshots served again, /health all green
again, and a fresh RFB greeting through the WS /vnc bridge; and it checks that the server
process is the same one. Errors inside a fault's window (from the kill until all of that is
back) are counted apart from the others, of which there should be none; inside, the only
error allowed is a 503 display_unavailable that says to retry.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import sys
import time
import xmlrpc.client
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from cubicle.client import CubicleError

from .desktops import Desktop, with_desktop
from .processes import SERVER_ROLE, cpu_seconds, desktop_processes, rss_mb
from .report import (
    RESULTS_DIR,
    Target,
    bullet,
    machine_line,
    ms_or_dash,
    percentile,
    table,
    target_lines,
    write_json,
)

SCREENSHOTS: dict[str, dict[str, str | int]] = {
    "png": {},
    "png 1024w": {"max_width": 1024},
    "jpeg": {"format": "jpeg", "quality": 80},
    "jpeg 1024w": {"format": "jpeg", "quality": 80, "max_width": 1024},
}
ACTIONS = ("move", "click", "key", "type")
KINDS = tuple(SCREENSHOTS) + ACTIONS  # drawn with equal odds
HARMLESS_KEYS = ("shift", "Left", "Right", "Escape", "BackSpace")
WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "pack", "my", "box", "with", "five",
         "dozen", "liquor", "jugs", "0123456789")
SCRATCH_TITLE = "cubicle-load-scratch"
SCRATCH_COMMAND = ["xterm", "-title", SCRATCH_TITLE, "-geometry", "80x12+40+40", "-e", "sh", "-c", "cat > /dev/null"]
REQUEST_TIMEOUT = 30.0
ERROR_BACKOFF = 0.1  # a client that got an error waits this long, as a sane client would
WARMUP_SECONDS = 2.0
# (label, supervisord's program name, seconds supervisord is held), in this order. supervisord
# restarts a dead Xvfb so fast that requests under load rarely meet the outage; held (SIGSTOP)
# for a while, it cannot, and the 503s requests then get are timed too.
FAULTS = (("xvfb", "xvfb", 0.0), ("openbox", "openbox", 0.0), ("x11vnc", "x11vnc", 0.0),
          ("xvfb (restart held 2 s)", "xvfb", 2.0))
# What dies with each: every X client exits when its X server goes away (the server does not).
RESTARTED_WITH = {"xvfb": ("xvfb", "openbox", "tint2", "x11vnc"), "openbox": ("openbox",), "x11vnc": ("x11vnc",)}
FAULT_AT = (0.15, 0.35, 0.55, 0.75)  # when, as fractions of the load's duration
FAULT_GIVE_UP = 30.0  # seconds after a kill; the target is 10
PROGRAM_ROLES = {"xvfb": "Xvfb", "openbox": "openbox", "tint2": "tint2", "x11vnc": "x11vnc", "server": SERVER_ROLE}
TARGET_FIRST_503 = 1.0
TARGET_RECOVERY = 10.0
TARGET_MEMORY_GROWTH = 10.0  # percent


# -- the desktop's programs ---------------------------------------------------------------


class Programs:
    """PIDs of the desktop's programs, by supervisord's names: from supervisord itself when its
    control socket is known (the bench's own desktop, or found in a desktop process's
    environment), else from /proc."""

    def __init__(self, desktop: Desktop):
        self.display = desktop.display
        self.socket = self._find_socket(desktop)

    def _find_socket(self, desktop: Desktop) -> Path | None:
        if desktop.state_dir is not None:
            return desktop.state_dir / "supervisord.sock"
        for pid, role in desktop_processes(desktop.display):
            if role != "Xvfb":
                continue
            try:
                environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for entry in environment:
                if entry.startswith(b"CUBICLE_STATE_DIR="):
                    candidate = Path(entry.split(b"=", 1)[1].decode()) / "supervisord.sock"
                    if candidate.exists():
                        return candidate
        return None

    def _supervisor(self):
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.socket}")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport).supervisor

    def pids(self) -> dict[str, int | None]:
        """{program: pid}, None for a program that is not running (or not found)."""
        if self.socket is not None:
            try:
                found = {info["name"]: info["pid"] or None for info in self._supervisor().getAllProcessInfo()}
            except (OSError, xmlrpc.client.Fault):
                found = {}
            return {name: found.get(name) for name in PROGRAM_ROLES}
        processes = desktop_processes(self.display)
        result = {}
        for name, role in PROGRAM_ROLES.items():
            pids = [pid for pid, found_role in processes if found_role == role]
            result[name] = pids[0] if len(pids) == 1 else None
        return result

    def pid(self, name: str) -> int | None:
        return self.pids()[name]

    def supervisord_pid(self) -> int | None:
        if self.socket is None:
            return None
        try:
            return self._supervisor().getPID()
        except (OSError, xmlrpc.client.Fault):
            return None


# -- the load -----------------------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    start: float  # seconds since the run's origin
    end: float
    status: int  # 0: no HTTP answer (connection refused, timeout)
    error: str | None  # None when the request did what it should


@dataclass
class Stage:
    """Where the load's pointer may go: the scratch terminal and spots on the bare background."""

    width: int
    height: int
    terminal: tuple[int, int, int, int, int] | None  # id, x, y, width, height
    spots: list[tuple[int, int]]

    def in_terminal(self, rng: random.Random) -> tuple[int, int] | None:
        if self.terminal is None:
            return None
        _, x, y, width, height = self.terminal
        return rng.randrange(x + 8, x + width - 8), rng.randrange(y + 8, y + height - 8)

    def anywhere(self, rng: random.Random) -> tuple[int, int]:
        inside = self.in_terminal(rng) if rng.random() < 0.3 else None
        return inside or rng.choice(self.spots)


def background_spots(width: int, height: int, windows: list) -> list[tuple[int, int]]:
    """A grid over the right part of the screen, above the panel, outside every window."""
    margin = 10
    spots = []
    for x in range(int(width * 0.45), int(width * 0.95), 40):
        for y in range(int(height * 0.1), height - 80, 40):
            if not any(w.x - margin <= x < w.x + w.width + margin and w.y - margin <= y < w.y + w.height + margin
                       for w in windows if not w.minimized):
                spots.append((x, y))
    return spots


def action_body(kind: str, stage: Stage, rng: random.Random) -> dict:
    if kind == "move":
        return {"action": "mouse_move", "coordinate": list(stage.anywhere(rng))}
    if kind == "click":
        return {"action": "left_click", "coordinate": list(stage.anywhere(rng))}
    if kind == "key":
        return {"action": "key", "text": rng.choice(HARMLESS_KEYS)}
    line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))) + "\n"
    # Without the terminal (gone with the X server, until it is opened again) every window is
    # gone too: the text reaches no app.
    target = stage.in_terminal(rng) or rng.choice(stage.spots)
    return {"actions": [{"action": "left_click", "coordinate": list(target)}, {"action": "type", "text": line}]}


def describe(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code} {response.text[:200]!r}"


async def one_request(http: httpx.AsyncClient, kind: str, stage: Stage, rng: random.Random) -> tuple[int, str | None]:
    if kind in SCREENSHOTS:
        params = SCREENSHOTS[kind]
        response = await http.get("/screenshot", params=params)
        if response.status_code != 200:
            return response.status_code, describe(response)
        width = params.get("max_width", stage.width)
        if not response.headers.get("content-type", "").startswith("image/") or not response.content:
            return 200, "200 but no image"
        if response.headers.get("x-image-width") != str(width):
            return 200, f"200 but {response.headers.get('x-image-width')} px wide, not {width}"
        return 200, None
    response = await http.post("/actions", json=action_body(kind, stage, rng))
    if response.status_code != 200:
        return response.status_code, describe(response)
    failed = [result for result in response.json().get("results", []) if result.get("status") != "ok"]
    return 200, f"200 but an action failed: {failed[0]}" if failed else None


async def client_loop(url: str, token: str | None, index: int, seed: int, stage: Stage, origin: float,
                      stop_at: float, samples: list[Sample]) -> None:
    rng = random.Random(seed * 1009 + index)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT) as http:
        while time.monotonic() < stop_at:
            kind = rng.choice(KINDS)
            started = time.monotonic()
            try:
                status, error = await one_request(http, kind, stage, rng)
            except httpx.HTTPError as failure:
                status, error = 0, f"no answer: {type(failure).__name__} {failure}".strip()
            ended = time.monotonic()
            samples.append(Sample(kind, started - origin, ended - origin, status, error))
            if error is not None:
                await asyncio.sleep(ERROR_BACKOFF)


async def run_clients(url: str, token: str | None, clients: int, seconds: float, stage: Stage, origin: float,
                      seed: int) -> tuple[list[Sample], float, float]:
    """The samples, and when the load started and stopped (relative to origin)."""
    samples: list[Sample] = []
    started = time.monotonic()
    stop_at = started + seconds
    await asyncio.gather(*(client_loop(url, token, index, seed, stage, origin, stop_at, samples)
                           for index in range(clients)))
    return samples, started - origin, time.monotonic() - origin


async def sample_memory(pid: int | None, origin: float, readings: list[tuple[float, float]], stop: asyncio.Event) -> None:
    while not stop.is_set():
        value = rss_mb(pid)
        if value is not None:
            readings.append((time.monotonic() - origin, value))
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass


# -- faults ---------------------------------------------------------------------------------


@dataclass
class FaultResult:
    label: str
    program: str
    killed_pid: int | None
    held_s: float = 0.0  # supervisord held this long after the kill
    new_pid: int | None = None
    killed_at: float = 0.0  # seconds since the run's origin
    first_503_s: float | None = None  # the first answer 503 to any request, the load's included
    message: str | None = None  # that 503's error: "code: message"
    screenshots_s: float | None = None  # serving screenshots again
    healthy_s: float | None = None  # /health 200 again: X, window manager and VNC up
    vnc_s: float | None = None  # a fresh RFB greeting through WS /vnc
    server_pid_before: int | None = None
    server_pid_after: int | None = None
    window: tuple[float, float] = (0.0, 0.0)  # from the kill until all is back, since the run's origin
    requests_in_window: int = 0
    errors_in_window: dict[str, int] = field(default_factory=dict)
    unclear_errors: int = 0  # errors in the window other than a 503 display_unavailable that says to retry
    slowest_s: float = 0.0  # the longest wait for an answer in the window

    @property
    def recovered_s(self) -> float | None:
        if self.screenshots_s is None or self.healthy_s is None or self.vnc_s is None:
            return None
        return max(self.screenshots_s, self.healthy_s, self.vnc_s)

    @property
    def met(self) -> bool:
        ok = (self.recovered_s is not None and self.recovered_s <= TARGET_RECOVERY and self.unclear_errors == 0
              and self.server_pid_before is not None and self.server_pid_before == self.server_pid_after
              and self.new_pid not in (None, self.killed_pid))
        if self.program == "xvfb" and (self.first_503_s is not None or self.held_s):
            ok = ok and self.first_503_s is not None and self.first_503_s <= TARGET_FIRST_503
        return ok


def clear_503(error: str | None) -> bool:
    return error is not None and error.startswith("503 display_unavailable:") and "Retry" in error


async def vnc_greets(url: str, token: str | None) -> bool:
    """One WS /vnc connection: the token first, then x11vnc's RFB greeting must come back."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    try:
        async with connect(url.replace("http", "ws", 1) + "/vnc", open_timeout=3, close_timeout=1) as socket:
            await socket.send(json.dumps({"token": token or ""}))
            data = await asyncio.wait_for(socket.recv(), 3)
            return isinstance(data, bytes) and data.startswith(b"RFB ")
    except (OSError, TimeoutError, WebSocketException):
        return False


async def _until(condition, killed: float, give_up: float, pause: float = 0.05) -> float | None:
    """Seconds from the kill until condition() (a coroutine) is true; None if it never was."""
    while time.monotonic() < give_up:
        if await condition():
            return time.monotonic() - killed
        await asyncio.sleep(pause)
    return None


async def inflict(label: str, name: str, hold: float, programs: Programs, url: str, token: str | None,
                  origin: float) -> FaultResult:
    """Kills one program and times its recovery. A check counts only once it was made after
    supervisord had started anew what died (the dead X server takes openbox, tint2 and
    x11vnc with it): a screenshot or a VNC greeting from before proves nothing."""
    old = programs.pids()
    result = FaultResult(label, name, old[name], hold, server_pid_before=old["server"])
    if result.killed_pid is None:
        raise RuntimeError(f"cannot find the pid of {name}")
    supervisord = programs.supervisord_pid() if hold else None
    if hold and supervisord is None:
        raise RuntimeError("cannot hold supervisord: its pid is unknown")
    affected = RESTARTED_WITH[name]
    respawned: dict[str, float] = {}  # when each affected program was seen with a new pid
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT) as http:
        if supervisord is not None:
            os.kill(supervisord, signal.SIGSTOP)
            asyncio.get_running_loop().call_later(hold, os.kill, supervisord, signal.SIGCONT)
        try:
            os.kill(result.killed_pid, signal.SIGKILL)
        except BaseException:
            if supervisord is not None:
                os.kill(supervisord, signal.SIGCONT)
            raise
        killed = time.monotonic()
        result.killed_at = killed - origin
        give_up = killed + FAULT_GIVE_UP

        def since(*names: str) -> float | None:
            """When all of these were running anew (None: not yet)."""
            if any(n not in respawned for n in names):
                return None
            return max((respawned[n] for n in names), default=killed)

        async def pids_renewed() -> bool:
            current = await asyncio.to_thread(programs.pids)
            for program in affected:
                if program not in respawned and current[program] not in (None, old[program]):
                    respawned[program] = time.monotonic()
            return len(respawned) == len(affected)

        async def screenshots_back() -> bool:
            started = time.monotonic()
            try:
                response = await http.get("/screenshot", params={"format": "jpeg", "max_width": 320})
            except httpx.HTTPError:
                return False
            if response.status_code == 503 and result.first_503_s is None:
                result.first_503_s = time.monotonic() - killed
                result.message = describe(response).split(" ", 1)[1]
            ready = since("xvfb") if name == "xvfb" else killed
            return response.status_code == 200 and ready is not None and started >= ready

        async def healthy() -> bool:
            ready = since(*affected)
            started = time.monotonic()
            try:
                up = (await http.get("/health")).status_code == 200
            except httpx.HTTPError:
                return False
            return up and ready is not None and started >= ready

        async def vnc_back() -> bool:
            ready = since("x11vnc") if "x11vnc" in affected else killed
            started = time.monotonic()
            return await vnc_greets(url, token) and ready is not None and started >= ready

        try:
            _, result.screenshots_s, result.healthy_s, result.vnc_s = await asyncio.gather(
                _until(pids_renewed, killed, give_up, pause=0.02),
                _until(screenshots_back, killed, give_up, pause=0.02),
                _until(healthy, killed, give_up),
                _until(vnc_back, killed, give_up),
            )
        finally:
            if supervisord is not None:
                os.kill(supervisord, signal.SIGCONT)  # in case the timer has not run (interrupted)
    now = programs.pids()
    result.new_pid = now[name]
    result.server_pid_after = now["server"]
    return result


async def ensure_terminal(url: str, token: str | None, stage: Stage) -> None:
    """Opens the scratch terminal again if it is gone (it dies with the X server)."""
    from cubicle.client import AsyncDesktopClient

    async with AsyncDesktopClient(url, token, timeout=60) as client:
        if stage.terminal is not None and any(w.id == stage.terminal[0] for w in await client.windows()):
            return
        stage.terminal = None
        window = (await client.launch(SCRATCH_COMMAND, timeout=30)).window
        if window is not None:
            stage.terminal = (window.id, window.x, window.y, window.width, window.height)


async def run_faults(programs: Programs, url: str, token: str | None, stage: Stage, origin: float,
                     load_started: float, seconds: float) -> list[FaultResult]:
    results = []
    for (label, name, hold), fraction in zip(FAULTS, FAULT_AT):
        if hold and programs.supervisord_pid() is None:
            print(f"  skipping {label}: supervisord's pid is unknown", file=sys.stderr)
            continue
        wait = origin + load_started + seconds * fraction - time.monotonic()
        await asyncio.sleep(max(wait, 1.0))
        print(f"  killing {label} ...", end="", flush=True, file=sys.stderr)
        result = await inflict(label, name, hold, programs, url, token, origin)
        recovered = result.recovered_s
        print(f" back in {recovered:.1f} s" if recovered is not None else " NOT back", file=sys.stderr)
        results.append(result)
        await ensure_terminal(url, token, stage)
    return results


# -- figures --------------------------------------------------------------------------------


def kind_figures(samples: list[Sample], kinds) -> dict[str, dict]:
    figures = {}
    for kind in list(kinds) + ["all"]:
        chosen = [s for s in samples if kind == "all" or s.kind == kind]
        good = [s.end - s.start for s in chosen if s.error is None]
        figures[kind] = {
            "requests": len(chosen),
            "errors": sum(1 for s in chosen if s.error is not None),
            "p50_ms": statistics.median(good) * 1000 if good else None,
            "p99_ms": percentile(good, 0.99) * 1000 if good else None,
        }
    return figures


def in_window(sample: Sample, faults: list[FaultResult]) -> bool:
    return any(sample.start <= end and sample.end >= start for start, end in (f.window for f in faults))


def summarise(baseline: list[Sample], base_span: tuple[float, float], load: list[Sample],
              load_span: tuple[float, float], faults: list[FaultResult], memory: dict, clients: int) -> dict:
    for fault in faults:
        last = fault.recovered_s if fault.recovered_s is not None else FAULT_GIVE_UP
        fault.window = (fault.killed_at, fault.killed_at + last)
        inside = [s for s in load if in_window(s, [fault])]
        fault.requests_in_window = len(inside)
        fault.slowest_s = max((s.end - s.start for s in inside), default=0.0)
        errors: dict[str, int] = {}
        for sample in inside:
            if sample.error is not None:
                label = sample.error.split(":")[0]
                errors[label] = errors.get(label, 0) + 1
                fault.unclear_errors += not clear_503(sample.error)
        fault.errors_in_window = errors
        # The load's clients usually meet the first 503 before the bench's own probe does.
        first = min((s for s in inside if s.status == 503 and s.end >= fault.killed_at), key=lambda s: s.end, default=None)
        if first is not None and (fault.first_503_s is None or first.end - fault.killed_at < fault.first_503_s):
            fault.first_503_s = first.end - fault.killed_at
            assert first.error is not None  # a 503 comes with its error
            fault.message = first.error.split(" ", 1)[1]
    outside = [s for s in load if not in_window(s, faults)]
    outside_errors: dict[str, int] = {}
    for sample in outside:
        if sample.error is not None:
            outside_errors[sample.error[:300]] = outside_errors.get(sample.error[:300], 0) + 1
    load_seconds = load_span[1] - load_span[0]
    base_seconds = base_span[1] - base_span[0]
    faulted = sum(f.window[1] - f.window[0] for f in faults)
    return {
        "clients": clients,
        "load_seconds": load_seconds,
        "baseline_seconds": base_seconds,
        # Outside the fault windows only, so that a fault does not count as slowness.
        "load": kind_figures(outside, KINDS),
        "baseline": kind_figures(baseline, KINDS),
        "throughput": sum(1 for s in outside if s.error is None) / max(load_seconds - faulted, 1e-9),
        "baseline_throughput": sum(1 for s in baseline if s.error is None) / base_seconds,
        "errors_outside_faults": outside_errors,
        "requests_in_fault_windows": len(load) - len(outside),
        "memory": memory,
        "faults": [{**asdict(f), "recovered_s": f.recovered_s, "met": f.met} for f in faults],
    }


def memory_summary(pid: int | None, before: float | None, readings: list[tuple[float, float]], after: float | None,
                   halfway: float) -> dict:
    """RSS before and after the load, and its growth over the load's second half: a leak keeps
    growing there, while the heap's high-water mark under 16 clients is reached early."""
    growth = (after - before) / before * 100 if before and after else None
    middle = next((value for when, value in readings if when >= halfway), None)
    late_growth = (after - middle) / middle * 100 if middle and after else None
    return {"pid": pid, "before_mb": before, "peak_mb": max((v for _, v in readings), default=after),
            "halfway_mb": middle, "after_mb": after, "growth_percent": growth, "second_half_growth_percent": late_growth,
            "readings": [[round(t, 1), round(v, 2)] for t, v in readings]}


def targets(result: dict) -> list[Target]:
    errors = sum(result["errors_outside_faults"].values())
    requests = result["load"]["all"]["requests"]
    growth = result["memory"]["growth_percent"]
    out = [
        ("no errors" + (" outside the fault windows" if result["faults"] else ""), f"{errors} of {requests}", errors == 0),
        (f"server memory growth < {TARGET_MEMORY_GROWTH:.0f}% over the load",
         "unknown" if growth is None else f"{growth:+.1f}%", growth is not None and growth < TARGET_MEMORY_GROWTH),
    ]
    for fault in result["faults"]:
        parts = []
        if fault["program"] == "xvfb":
            parts.append(f"first 503 within {TARGET_FIRST_503:.0f} s ({_s(fault['first_503_s'])})"
                         if fault["first_503_s"] is not None else "no request failed (X was back first)")
        parts.append("every failure a clear 503" if not fault["unclear_errors"] else f"{fault['unclear_errors']} OTHER errors")
        parts.append(f"all back within {TARGET_RECOVERY:.0f} s ({_s(fault['recovered_s'])})")
        parts.append("same server pid" if fault["server_pid_before"] == fault["server_pid_after"] else "server pid CHANGED")
        out.append((f"killed {fault['label']}", ", ".join(parts), fault["met"]))
    return out


# -- reporting ------------------------------------------------------------------------------


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.2f} s"


def _ms(milliseconds: float | None) -> str:
    return ms_or_dash(None if milliseconds is None else milliseconds / 1000)


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f} MB"


def render_report(result: dict, markdown: bool) -> str:
    clients = result["clients"]
    header = ["kind", "requests", "errors", f"p50 ({clients} clients)", "p99", "p50 (1 client)", "p99", "p50 ratio"]
    rows = []
    for kind in list(KINDS) + ["all"]:
        load, base = result["load"][kind], result["baseline"][kind]
        ratio = f"{load['p50_ms'] / base['p50_ms']:.1f}x" if load["p50_ms"] and base["p50_ms"] else "-"
        rows.append([kind, str(load["requests"]), str(load["errors"]), _ms(load["p50_ms"]), _ms(load["p99_ms"]),
                     _ms(base["p50_ms"]), _ms(base["p99_ms"]), ratio])
    throughput, base_throughput = result["throughput"], result["baseline_throughput"]
    memory = result["memory"]
    dot = bullet(markdown)
    out = table(header, rows, markdown) + [
        "",
        (f"{clients} clients for {result['load_seconds']:.0f} s, beside 1 client for {result['baseline_seconds']:.0f} s "
         "just before, the same mix (each kind 1/8 of the requests, no pauses); p50 ratio: "
         f"{clients} clients over 1 client."),
        (f"throughput: {throughput:.1f} requests/s with {clients} clients, {base_throughput:.1f} with 1 client "
         f"({throughput / base_throughput:.2f}x)"),
        (f"server memory (RSS, pid {memory['pid']}): {_mb(memory['before_mb'])} before the load, "
         f"{_mb(memory['peak_mb'])} at most, {_mb(memory['after_mb'])} after"
         + ("" if memory["growth_percent"] is None else f": {memory['growth_percent']:+.1f}%")
         + ("" if memory["second_half_growth_percent"] is None
            else f" ({memory['second_half_growth_percent']:+.1f}% over the second half)")),
    ]
    cpu = result["cpu"]
    if cpu["server_cores"] is not None:
        out.append(f"CPU during the load: the server {cpu['server_cores']:.2f} cores, these clients "
                   f"{cpu['clients_cores']:.2f}, of {cpu['cpus']} (load average {cpu['load_average']:.1f})")
    if result["faults"]:
        out += ["", (f"faults, killed with SIGKILL under the load (times from the kill; "
                     f"{result['requests_in_fault_windows']} requests overlapped a fault window):"), ""]
        header = ["killed", "pid -> new pid", "first 503", "screenshots again", "/health 200 again",
                  "VNC greets again", "server pid", "requests in window: errors", "slowest answer"]
        rows = []
        for fault in result["faults"]:
            same = fault["server_pid_before"] == fault["server_pid_after"]
            errors = ", ".join(f"{count} {label}" for label, count in fault["errors_in_window"].items()) or "none"
            rows.append([
                fault["label"], f"{fault['killed_pid']} -> {fault['new_pid']}",
                ("none" if fault["first_503_s"] is None else _s(fault["first_503_s"])) if fault["program"] == "xvfb" else "-",
                _s(fault["screenshots_s"]), _s(fault["healthy_s"]), _s(fault["vnc_s"]),
                "same" if same else f"{fault['server_pid_before']} -> {fault['server_pid_after']}",
                f"{fault['requests_in_window']}: {errors}", _s(fault["slowest_s"]),
            ])
        out += table(header, rows, markdown)
        messages = [fault["message"] for fault in result["faults"] if fault["message"]]
        out += [""] + [f"{dot}the first 503 said: {message}" for message in messages[:1]]
    if result["errors_outside_faults"]:
        out += ["", "errors" + (" outside the fault windows:" if result["faults"] else ":")]
        top = sorted(result["errors_outside_faults"].items(), key=lambda item: -item[1])[:10]
        out += [f"{dot}{count} x {text}" for text, count in top]
    out += ["", machine_line(), ""] + target_lines(targets(result), markdown)
    return "\n".join(out)


# -- the run --------------------------------------------------------------------------------


async def prepare_stage(url: str, token: str | None) -> Stage:
    from cubicle.client import AsyncDesktopClient

    async with AsyncDesktopClient(url, token, timeout=60) as client:
        screen = await client.screen()
        stage = Stage(screen.width, screen.height, None, [])
        stage.spots = background_spots(screen.width, screen.height, await client.windows())
        if not stage.spots:
            raise RuntimeError("no bare background to click on: close some windows first")
        await ensure_terminal(url, token, stage)
        if stage.terminal is None:
            raise RuntimeError("the scratch xterm started but showed no window")
        # The grid again, now clear of the terminal too.
        stage.spots = background_spots(screen.width, screen.height, await client.windows())
        return stage


async def close_terminal(url: str, token: str | None, stage: Stage) -> None:
    from cubicle.client import AsyncDesktopClient

    if stage.terminal is None:
        return
    async with AsyncDesktopClient(url, token, timeout=30) as client:
        try:
            await client.close_window(stage.terminal[0])
        except (CubicleError, httpx.HTTPError):
            pass  # already gone


async def run_load(desktop: Desktop, clients: int, seconds: float, faults: bool) -> dict:
    url, token = desktop.url, desktop.token
    programs = Programs(desktop)
    server = programs.pid("server")
    if server is None:
        raise RuntimeError(f"cannot find the cubicle server process of display {desktop.display} on this machine")
    if faults and programs.socket is None:
        print("  supervisord's socket not found: the pids to kill come from /proc", file=sys.stderr)
    stage = await prepare_stage(url, token)
    seed = random.randrange(1 << 30)
    origin = time.monotonic()
    try:
        print(f"  warm-up, 1 client, {WARMUP_SECONDS:.0f} s ...", file=sys.stderr)
        await run_clients(url, token, 1, WARMUP_SECONDS, stage, origin, seed)
        base_seconds = max(5.0, min(15.0, seconds / 4))
        print(f"  1 client, {base_seconds:.0f} s ...", file=sys.stderr)
        baseline, *base_span = await run_clients(url, token, 1, base_seconds, stage, origin, seed + 1)

        print(f"  {clients} clients, {seconds:.0f} s{', killing parts of the desktop' if faults else ''} ...", file=sys.stderr)
        readings: list[tuple[float, float]] = []
        stop = asyncio.Event()
        before = rss_mb(server)
        cpu_before, own_before = cpu_seconds(server), time.process_time()
        sampler = asyncio.create_task(sample_memory(server, origin, readings, stop))
        load_task = asyncio.create_task(run_clients(url, token, clients, seconds, stage, origin, seed + 2))
        fault_results: list[FaultResult] = []
        if faults:
            fault_results = await run_faults(programs, url, token, stage, origin, time.monotonic() - origin, seconds)
        load, *load_span = await load_task
        after = rss_mb(server)
        cpu_after, own_after = cpu_seconds(server), time.process_time()
        stop.set()
        await sampler
        if programs.pid("server") != server:
            print(f"  the server process changed during the load ({server} -> {programs.pid('server')})", file=sys.stderr)
            after = None
        memory = memory_summary(server, before, readings, after, load_span[0] + seconds / 2)
        result = summarise(baseline, (base_span[0], base_span[1]), load, (load_span[0], load_span[1]), fault_results,
                           memory, clients)
        # How busy the machine was: the server and these clients share its CPUs.
        span = load_span[1] - load_span[0]
        result["cpu"] = {"server_cores": (cpu_after - cpu_before) / span if cpu_before is not None and cpu_after is not None else None,
                         "clients_cores": (own_after - own_before) / span, "cpus": os.cpu_count(),
                         "load_average": os.getloadavg()[0]}
        return result
    finally:
        if desktop.process is None:  # someone else's desktop: leave it as it was
            await close_terminal(url, token, stage)


def run_load_bench(args) -> int:
    if args.clients < 1 or args.seconds < 10:
        print("cubicle bench: --clients must be at least 1 and --seconds at least 10", file=sys.stderr)
        return 2
    if shutil.which("xterm") is None:
        print("cubicle bench: the load types into an xterm, which is not installed", file=sys.stderr)
        return 1
    started = time.monotonic()

    def bench(desktop: Desktop) -> int:
        print(f"desktop {desktop.url} on display {desktop.display}", file=sys.stderr)
        result = asyncio.run(run_load(desktop, args.clients, args.seconds, args.faults))
        print(render_report(result, args.markdown), flush=True)
        path = RESULTS_DIR / ("faults.json" if args.faults else "load.json")
        write_json(path, result, targets(result))
        print(f"\nresults in {path}; the bench took {time.monotonic() - started:.0f} s", file=sys.stderr)
        return 0 if all(met for _, _, met in targets(result)) else 1

    return with_desktop(args.url, bench)
