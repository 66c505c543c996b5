"""Reading the JSON-lines log written by ``tests/apps/recorder.py``."""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable

Record = dict
Predicate = Callable[[Record], bool]


def read_records(path: str | os.PathLike) -> list[Record]:
    """All complete records in the log, oldest first.

    A missing file reads as no records, and a last line without its newline
    (being written right now) is ignored.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    # The last element is "" after a complete line, or a partial line.
    return [json.loads(line) for line in lines[:-1] if line.strip()]


def _describe(predicate: Predicate) -> str:
    try:
        source = inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        source = ""
    if source and len(source) <= 300:
        return source
    name = getattr(predicate, "__qualname__", None) or repr(predicate)
    code = getattr(predicate, "__code__", None)
    if code is not None:
        return f"{name} ({code.co_filename}:{code.co_firstlineno})"
    return name


def wait_for_record(
    path: str | os.PathLike,
    predicate: Predicate,
    timeout: float = 5.0,
    *,
    start: int = 0,
    description: str | None = None,
    interval: float = 0.02,
) -> Record:
    """Poll the log until a record satisfies ``predicate``; return it.

    Only records at index ``start`` and later are considered (pass
    ``len(read_records(path))`` taken before an action to ignore what was
    logged earlier).  On timeout raises AssertionError naming what was
    awaited (``description``, else the predicate's source) and showing the
    last records seen.
    """
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path)
        for record in records[start:]:
            if predicate(record):
                return record
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    what = description or _describe(predicate)
    tail = records[max(start, len(records) - 10):]
    shown = "\n".join("  " + json.dumps(r, ensure_ascii=False) for r in tail) or "  (none)"
    raise AssertionError(
        f"no record matching {what} in {os.fspath(path)} within {timeout:g}s "
        f"({len(records)} records, searched from index {start}); last records:\n{shown}"
    )
