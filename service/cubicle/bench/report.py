"""How every bench reports: milliseconds, medians and percentiles, tables (plain or
Markdown), targets, the machine block and the JSON file of the results.

Figures are kept in seconds until they are printed, so that one rule decides how many
digits a millisecond figure gets, whichever bench prints it.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS_DIR = Path("bench/results")  # relative to where the bench runs, like the repository's bench/results/

Target = tuple[str, str, bool]  # (goal, the measured value as text, met)


# -- numbers --------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    """Seconds as milliseconds, without the unit: two decimals below 1 ms, one above."""
    value = seconds * 1000
    return f"{value:.2f}" if value < 1 else f"{value:.1f}"


def ms_or_dash(seconds: float | None) -> str:
    """Seconds as "12.3 ms", or "-" for a figure that could not be measured."""
    return "-" if seconds is None else f"{ms(seconds)} ms"


def spread(samples: list[float]) -> str:
    """Samples in seconds as "median ms (min-max)"."""
    return f"{ms(statistics.median(samples))} ms ({ms(min(samples))}-{ms(max(samples))})"


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile: a value that was measured, never one between two."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def summary_ms(samples: list[float]) -> dict[str, Any]:
    """Samples in seconds as the JSON's milliseconds: median, extremes and every sample."""
    return {"median_ms": statistics.median(samples) * 1000, "min_ms": min(samples) * 1000,
            "max_ms": max(samples) * 1000, "samples_ms": [s * 1000 for s in samples]}


# -- text -----------------------------------------------------------------------------------


def bullet(markdown: bool) -> str:
    return "- " if markdown else "  "


def table(header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    """The lines of a table: Markdown, or columns padded to their widest cell."""
    if markdown:
        return (["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
                + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]

    def line(row: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()

    return [line(header), line(["-" * width for width in widths])] + [line(row) for row in rows]


def target_lines(targets: Iterable[Target], markdown: bool) -> list[str]:
    """"targets:" and one line per target: its goal, the value measured, met or not."""
    return ["targets:"] + [f"{bullet(markdown)}{goal}: {value} -> {'met' if met else 'NOT met'}"
                           for goal, value, met in targets]


# -- the machine ----------------------------------------------------------------------------


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on, for the JSON."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}"}


def machine_line() -> str:
    """What the figures were measured on, and when, for the printed report."""
    model = _cpu_model()
    about = machine()
    return (f"machine: {about['cpus']} CPUs{f' ({model})' if model else ''}, Python {about['python']}, "
            f"{about['system']}, {_now()}")


# -- JSON -----------------------------------------------------------------------------------


def write_json(path: Path, result: dict[str, Any], targets: Iterable[Target] = ()) -> None:
    """The results as JSON, after the date and the machine, with the targets last."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"date": _now(), "machine": machine(), **result,
                "targets": [{"goal": goal, "value": value, "met": met} for goal, value, met in targets]}
    path.write_text(json.dumps(document, indent=2) + "\n")
