"""`cubicle bench --toolsets`: what Claude's own toolsets cost on a cubicle desktop.

- Per member: a computer-toolset call through CubicleComputer (the SDK's parsing, confirm,
  rendering and batch bookkeeping included, as its tool runner makes it: `tool_result`), beside
  the same action through the worker's raw path (one /actions request with the coordinate
  space), measured in the same run, alternating.
- The browser toolset's read_page on a page of 1,000 elements (see browser.py).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from anthropic.types.beta import BetaToolUseBlock

from cubicle.anthropic import CubicleComputer
from cubicle.client import DesktopClient

from . import browser
from .desktops import Desktop, with_desktop
from .report import RESULTS_DIR, Target, bullet, machine_line, ms, spread, summary_ms, table, target_lines, write_json

# (member, its input): actions that change nothing lasting on the desktop.
MEMBERS: list[tuple[str, dict[str, Any]]] = [
    ("mouse_move", {"coordinate": [400, 300]}),
    ("cursor_position", {}),
    ("key", {"text": "shift"}),
    ("screenshot", {}),
    ("zoom", {"region": [0, 0, 320, 200]}),
]


def _timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure_members(desktop: Desktop, rounds: int) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {}
    with DesktopClient(desktop.url, desktop.token, timeout=60) as client, \
            CubicleComputer(client, confirm=lambda context: True) as computer:
        computer.tool_result(BetaToolUseBlock(id="toolu_warm", name="screenshot", input={}, type="tool_use",
                                              toolset_name="computer"))  # the coordinate space
        space = computer.image_size
        for member, member_input in MEMBERS:
            toolset, raw = [], []
            block = BetaToolUseBlock(id="toolu_b", name=member, input=member_input, type="tool_use", toolset_name="computer")
            for _ in range(rounds):
                # Each lambda is called at once by _timed, in this iteration: the loop variables are current.
                toolset.append(_timed(lambda: computer.tool_result(block)))  # noqa: B023
                raw.append(_timed(lambda: client.act({**member_input, "action": member}, coordinate_space=space)))  # noqa: B023
            results[member] = {"toolset": toolset, "raw": raw}
    return results


def run_toolsets_bench(args: argparse.Namespace) -> int:
    def body(desktop: Desktop) -> int:
        print(machine_line())
        members = measure_members(desktop, args.rounds)
        read_page = browser.measure_read_page(desktop.url, desktop.token, elements=1000, rounds=min(args.rounds, 9))
        rows = []
        overheads = []
        for member, samples in members.items():
            overhead = statistics.median(samples["toolset"]) - statistics.median(samples["raw"])
            overheads.append(overhead)
            rows.append([f"computer {member}", spread(samples["toolset"]), spread(samples["raw"]),
                         f"{ms(overhead)} ms", f"{statistics.median(samples['toolset']) / statistics.median(samples['raw']):.2f}x"])
        read_ms = read_page["read_page"]["median_ms"] / 1000
        rows.append(["browser read_page, 1,000 elements", f"{ms(read_ms)} ms", "-", "-", "-"])
        print("\n".join(table(["member", "CubicleComputer (SDK)", "raw /actions", "overhead", "ratio"], rows, args.markdown)))
        median_overhead = statistics.median(overheads)
        targets: list[Target] = [
            ("the SDK's toolset adds <= 5 ms per member (median over members)", f"{ms(median_overhead)} ms",
             median_overhead <= 0.005),
            ("read_page of 1,000 elements <= 250 ms", f"{ms(read_ms)} ms", read_ms <= 0.25),
        ]
        print("\n".join(target_lines(targets, args.markdown)))
        path = RESULTS_DIR / "toolsets.json"
        write_json(path, {"rounds": args.rounds, "members": {m: {k: summary_ms(v) for k, v in s.items()}
                                                            for m, s in members.items()}, "read_page": read_page}, targets)
        print(f"{bullet(args.markdown)}results in {path}")
        return 0

    return with_desktop(args.url, body)
