"""`cubicle bench`: cubicle's HTTP API against the reference demo's way, on one real desktop.

The baseline does what Anthropic's reference computer-use demo does, in the same run, on the
same display: `scrot` to a file and ImageMagick `convert` for every screenshot, one `xdotool`
process per action, typing in 50-character `xdotool type --delay 12` chunks, and a fixed 2 s
wait between an action and its screenshot. Rounds of both sides alternate, so that background
noise hits them alike. Every figure is measured in the run; only the targets are written here.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx
from PIL import Image, ImageChops

from cubicle.client import CubicleError, DesktopClient, Screenshot
from cubicle.session import display_in_use, x_server_socket

WARMUP_ROUNDS = 2
BASELINE_SETTLE_S = 2.0  # the demo sleeps this long after an action before its screenshot
TYPING_CHUNK = 50  # the demo types in pieces of this many characters, one process each
TYPING_DELAY_MS = 12
SENTENCE = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs (1-2, 3/4)! "
TYPED_TEXT = (SENTENCE * 3)[:200]
# Clicks go to the empty desktop background, alternating between two points: `xdotool
# mousemove --sync` waits (15 s) for the pointer to move, so it must never be already there.
CLICK_SPOTS = ((600, 380), (660, 420))
IDLE_SECONDS = 5.0
RESULTS_DIR = Path("bench/results")


# -- the desktop under test ---------------------------------------------------------------


@dataclass
class Desktop:
    url: str
    token: str | None
    display: str  # ":N", for the baseline's programs
    process: subprocess.Popen | None = None  # set when the bench started the desktop itself
    state_dir: Path | None = None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # `cubicle desktop` runs supervisord in a session of its own and stops it in order on SIGTERM.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _free_display(first: int = 60) -> int:
    for number in range(first, first + 200):
        if display_in_use(number) is None and not Path(f"/tmp/.X{number}-lock").exists():
            return number
    raise RuntimeError(f"no free X display number between :{first} and :{first + 199}")


def _free_ports(count: int) -> list[int]:
    # Hold every socket until all are chosen, so the ports differ from one another.
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def start_desktop(timeout: float = 60.0) -> Desktop:
    display = _free_display()
    port, vnc_port = _free_ports(2)
    token = secrets.token_urlsafe(24)
    state_dir = Path(tempfile.mkdtemp(prefix="cubicle-bench-"))
    log = open(state_dir / "desktop.out", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cubicle", "desktop", "--display", str(display), "--port", str(port),
         "--vnc-port", str(vnc_port), "--state-dir", str(state_dir)],
        env={**os.environ, "CUBICLE_TOKEN": token},
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the terminal reaches only the bench, which then stops it
    )
    log.close()
    desktop = Desktop(f"http://127.0.0.1:{port}", token, f":{display}", process, state_dir)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            output = (state_dir / "desktop.out").read_text(errors="replace").strip()
            raise RuntimeError(f"the desktop exited with code {process.returncode}: {output}")
        try:
            if httpx.get(desktop.url + "/health", timeout=2).status_code == 200:
                return desktop
        except httpx.HTTPError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            desktop.stop()
            raise RuntimeError(f"the desktop was not healthy after {timeout:.0f} s; logs in {state_dir}")
        time.sleep(0.1)


def attach_desktop(url: str) -> Desktop:
    token = os.environ.get("CUBICLE_TOKEN")
    try:
        with DesktopClient(url, token) as client:
            display = client.screen().display
    except httpx.HTTPError as error:
        raise RuntimeError(f"cannot reach the desktop at {url}: {error}") from None
    # The baseline runs scrot and xdotool against the same X server, so it must be local.
    if not display.startswith(":") or x_server_socket(int(display[1:].split(".")[0])) is None:
        raise RuntimeError(f"the desktop at {url} uses display {display!r}, which does not answer on this machine; "
                           "run the bench where the desktop runs")
    return Desktop(url.rstrip("/"), token, display)


# -- the baseline: the reference demo's commands --------------------------------------------


def _compiled_program(name: str) -> str:
    """The first `name` on PATH that is a compiled program rather than a script standing in
    front of it: a wrapper would add an interpreter's start-up to every baseline call."""
    fallback = None
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            with open(candidate, "rb") as file:
                if file.read(4) == b"\x7fELF":
                    return str(candidate)
            fallback = fallback or str(candidate)
    if fallback is None:
        raise RuntimeError(f"{name} is not installed; the baseline needs scrot, ImageMagick's convert and xdotool")
    return fallback


