"""`cubicle bench --agent`: what the agent worker itself costs per step, on a real desktop.

A scripted stand-in for the Messages API (answering at once) drives a 100-step run through
the real SDK: each step clicks the desktop background and gets a settled screenshot back.
The worker's own overhead per step is the step's wall time minus the model call and minus
the desktop's settle wait. Request sizes and prompt-cache prefixes are read from what the
scripted API received. The baseline is the reference demo's step without a model: one
xdotool click, its fixed 2 s wait, and a scrot + convert screenshot.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import anthropic

from .agent.loop import Agent, Budgets
from .agent.runs import RunStore
from .agent.scripted_api import ScriptedAPI, message, text, tool_use
from .client import DesktopClient

SPOTS = ((600, 380), (660, 420))  # empty desktop background


def _strip_cache_markers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_cache_markers(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list):
        return [_strip_cache_markers(v) for v in value]
    return value


def prefix_changes(requests: list[dict[str, Any]]) -> list[int]:
    """Steps (2-based) whose request does not extend the previous one byte for byte."""
    changed = []
    for step, (previous, current) in enumerate(zip(requests, requests[1:]), start=2):
        before, after = _strip_cache_markers(previous["messages"]), _strip_cache_markers(current["messages"])
        if after[: len(before)] != before or previous["system"] != current["system"] or previous["tools"] != current["tools"]:
            changed.append(step)
    return changed


def run_agent_bench(client: DesktopClient, desktop_url: str, steps: int,
                    baseline_step: Callable[[], float], baseline_rounds: int) -> dict[str, Any]:
    turns = [lambda r, i=i: message(tool_use("computer", {"action": "left_click", "coordinate": list(SPOTS[i % 2])}))
             for i in range(steps)] + [lambda r: message(text("done"))]
    api = ScriptedAPI(turns)
    marks: list[tuple[str, float, dict]] = []
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


def _cell(samples: list[float]) -> str:
    return f"{statistics.median(samples):.1f} ms ({min(samples):.1f}-{max(samples):.1f})"


def render_agent_report(result: dict[str, Any], markdown: bool) -> str:
    step, baseline = result["step_ms"], result["baseline_step_ms"]
    sizes = result["request_bytes"]
    rows = [
        ("worker overhead per step (model call and settle excluded)", _cell(result["overhead_ms"]), "-", "-"),
        ("settle wait per step (desktop)", _cell(result["settle_ms"]), "2000.0 ms (fixed sleep)", "-"),
        ("step without the model: overhead + settle", _cell(step), _cell(baseline),
         f"{statistics.median(baseline) / statistics.median(step):.1f}x"),
        ("scripted model call (SDK + local HTTP)", _cell(result["model_call_ms"]), "-", "-"),
    ]
    header = ("figure", "cubicle median (min-max)", "baseline median (min-max)", "ratio")
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|---|---|---|"] + ["| " + " | ".join(r) + " |" for r in rows]
    else:
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(header, widths))] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    checkpoints = {n: sizes[n - 1] for n in (1, 10, 25, 50, 75, len(sizes)) if n <= len(sizes)}
    overhead_median = statistics.median(result["overhead_ms"])
    lines += [
        "",
        f"{result['steps']} steps, run {result['status']}; baseline: {len(baseline)} reference-demo steps in the same run.",
        "request size by step: " + ", ".join(f"{n}: {b / 1024:.0f} KB" for n, b in checkpoints.items())
        + f"; largest {max(sizes) / 1024:.0f} KB",
        f"screenshots pruned at steps {result['prune_steps']}; the cacheable prefix changed at steps "
        f"{result['prefix_changed_steps']} ({'only at prunes' if set(result['prefix_changed_steps']) <= set(result['prune_steps']) else 'ALSO ELSEWHERE'})",
        "",
        "targets:",
        f"- worker overhead per step <= 50 ms plus the settle time: {overhead_median:.1f} ms -> "
        f"{'met' if overhead_median <= 50 else 'NOT met'}",
        f"- request bytes bounded (after the first prune, never above the largest before it): "
        f"{'met' if _bounded(sizes, result['prune_steps']) else 'NOT met'}",
        f"- prefix changes only at prune events: "
        f"{'met' if set(result['prefix_changed_steps']) <= set(result['prune_steps']) else 'NOT met'}",
    ]
    return "\n".join(lines)


def _bounded(sizes: list[int], prune_steps: list[int]) -> bool:
    """Pruning works when requests stop growing: each prune cycle peaks no higher than the
    first one (a few KB of slack for the text of the growing history)."""
    if not prune_steps:
        return False
    first = prune_steps[0] - 1
    return max(sizes[first:]) <= max(sizes[:first]) * 1.1


def write_agent_json(result: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {key: (statistics.median(value) if key.endswith("_ms") else value) for key, value in result.items()}
    path.write_text(json.dumps(summary, indent=2))
