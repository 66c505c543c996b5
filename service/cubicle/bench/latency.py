"""`cubicle bench`: cubicle's HTTP API against the reference demo's way, on one real desktop.

The baseline (see `baseline`) does what Anthropic's reference computer-use demo does, in the
same run, on the same display. Rounds of both sides alternate, so that background noise hits
them alike. Then the desktop rests and the memory of all its parts is read. Every figure is
measured in the run; only the targets are written here.
"""

from __future__ import annotations

import datetime
import io
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops

from cubicle.client import DesktopClient, Screenshot

from .baseline import Baseline, Spots
from .desktops import EXPECTED_FAILURES, Desktop, with_desktop
from .processes import DESKTOP_PROGRAMS, SERVER_ROLE, desktop_processes, read_kib
from .report import (
    RESULTS_DIR,
    Target,
    bullet,
    machine_line,
    spread,
    summary_ms,
    table,
    target_lines,
    write_json,
)

WARMUP_ROUNDS = 2
SENTENCE = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs (1-2, 3/4)! "
TYPED_TEXT = (SENTENCE * 3)[:200]
IDLE_SECONDS = 5.0


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
    assert response.screenshot is not None  # asked for
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
        assert response.screenshot is not None and response.screenshot.settle_ms is not None  # asked for, settled
        settle_ms.append(response.screenshot.settle_ms)
        close_menu()
        return seconds

    def menu_baseline() -> float:
        seconds = timed(lambda: baseline.step(*spots.next(), button=3))
        close_menu()
        return seconds

    def close_menu() -> None:  # not timed
        client.key("Escape")
        wait_until_quiet(client)

    figures["menu"] = measure(Figure("right-click menu -> settled screenshot"), rounds, menu_cubicle, menu_baseline)
    menu_check["settle_ms_median"] = statistics.median(settle_ms[WARMUP_ROUNDS:])
    return figures, menu_check


# -- memory ---------------------------------------------------------------------------------


def _supervisord(desktop: Desktop) -> list[tuple[int, str]]:
    pid_file = desktop.state_dir / "supervisord.pid" if desktop.state_dir else None
    pid_text = pid_file.read_text().strip() if pid_file and pid_file.exists() else ""
    return [(int(pid_text), "supervisord")] if pid_text.isdigit() else []


def measure_memory(desktop: Desktop) -> dict:
    parts = desktop_processes(desktop.display)
    missing = [role for role in DESKTOP_PROGRAMS + (SERVER_ROLE,) if role not in {r for _, r in parts}]
    # supervisord belongs to the desktop too (when the bench started it, its pid is known):
    # shown, but not part of the total the target is about.
    processes = parts + _supervisord(desktop)
    pss = {pid: read_kib(f"/proc/{pid}/smaps_rollup", "Pss:") for pid, _ in processes}
    # One measure for every line: PSS (shared pages divided among the processes that map
    # them) when it can be read for all, else RSS (shared libraries counted in full in each).
    kind = "PSS" if all(value is not None for value in pss.values()) else "RSS"
    sizes = ({pid: value or 0 for pid, value in pss.items()} if kind == "PSS"  # all known, for PSS
             else {pid: read_kib(f"/proc/{pid}/status", "VmRSS:") or 0 for pid, _ in processes})
    lines: list[dict[str, Any]] = [{"pid": pid, "process": role, "mb": sizes[pid] * 1024 / 1e6, "counted": role != "supervisord"}
             for pid, role in processes]
    total = sum(line["mb"] for line in lines if line["counted"])
    return {"kind": kind, "total_mb": total, "processes": lines, "not_found": missing}


# -- reporting ------------------------------------------------------------------------------


def _cell(samples: list[float], chars: int | None) -> str:
    return spread(samples) + (f", {chars / statistics.median(samples):.0f} chars/s" if chars else "")