class Baseline:
    def __init__(self, display: str, workdir: Path):
        self.env = {**os.environ, "DISPLAY": display}
        self.workdir = workdir
        self.scrot = _compiled_program("scrot")
        self.convert = _compiled_program("convert")
        self.xdotool = _compiled_program("xdotool")

    def _run(self, *argv: str) -> None:
        subprocess.run(argv, env=self.env, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)

    def screenshot(self, jpeg: bool = False) -> bytes:
        """scrot, then convert, then read the result; fresh file names each time, as the demo."""
        shot = self.workdir / f"screenshot_{uuid.uuid4().hex}.png"
        out = shot.with_name(shot.stem + (".out.jpg" if jpeg else ".out.png"))
        self._run(self.scrot, "-p", str(shot))
        if jpeg:
            self._run(self.convert, str(shot), "-quality", "80", str(out))
        else:
            self._run(self.convert, str(shot), str(out))
        data = out.read_bytes()
        shot.unlink()
        out.unlink()
        return data

    def click(self, x: int, y: int, button: int = 1) -> None:
        self._run(self.xdotool, "mousemove", "--sync", str(x), str(y), "click", str(button))

    def type(self, text: str) -> None:
        for start in range(0, len(text), TYPING_CHUNK):
            self._run(self.xdotool, "type", "--delay", str(TYPING_DELAY_MS), "--", text[start:start + TYPING_CHUNK])


# -- measuring ------------------------------------------------------------------------------


@dataclass
class Figure:
    name: str
    cubicle: list[float] = field(default_factory=list)  # seconds per round
    baseline: list[float] = field(default_factory=list)
    chars: int | None = None  # for typing: characters per round

    @property
    def ratio(self) -> float:
        return statistics.median(self.baseline) / statistics.median(self.cubicle)


class Spots:
    """Hands out the click points in turn, whichever side clicks next."""

    def __init__(self) -> None:
        self._count = 0

    def next(self) -> tuple[int, int]:
        self._count += 1
        return CLICK_SPOTS[self._count % len(CLICK_SPOTS)]


def measure(figure: Figure, rounds: int, cubicle_once: Callable[[], float], baseline_once: Callable[[], float]) -> Figure:
    """Each *_once runs one round and returns the seconds of its timed part only."""
    print(f"  {figure.name} ...", end="", flush=True, file=sys.stderr)
    started = time.monotonic()
    for round_number in range(WARMUP_ROUNDS + rounds):
        # Alternate which side goes first, so neither always runs right after the other.
        sides = [(figure.cubicle, cubicle_once), (figure.baseline, baseline_once)]
        if round_number % 2:
            sides.reverse()
        for samples, once in sides:
            seconds = once()
            if round_number >= WARMUP_ROUNDS:
                samples.append(seconds)
    print(f" {time.monotonic() - started:.0f} s", file=sys.stderr)
    return figure


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def wait_until_quiet(client: DesktopClient) -> None:
    client.screenshot(settle=True)  # returns once the screen has been still for the quiet window


