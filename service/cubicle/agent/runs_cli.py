"""`cubicle runs list` and `cubicle runs show ID [--replay]`: the run store from a terminal."""

from __future__ import annotations

import argparse
import shutil
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from .events import RunEvent
from .replay import (
    describe_action,
    describe_result,
    format_duration,
    format_tokens,
    run_duration,
    write_replay,
)
from .runs import RunNotFound, RunStore, parse_time

_META_SHOWN = ("id", "task", "model", "tool_version", "desktop", "status", "stop_reason", "created_at", "updated_at", "totals")


def _store(args: argparse.Namespace) -> RunStore:
    return RunStore(getattr(args, "runs_dir", None))


def _one_line(text: Any, width: int) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def format_age(created_at: Any, now: datetime | None = None) -> str:
    moment = parse_time(created_at)
    if moment is None:
        return "?"
    seconds = max(0, int(((now or datetime.now(UTC)) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def list_runs(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """A table of all runs, newest first."""
    out = out or sys.stdout
    store = _store(args)
    runs = store.list()
    if not runs:
        print(f"no runs in {store.root}", file=out)
        return 0
    rows = []
    for meta in runs:
        totals = meta.get("totals") or {}
        rows.append((
            str(meta.get("id", "?")),
            str(meta.get("status", "?")),
            str(totals.get("steps", 0)),
            f"${float(totals.get('cost_usd') or 0):.4f}",
            format_age(meta.get("created_at")),
        ))
    headers = ("ID", "STATUS", "STEPS", "COST", "AGE")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    used = sum(widths) + 2 * len(widths)
    task_width = max(20, shutil.get_terminal_size((120, 24)).columns - used)

    def line(cells: tuple[str, ...], task: str) -> str:
        # Text left-aligned, numbers right-aligned.
        left = [cells[0].ljust(widths[0]), cells[1].ljust(widths[1])]
        right = [cells[i].rjust(widths[i]) for i in (2, 3, 4)]
        return "  ".join(left + right + [task]).rstrip()

    print(line(headers, "TASK"), file=out)
    for meta, row in zip(runs, rows):
        print(line(row, _one_line(meta.get("task"), task_width)), file=out)
    return 0


def show_run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """A run's metadata and a compact step log; with --replay, also write replay.html."""
    out = out or sys.stdout
    try:
        run = _store(args).open(getattr(args, "run_id", None) or getattr(args, "id", None) or "")
    except RunNotFound as error:
        print(f"cubicle runs show: {error}", file=sys.stderr)
        return 1
    meta = run.meta
    events = run.events()
    totals = meta.get("totals") or {}
    status = str(meta.get("status", "?")) + (f" ({meta['stop_reason']})" if meta.get("stop_reason") else "")
    created = parse_time(meta.get("created_at"))
    fields = [
        ("run", meta.get("id")),
        ("task", meta.get("task")),
        ("model", f"{meta.get('model', '?')} ({meta.get('tool_version', '?')})"),
        ("desktop", meta.get("desktop") or "-"),
        ("status", status),
        ("created", created.strftime("%Y-%m-%d %H:%M:%S UTC") if created else "?"),
        ("duration", format_duration(run_duration(meta, events))),
        ("totals", f"{totals.get('steps', 0)} steps · {format_tokens(totals)} · ${float(totals.get('cost_usd') or 0):.4f}"),
        ("folder", run.folder),
    ]
    fields += [(key, value) for key, value in meta.items() if key not in _META_SHOWN]
    for key, value in fields:
        text = str(value)
        print(f"{key:<9} " + text.replace("\n", "\n" + " " * 10), file=out)
    print(file=out)
    for line in step_log(events):
        print(line, file=out)
    if getattr(args, "replay", False):
        path = write_replay(run)
        print(f"\nreplay: {path}", file=out)
    return 0


def step_log(events: list[RunEvent]) -> list[str]:
    """One line per step header, model text, action, retry and message."""
    results = {e.get("tool_use_id"): e for e in events if e.get("type") == "result" and e.get("tool_use_id")}
    acted = {e.get("tool_use_id") for e in events if e.get("type") == "action"}
    lines: list[str] = []
    current: Any = object()
    header: int | None = None  # index of the current step's line
    for event in events:
        kind = event.get("type")
        step = event.get("step")
        if isinstance(step, int) and not isinstance(step, bool) and step != current:
            current = step
            header = len(lines)
            lines.append(f"step {step}")
        if kind == "run_started":
            lines.append(f"started  {event.get('model', '')} on {event.get('desktop', '') or '?'}")
        elif kind == "response":
            timing = []
            if isinstance(event.get("duration_ms"), (int, float)):
                timing.append(f"model {format_duration(event['duration_ms'] / 1000)}")
            if isinstance(event.get("usage"), dict):
                timing.append(format_tokens(event["usage"]))
            if isinstance(event.get("cost_usd"), (int, float)):
                timing.append(f"${event['cost_usd']:.4f}")
            if timing and header is not None:
                lines[header] += "  (" + ", ".join(timing) + ")"
            for block in event.get("content") or []:
                if isinstance(block, dict) and block.get("type") == "text" and str(block.get("text", "")).strip():
                    lines.append(f"  » {_one_line(block['text'], 100)}")
        elif kind == "action":
            result = results.get(event.get("tool_use_id"))
            who = "human " if event.get("actor") == "human" else ""
            took = ""
            if result and isinstance(result.get("duration_ms"), (int, float)):
                took = "  " + format_duration(result["duration_ms"] / 1000)
            outcome = describe_result(result) if result or not who else ""
            lines.append(f"  {who + describe_action(event, limit=50):<56} {outcome}{took}".rstrip())
        elif kind == "result" and event.get("tool_use_id") not in acted:
            lines.append(f"  result {describe_result(event)}")
        elif kind == "retry":
            lines.append(f"  ! retry in {event.get('wait_s', '?')} s: {_one_line(event.get('error'), 90)}")
        elif kind == "message":
            lines.append(f"  human: {_one_line(event.get('text'), 100)}")
        elif kind == "run_finished":
            lines.append(f"{event.get('status', 'ended')}: {event.get('reason') or ''}".rstrip(": "))
    return lines