def targets(figures: dict[str, Figure], memory: dict) -> list[Target]:
    png, jpeg, click, typing, menu = (figures[key] for key in ("png", "jpeg", "click", "typing", "menu"))
    assert typing.chars is not None  # the typing figure counts its characters
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


def render_report(figures: dict[str, Figure], memory: dict, menu_check: dict, rounds: int, markdown: bool) -> str:
    header = ["figure", "cubicle median (min-max)", "baseline median (min-max)", "ratio"]
    rows = [[figure.name, _cell(figure.cubicle, figure.chars), _cell(figure.baseline, figure.chars), f"{figure.ratio:.1f}x"]
            for figure in figures.values()]
    rows.append(["idle memory of the whole desktop", f"{memory['total_mb']:.1f} MB {memory['kind']}", "-", "-"])
    dot = bullet(markdown)
    out = table(header, rows, markdown) + [
        "", f"{rounds} rounds per figure after {WARMUP_ROUNDS} warm-up rounds, cubicle and baseline interleaved.", "",
        machine_line(), "", f"memory ({memory['kind']}, after {IDLE_SECONDS:.0f} s idle):"]
    for proc in memory["processes"]:
        note = "" if proc["counted"] else " (not counted)"
        out.append(f"{dot}{proc['process']} (pid {proc['pid']}): {proc['mb']:.1f} MB{note}")
    if memory["not_found"]:
        out.append(f"{dot}NOT FOUND (so not in the total): {', '.join(memory['not_found'])}")
    held = "held" if menu_check["identical_1s_later"] else f"did NOT hold (changed in {menu_check['changed_box']})"
    out += ["", f"menu: the server's settle wait was {menu_check['settle_ms_median']:.1f} ms (median) of the round trip.", "",
            (f"menu check: the settled frame shows the menu at {menu_check['menu_box']}; "
             f"identical to a frame taken 1 s later: {held}."), ""]
    out += target_lines(targets(figures, memory), markdown)
    return "\n".join(out)


def result_json(figures: dict[str, Figure], memory: dict, menu_check: dict, rounds: int) -> dict[str, Any]:
    return {
        "rounds": rounds,
        "warmup_rounds": WARMUP_ROUNDS,
        "figures": {key: {"name": f.name, "cubicle": summary_ms(f.cubicle), "baseline": summary_ms(f.baseline),
                          "ratio": f.ratio, **({"chars": f.chars} if f.chars else {})}
                    for key, f in figures.items()},
        "memory": memory,
        "menu_check": {key: value for key, value in menu_check.items() if key != "frame"},
    }


# -- the run --------------------------------------------------------------------------------


def run_latency_bench(args) -> int:
    if args.rounds < 1:
        print("cubicle bench: --rounds must be at least 1", file=sys.stderr)
        return 2
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="cubicle-bench-shots-"))

    def bench(desktop: Desktop) -> int:
        print(f"desktop {desktop.url} on display {desktop.display}; {args.rounds} rounds per figure", file=sys.stderr)
        baseline = Baseline(desktop.display, workdir)
        with DesktopClient(desktop.url, desktop.token) as client:
            figures, menu_check = run_figures(client, baseline, args.rounds)
            time.sleep(IDLE_SECONDS)  # memory is measured on a desktop that has been idle a while
            memory = measure_memory(desktop)
        print(render_report(figures, memory, menu_check, args.rounds, args.markdown), flush=True)
        path = RESULTS_DIR / "latest.json"
        write_json(path, result_json(figures, memory, menu_check, args.rounds), targets(figures, memory))
        (RESULTS_DIR / "menu-settled.png").write_bytes(menu_check["frame"])
        print(f"\nresults in {path} (settled menu frame: {RESULTS_DIR / 'menu-settled.png'}); "
              f"the bench took {time.monotonic() - started:.0f} s", file=sys.stderr)
        return 0

    try:
        # A baseline program missing or failing is an expected failure too.
        return with_desktop(args.url, bench, EXPECTED_FAILURES + (subprocess.CalledProcessError,))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