def _pixels(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def _away_from_clock_tick() -> None:
    """The panel clock shows minutes: keep a 1 s comparison from straddling a new minute."""
    second = datetime.datetime.now().second
    if second >= 57:
        time.sleep(60 - second + 0.2)


def check_menu_is_settled(client: DesktopClient, spot: tuple[int, int]) -> dict:
    """Not timed: the settled frame must show the menu opened and fully drawn, i.e. equal to
    a frame taken a second later."""
    _away_from_clock_tick()
    before = _pixels(client.screenshot().data)
    response = client.act({"action": "right_click", "coordinate": list(spot)}, screenshot=True)
    settled = Screenshot.from_image_data(response.screenshot)
    time.sleep(1.0)
    later = client.screenshot()
    opened = ImageChops.difference(before, _pixels(settled.data)).getbbox()
    changed_after = ImageChops.difference(_pixels(settled.data), _pixels(later.data)).getbbox()
    client.key("Escape")
    wait_until_quiet(client)
    if opened is None:
        raise RuntimeError("a right-click on the desktop background opened no menu; is openbox's root menu bound?")
    return {"menu_box": list(opened), "settle_ms": settled.settle_ms, "identical_1s_later": changed_after is None,
            "changed_box": list(changed_after) if changed_after else None, "frame": settled.data}


# -- memory ---------------------------------------------------------------------------------


DESKTOP_PROGRAMS = ("Xvfb", "openbox", "tint2", "x11vnc")


def _read_kib(path: str, label: str) -> int | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(label):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def desktop_processes(display: str) -> list[tuple[int, str]]:
    """(pid, role) of the desktop's parts on this display: by the display in their command
    line (Xvfb, x11vnc, the server) or in their environment (openbox, tint2)."""
    found = []
    for entry in sorted(os.listdir("/proc"), key=lambda name: (len(name), name)):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0")
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if comm in DESKTOP_PROGRAMS:
            role = comm
        elif "serve" in argv and any(Path(arg).name == "cubicle" for arg in argv[:3]):
            role = "cubicle server"
        else:
            continue
        try:
            environment = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            environment = []
        if display in argv or f"DISPLAY={display}".encode() in environment:
            found.append((int(entry), role))
    return found


def _supervisord(desktop: Desktop) -> list[tuple[int, str]]:
    pid_file = desktop.state_dir / "supervisord.pid" if desktop.state_dir else None
    pid_text = pid_file.read_text().strip() if pid_file and pid_file.exists() else ""
    return [(int(pid_text), "supervisord")] if pid_text.isdigit() else []


def measure_memory(desktop: Desktop) -> dict:
    parts = desktop_processes(desktop.display)
    missing = [role for role in DESKTOP_PROGRAMS + ("cubicle server",) if role not in {r for _, r in parts}]
    # supervisord belongs to the desktop too (when the bench started it, its pid is known):
    # shown, but not part of the total the target is about.
    processes = parts + _supervisord(desktop)
    pss = {pid: _read_kib(f"/proc/{pid}/smaps_rollup", "Pss:") for pid, _ in processes}
    # One measure for every line: PSS (shared pages divided among the processes that map
    # them) when it can be read for all, else RSS (shared libraries counted in full in each).
    kind = "PSS" if all(value is not None for value in pss.values()) else "RSS"
    sizes = pss if kind == "PSS" else {pid: _read_kib(f"/proc/{pid}/status", "VmRSS:") or 0 for pid, _ in processes}
    lines = [{"pid": pid, "process": role, "mb": sizes[pid] * 1024 / 1e6, "counted": role != "supervisord"}
             for pid, role in processes]
    total = sum(line["mb"] for line in lines if line["counted"])
    return {"kind": kind, "total_mb": total, "processes": lines, "not_found": missing}


# -- reporting ------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.2f}" if ms < 1 else f"{ms:.1f}"


def _cell(samples: list[float], chars: int | None) -> str:
    median = statistics.median(samples)
    text = f"{_ms(median)} ms ({_ms(min(samples))}-{_ms(max(samples))})"
    return text + (f", {chars / median:.0f} chars/s" if chars else "")


def _summary(samples: list[float]) -> dict:
    return {"median_ms": statistics.median(samples) * 1000, "min_ms": min(samples) * 1000,
            "max_ms": max(samples) * 1000, "samples_ms": [s * 1000 for s in samples]}


def targets(figures: dict[str, Figure], memory: dict) -> list[tuple[str, str, bool]]:
    png, jpeg, click, typing, menu = (figures[key] for key in ("png", "jpeg", "click", "typing", "menu"))
    chars_per_s = typing.chars / statistics.median(typing.cubicle)
    menu_ms = statistics.median(menu.cubicle) * 1000
    jpeg_ms = statistics.median(jpeg.cubicle) * 1000
    return [
        ("PNG screenshot >= 10x faster than baseline", f"{png.ratio:.1f}x", png.ratio >= 10),
        ("JPEG screenshot <= 5 ms median", f"{jpeg_ms:.1f} ms", jpeg_ms <= 5),
        ("click >= 30x faster than baseline", f"{click.ratio:.1f}x", click.ratio >= 30),
        ("typing >= 500 chars/s", f"{chars_per_s:.0f} chars/s", chars_per_s >= 500),
        ("menu click -> settled screenshot <= 400 ms median", f"{menu_ms:.1f} ms", menu_ms <= 400),
        # A part that was not found would make the total look smaller than it is.
        ("idle desktop <= 250 MB total", f"{memory['total_mb']:.1f} MB {memory['kind']}",
         memory["total_mb"] <= 250 and not memory["not_found"]),
    ]


def machine_line() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = " (" + line.split(":", 1)[1].strip() + ")"
                break
    except OSError:
        pass
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"machine: {os.cpu_count()} CPUs{model}, Python {platform.python_version()}, {platform.system()} {platform.release()}, {date}"


def render_report(figures: dict[str, Figure], memory: dict, menu_check: dict, rounds: int, markdown: bool) -> str:
    header = ["figure", "cubicle median (min-max)", "baseline median (min-max)", "ratio"]
    rows = [[figure.name, _cell(figure.cubicle, figure.chars), _cell(figure.baseline, figure.chars), f"{figure.ratio:.1f}x"]
            for figure in figures.values()]
    rows.append(["idle memory of the whole desktop", f"{memory['total_mb']:.1f} MB {memory['kind']}", "-", "-"])
    if markdown:
        table = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
        table += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]

        def line(row: list[str]) -> str:
            return "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()

        table = [line(header), line(["-" * width for width in widths])] + [line(row) for row in rows]

    bullet = "- " if markdown else "  "
    out = table + ["", f"{rounds} rounds per figure after {WARMUP_ROUNDS} warm-up rounds, cubicle and baseline interleaved.", "",
                   machine_line(), "", f"memory ({memory['kind']}, after {IDLE_SECONDS:.0f} s idle):"]
    for proc in memory["processes"]:
        note = "" if proc["counted"] else " (not counted)"
        out.append(f"{bullet}{proc['process']} (pid {proc['pid']}): {proc['mb']:.1f} MB{note}")
    if memory["not_found"]:
        out.append(f"{bullet}NOT FOUND (so not in the total): {', '.join(memory['not_found'])}")
    held = "held" if menu_check["identical_1s_later"] else f"did NOT hold (changed in {menu_check['changed_box']})"
    out += ["", f"menu: the server's settle wait was {menu_check['settle_ms_median']:.1f} ms (median) of the round trip.", "",
            f"menu check: the settled frame shows the menu at {menu_check['menu_box']}; "
            f"identical to a frame taken 1 s later: {held}.",
            "", "targets:"]
    for goal, value, met in targets(figures, memory):
        out.append(f"{bullet}{goal}: {value} -> {'met' if met else 'NOT met'}")
    return "\n".join(out)


