"""`cubicle bench --agent`: what the agent worker itself costs per step, on a real desktop.

A scripted stand-in for the Messages API (answering at once) drives a 100-step run through
the real SDK: each step clicks the desktop background and gets a settled screenshot back.
The worker's own overhead per step is the step's wall time minus the model call and minus
the desktop's settle wait. Request sizes and prompt-cache prefixes are read from what the
scripted API received. The baseline is the reference demo's step without a model: one
xdotool click, its fixed 2 s wait, and a scrot + convert screenshot.
"""

from __future__ import annotations

import itertools
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic

from cubicle.agent.events import RunEvent
from cubicle.agent.loop import Agent, Budgets
from cubicle.agent.runs import RunStore
from cubicle.agent.scripted_api import Error, ScriptedAPI, message, text, tool_use
from cubicle.client import DesktopClient

from .baseline import Baseline, Spots
from .desktops import EXPECTED_FAILURES, Desktop, with_desktop
from .report import RESULTS_DIR, Target, spread, table, target_lines, write_json

STEPS = 100
MAX_BASELINE_ROUNDS = 10  # each reference step takes over 2 s: --rounds, but no more than this
TARGET_OVERHEAD_MS = 50.0


def _strip_cache_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_cache_markers(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_cache_markers(v) for v in value]
    return value


def prefix_changes(requests: list[dict[str, Any]]) -> list[int]:
    """Steps (2-based) whose request does not extend the previous one byte for byte."""
    changed = []
    for step, (previous, current) in enumerate(itertools.pairwise(requests), start=2):
        before, after = _strip_cache_markers(previous["messages"]), _strip_cache_markers(current["messages"])
        if after[: len(before)] != before or previous["system"] != current["system"] or previous["tools"] != current["tools"]:
            changed.append(step)
    return changed


def run_scripted(client: DesktopClient, desktop_url: str, steps: int, spots: Spots,
                 baseline_step: Callable[[], float], baseline_rounds: int) -> dict[str, Any]:
    """The scripted run, then `baseline_rounds` reference steps; all times in milliseconds.
    Both click the points `spots` hands out, so that the baseline's first click does not go
    where the run's last one left the pointer (`xdotool mousemove --sync` would wait 15 s)."""
    turns: list[Callable[[dict[str, Any]], dict[str, Any] | Error]]
    turns = [lambda r: message(tool_use("computer", {"action": "left_click", "coordinate": list(spots.next())}))
             for _ in range(steps)] + [lambda r: message(text("done"))]
    api = ScriptedAPI(turns)
    marks: list[tuple[str, float, RunEvent]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="cubicle-bench-runs-") as runs_dir:
            agent = Agent(
                client, "claude-haiku-4-5", RunStore(runs_dir), desktop_url=desktop_url,
                anthropic_client=anthropic.Anthropic(api_key="scripted", base_url=api.url, max_retries=0),
                budgets=Budgets(max_steps=steps + 1),
                on_event=lambda event: marks.append((event["type"], time.perf_counter(), event)),
            )
            run = agent.run("Click the background, again and again.")
            status = run.meta["status"]
    finally:
        api.close()
    requests_at = [t for kind, t, _ in marks if kind == "request"]
    model_ms = [e["duration_ms"] for kind, _, e in marks if kind == "response"]
    settle_ms = [e.get("settle_ms") or 0.0 for kind, _, e in marks if kind == "result"]
    overhead = [
        (requests_at[i + 1] - requests_at[i]) * 1000 - model_ms[i] - settle_ms[i]
        for i in range(min(len(requests_at) - 1, len(settle_ms)))
    ]
    sizes = [e["bytes"] for kind, _, e in marks if kind == "request"]
    prunes = [e["step"] for kind, _, e in marks if kind == "request" and e["pruned"]]
    baseline = [baseline_step() * 1000 for _ in range(baseline_rounds)]
    return {
        "status": status,
        "steps": len(overhead),
        "overhead_ms": overhead,
        "settle_ms": settle_ms,
        "model_call_ms": model_ms,
        "step_ms": [o + s for o, s in zip(overhead, settle_ms)],
        "baseline_step_ms": baseline,
        "request_bytes": sizes,
        "prune_steps": prunes,
        "prefix_changed_steps": prefix_changes(api.requests),
    }


def _cell(samples_ms: list[float]) -> str:
    return spread([value / 1000 for value in samples_ms])