def write_json(figures: dict[str, Figure], memory: dict, menu_check: dict, rounds: int, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "system": f"{platform.system()} {platform.release()}"},
        "rounds": rounds,
        "warmup_rounds": WARMUP_ROUNDS,
        "figures": {key: {"name": f.name, "cubicle": _summary(f.cubicle), "baseline": _summary(f.baseline),
                          "ratio": f.ratio, **({"chars": f.chars} if f.chars else {})}
                    for key, f in figures.items()},
        "memory": memory,
        "menu_check": {key: value for key, value in menu_check.items() if key != "frame"},
        "targets": [{"goal": goal, "value": value, "met": met} for goal, value, met in targets(figures, memory)],
    }
    path.write_text(json.dumps(result, indent=2) + "\n")


# -- the run --------------------------------------------------------------------------------


def run_figures(client: DesktopClient, baseline: Baseline, rounds: int) -> tuple[dict[str, Figure], dict]:
    spots = Spots()
    figures: dict[str, Figure] = {}
    wait_until_quiet(client)

    figures["png"] = measure(
        Figure("screenshot 1280x800 PNG"), rounds,
        lambda: timed(lambda: client.screenshot(format="png")),
        lambda: timed(baseline.screenshot),
    )
    figures["jpeg"] = measure(
        Figure("screenshot 1280x800 JPEG q80"), rounds,
        lambda: timed(lambda: client.screenshot(format="jpeg", quality=80)),
        lambda: timed(lambda: baseline.screenshot(jpeg=True)),
    )
    figures["click"] = measure(
        Figure("click"), rounds,
        lambda: timed(lambda: client.act({"action": "left_click", "coordinate": list(spots.next())})),
        lambda: timed(lambda: baseline.click(*spots.next())),
    )

    # Typing goes into a real terminal whose input goes nowhere; placed top left, away from
    # the background spots the clicks and the menu use.
    launched = client.launch(["xterm", "-geometry", "80x12+40+40", "-e", "sh", "-c", "cat > /dev/null"])
    if launched.window is None:
        raise RuntimeError("xterm started but showed no window")
    terminal = launched.window
    try:
        client.click(terminal.x + terminal.width // 2, terminal.y + terminal.height // 2)
        wait_until_quiet(client)
        if not any(window.id == terminal.id and window.focused for window in client.windows()):
            raise RuntimeError("the terminal did not take the keyboard focus; typing would go elsewhere")

        def typed(send: Callable[[str], object]) -> float:
            seconds = timed(lambda: send(TYPED_TEXT))
            # Not timed: end the line (the terminal's line buffer would fill up) and let it redraw.
            client.key("Return")
            wait_until_quiet(client)
            return seconds

        figures["typing"] = measure(
            Figure(f"type {len(TYPED_TEXT)} chars into xterm", chars=len(TYPED_TEXT)), rounds,
            lambda: typed(client.type), lambda: typed(baseline.type),
        )
    finally:
        client.close_window(terminal.id)
        wait_until_quiet(client)

    menu_check = check_menu_is_settled(client, spots.next())
    settle_ms: list[float] = []

    def menu_cubicle() -> float:
        started = time.perf_counter()
        response = client.act({"action": "right_click", "coordinate": list(spots.next())}, screenshot=True)
        seconds = time.perf_counter() - started
        settle_ms.append(response.screenshot.settle_ms)
        close_menu()
        return seconds

    def menu_baseline() -> float:
        started = time.perf_counter()
        baseline.click(*spots.next(), button=3)
        time.sleep(BASELINE_SETTLE_S)
        baseline.screenshot()
        seconds = time.perf_counter() - started
        close_menu()
        return seconds

    def close_menu() -> None:  # not timed
        client.key("Escape")
        wait_until_quiet(client)

    figures["menu"] = measure(Figure("right-click menu -> settled screenshot"), rounds, menu_cubicle, menu_baseline)
    menu_check["settle_ms_median"] = statistics.median(settle_ms[WARMUP_ROUNDS:])
    return figures, menu_check


def with_desktop(url: str | None, body: Callable[[Desktop], int],
                 expected: tuple[type[BaseException], ...] = (RuntimeError, OSError, httpx.HTTPError, CubicleError)) -> int:
    """Run a bench's `body` on a desktop it starts (or the one at `url`) and return its exit
    status; stop that desktop whatever happens. A SIGTERM ends it the way Ctrl-C does.
    `expected` failures get one line; anything else is a bug and keeps its traceback."""
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    desktop: Desktop | None = None
    keep_desktop_logs = False
    try:
        if url is None:
            print("starting a desktop ...", file=sys.stderr)
            desktop = start_desktop()
        else:
            desktop = attach_desktop(url)
        return body(desktop)
    except KeyboardInterrupt:
        print("\ncubicle bench: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if not isinstance(error, expected):
            traceback.print_exc()
        keep_desktop_logs = desktop is not None and desktop.state_dir is not None
        where = f"; desktop logs in {desktop.state_dir}" if keep_desktop_logs else ""
        print(f"cubicle bench: {error}{where}", file=sys.stderr)
        return 1
    finally:
        if desktop is not None:
            desktop.stop()
            if desktop.state_dir is not None and not keep_desktop_logs:
                shutil.rmtree(desktop.state_dir, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_handler)


def run_bench(args) -> int:
    if args.rounds < 1:
        print("cubicle bench: --rounds must be at least 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="cubicle-bench-shots-"))

    def bench(desktop: Desktop) -> int:
        print(f"desktop {desktop.url} on display {desktop.display}; {args.rounds} rounds per figure", file=sys.stderr)
        baseline = Baseline(desktop.display, workdir)
        with DesktopClient(desktop.url, desktop.token) as client:
            if getattr(args, "agent", False):
                from .bench_agent import render_agent_report, run_agent_bench, write_agent_json

                spots = Spots()

                def reference_step() -> float:
                    started = time.perf_counter()
                    baseline.click(*spots.next())
                    time.sleep(BASELINE_SETTLE_S)
                    baseline.screenshot()
                    return time.perf_counter() - started

                print("  agent: 100 scripted steps ...", file=sys.stderr)
                result = run_agent_bench(client, desktop.url, 100, reference_step, min(args.rounds, 10))
                print(render_agent_report(result, args.markdown), flush=True)
                write_agent_json(result, RESULTS_DIR / "agent.json")
                return 0
            figures, menu_check = run_figures(client, baseline, args.rounds)
            time.sleep(IDLE_SECONDS)  # memory is measured on a desktop that has been idle a while
            memory = measure_memory(desktop)
        print(render_report(figures, memory, menu_check, args.rounds, args.markdown), flush=True)
        path = RESULTS_DIR / "latest.json"
        write_json(figures, memory, menu_check, args.rounds, path)
        (RESULTS_DIR / "menu-settled.png").write_bytes(menu_check["frame"])
        print(f"\nresults in {path} (settled menu frame: {RESULTS_DIR / 'menu-settled.png'}); "
              f"the bench took {time.monotonic() - started:.0f} s", file=sys.stderr)
        return 0

    try:
        # A baseline program missing or failing is an expected failure too.
        return with_desktop(args.url, bench, (RuntimeError, OSError, httpx.HTTPError, CubicleError,
                                              subprocess.CalledProcessError))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