def _bounded(sizes: list[int], prune_steps: list[int]) -> bool:
    """Pruning works when requests stop growing: each prune cycle peaks no higher than the
    first one (a few KB of slack for the text of the growing history)."""
    if not prune_steps:
        return False
    first = prune_steps[0] - 1
    return max(sizes[first:]) <= max(sizes[:first]) * 1.1


def _changes_only_at_prunes(result: dict[str, Any]) -> bool:
    return set(result["prefix_changed_steps"]) <= set(result["prune_steps"])


def targets(result: dict[str, Any]) -> list[Target]:
    overhead = statistics.median(result["overhead_ms"])
    only_at_prunes = _changes_only_at_prunes(result)
    return [
        (f"worker overhead per step <= {TARGET_OVERHEAD_MS:.0f} ms plus the settle time", f"{overhead:.1f} ms",
         overhead <= TARGET_OVERHEAD_MS),
        ("request bytes bounded (after the first prune, never above the largest before it)",
         f"largest {max(result['request_bytes']) / 1024:.0f} KB", _bounded(result["request_bytes"], result["prune_steps"])),
        ("prefix changes only at prune events", "yes" if only_at_prunes else "also elsewhere", only_at_prunes),
    ]


def render_report(result: dict[str, Any], markdown: bool) -> str:
    step, baseline = result["step_ms"], result["baseline_step_ms"]
    sizes = result["request_bytes"]
    rows = [
        ["worker overhead per step (model call and settle excluded)", _cell(result["overhead_ms"]), "-", "-"],
        ["settle wait per step (desktop)", _cell(result["settle_ms"]), "2000.0 ms (fixed sleep)", "-"],
        ["step without the model: overhead + settle", _cell(step), _cell(baseline),
         f"{statistics.median(baseline) / statistics.median(step):.1f}x"],
        ["scripted model call (SDK + local HTTP)", _cell(result["model_call_ms"]), "-", "-"],
    ]
    header = ["figure", "cubicle median (min-max)", "baseline median (min-max)", "ratio"]
    checkpoints = {n: sizes[n - 1] for n in (1, 10, 25, 50, 75, len(sizes)) if n <= len(sizes)}
    lines = table(header, rows, markdown) + [
        "",
        f"{result['steps']} steps, run {result['status']}; baseline: {len(baseline)} reference-demo steps in the same run.",
        "request size by step: " + ", ".join(f"{n}: {b / 1024:.0f} KB" for n, b in checkpoints.items())
        + f"; largest {max(sizes) / 1024:.0f} KB",
        (f"screenshots pruned at steps {result['prune_steps']}; the cacheable prefix changed at steps "
         f"{result['prefix_changed_steps']} ({'only at prunes' if _changes_only_at_prunes(result) else 'ALSO ELSEWHERE'})"),
        "",
    ]
    return "\n".join(lines + target_lines(targets(result), markdown))


def result_json(result: dict[str, Any]) -> dict[str, Any]:
    """The run's figures with each list of milliseconds as its median."""
    return {key: (statistics.median(value) if key.endswith("_ms") else value) for key, value in result.items()}


def run_agent_bench(args) -> int:
    if args.rounds < 1:
        print("cubicle bench: --rounds must be at least 1", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="cubicle-bench-shots-"))

    def bench(desktop: Desktop) -> int:
        print(f"desktop {desktop.url} on display {desktop.display}; {args.rounds} rounds per figure", file=sys.stderr)
        baseline = Baseline(desktop.display, workdir)
        spots = Spots()

        def reference_step() -> float:
            started = time.perf_counter()
            baseline.step(*spots.next())
            return time.perf_counter() - started

        with DesktopClient(desktop.url, desktop.token) as client:
            print(f"  agent: {STEPS} scripted steps ...", file=sys.stderr)
            result = run_scripted(client, desktop.url, STEPS, spots, reference_step, min(args.rounds, MAX_BASELINE_ROUNDS))
        print(render_report(result, args.markdown), flush=True)
        path = RESULTS_DIR / "agent.json"
        write_json(path, result_json(result), targets(result))
        print(f"\nresults in {path}", file=sys.stderr)
        return 0

    try:
        # A baseline program missing or failing is an expected failure too.
        return with_desktop(args.url, bench, EXPECTED_FAILURES + (subprocess.CalledProcessError,))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
