"""The run store: every run of the agent is a folder, written as it happens.

    <root>/<run_id>/run.json       metadata, rewritten atomically (temp file + os.replace)
    <root>/<run_id>/events.jsonl   one JSON event per line, appended and fsync'd per event
    <root>/<run_id>/images/        screenshots, e.g. images/0003-01.png (step 3, image 1)

A run killed at any moment keeps every event whose `append` returned. A crash can leave
a torn last line; readers skip it, and the first `append` after reopening cuts it off and
goes on with the next `seq`. One process writes a run at a time; any number may read it.

The root is the `RunStore` argument, else $CUBICLE_RUNS_DIR, else ./runs. Run ids are UTC
time plus random hex (`20261124-193012-ab12cd`), so they sort by creation.

run.json holds id, task, model, tool_version, desktop (URL), created_at, updated_at, status
(running | paused | finished | failed | stopped | interrupted), stop_reason, any extra fields
given to `create_run`, and totals {steps, input_tokens, output_tokens, cache_read_tokens,
cache_creation_tokens, cost_usd}. `add_usage` adds to the token and cost totals; the writer
sets `steps` itself with `update(totals={"steps": n})`.

Every event has `seq` (0, 1, 2, ...), `time` (ISO 8601 UTC) and `type`. The agent loop writes:

    run_started   task, model, tool_version, desktop, screen {width, height}, image {width, height}
    request       step, messages, images, bytes, prefix_hash
    response      step, stop_reason, content [{"type": "text", "text"} |
                  {"type": "tool_use", "id", "name", "input", "toolset_name"?}], usage {...},
                  cost_usd, duration_ms
    action        step, tool_use_id, tool ("computer" | "bash" | "str_replace_based_edit_tool"),
                  name (the action, e.g. "left_click"), input (as the model sent it, coordinates
                  in the screenshot's space), image (the screenshot the decision was made on,
                  if any), actor ("model" | "human")
    result        step, tool_use_id, is_error, text, image (a returned screenshot, if any),
                  duration_ms
    retry         step, error, wait_s
    message       text, actor "human"
    run_finished  status, reason, totals

Other fields and types are allowed. Images are referenced by their path relative to the run
folder.

Secrets never reach the disk: every event and every run.json pass through `redact`, which
replaces any string containing a known secret ($ANTHROPIC_API_KEY, $CUBICLE_TOKEN, and values
given to `RunStore.add_secret`; values under 8 characters are ignored) with "[redacted]", as
well as the value of any key named authorization, x-api-key or api_key (any case).
"""

from __future__ import annotations

import builtins
import copy
import dataclasses
import fcntl
import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from .events import RunEvent

STATUSES = ("running", "paused", "finished", "failed", "stopped", "interrupted")
TOTAL_FIELDS = ("steps", "input_tokens", "output_tokens", "cache_read_tokens", "cache_creation_tokens", "cost_usd")
RUN_FILE = "run.json"
EVENTS_FILE = "events.jsonl"
IMAGES_DIR = "images"
CLAIM_FILE = ".claim"

REDACTED = "[redacted]"
SECRET_ENV_VARS = ("ANTHROPIC_API_KEY", "CUBICLE_TOKEN")
MIN_SECRET_LENGTH = 8
_SECRET_KEYS = {"authorization", "x_api_key", "api_key"}  # compared with "-" read as "_"

_IMAGE_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg", "image/webp": "webp", "image/gif": "gif"}
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_RESERVED = {"id", "created_at", "updated_at", "totals"}

# Secrets are process-wide on purpose: one registered anywhere must stay off every disk write.
_registered_secrets: set[str] = set()
_secrets_lock = threading.Lock()


class RunBusy(RuntimeError):
    """Another process is carrying this run out."""


class RunNotFound(LookupError):
    pass


# -- time -------------------------------------------------------------------------------


def utc_now() -> str:
    """Now as ISO 8601 UTC with microseconds, e.g. 2026-11-24T19:30:12.123456Z."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S") + "-" + os.urandom(3).hex()


# -- secrets ----------------------------------------------------------------------------


def known_secrets() -> list[str]:
    """The secrets `redact` hides now: the environment's (read at each call) and registered ones."""
    with _secrets_lock:
        values = set(_registered_secrets)
    values.update(os.environ.get(name, "") for name in SECRET_ENV_VARS)
    # Longest first, so a secret that contains another is checked before it.
    return sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH), key=len, reverse=True)


def redact(obj: Any, secrets: list[str] | None = None) -> Any:
    """A JSON-ready copy of obj with secrets replaced by "[redacted]".

    Strings equal to or containing a secret become "[redacted]", as do the values of keys
    named authorization, x-api-key or api_key. Values JSON cannot hold (bytes, paths,
    pydantic models, dataclasses) are converted first, so nothing escapes the check.
    """
    found = known_secrets() if secrets is None else [s for s in secrets if len(s) >= MIN_SECRET_LENGTH]
    return _redact(obj, tuple(found))


def _is_secret_key(key: str) -> bool:
    return key.lower().replace("-", "_") in _SECRET_KEYS


def _redact(obj: Any, secrets: tuple[str, ...]) -> Any:
    if obj is None or isinstance(obj, (bool, int, float)):
        return obj
    if isinstance(obj, str):
        return REDACTED if any(secret in obj for secret in secrets) else obj
    if isinstance(obj, dict):
        clean: dict[str, Any] = {}
        for key, value in obj.items():
            name = _redact(key if isinstance(key, str) else str(key), secrets)
            if _is_secret_key(str(key)) and value not in (None, ""):
                clean[name] = REDACTED
            else:
                clean[name] = _redact(value, secrets)
        return clean
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_redact(item, secrets) for item in obj]
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return f"<{len(obj)} bytes>"
    if hasattr(obj, "model_dump"):  # pydantic models
        return _redact(obj.model_dump(mode="json"), secrets)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _redact(dataclasses.asdict(obj), secrets)
    return _redact(str(obj), secrets)


# -- files ------------------------------------------------------------------------------


def _fsync_dir(folder: Path) -> None:
    """Make a new or renamed entry in folder durable (not every filesystem supports it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write path so that readers see the old or the new content, never a part."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(temp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _dump_line(event: RunEvent) -> bytes:
    return (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def _parse_events(data: bytes) -> list[RunEvent]:
    """Complete, valid lines of an events file; a torn or damaged line is skipped."""
    events: list[RunEvent] = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(cast(RunEvent, event))
    return events


def _read_meta(folder: Path) -> dict[str, Any]:
    with open(folder / RUN_FILE, encoding="utf-8") as handle:
        meta = json.load(handle)
    if not isinstance(meta, dict):
        raise ValueError(f"{folder / RUN_FILE} does not hold a JSON object")
    totals: dict[str, float] = {name: 0 for name in TOTAL_FIELDS}
    totals["cost_usd"] = 0.0
    totals.update(meta.get("totals") or {})
    meta["totals"] = totals
    return meta


# -- runs -------------------------------------------------------------------------------


class Run:
    """One run's folder. Methods are thread-safe; one process should write a run at a time."""

    def __init__(self, folder: Path, meta: dict[str, Any]):
        self.folder = Path(folder)
        self.id: str = meta["id"]
        self._meta = meta
        self._lock = threading.RLock()
        self._events_fd: int | None = None
        self._claim_fd: int | None = None
        self._next_seq = 0

    def __repr__(self) -> str:
        return f"Run({self.id!r}, status={self._meta.get('status')!r})"

    @property
    def meta(self) -> dict[str, Any]:
        """A copy of run.json as last written."""
        with self._lock:
            return copy.deepcopy(self._meta)

    @property
    def events_path(self) -> Path:
        return self.folder / EVENTS_FILE

    # -- events -------------------------------------------------------------------------

    def append(self, type: str, **fields: Any) -> RunEvent:
        """Write one event; when this returns, it is on disk (flushed and fsync'd)."""
        with self._lock:
            fd = self._open_events()
            event = redact({"seq": self._next_seq, "time": utc_now(), "type": type, **fields})
            data = memoryview(_dump_line(event))
            while data:  # os.write may write less than asked
                data = data[os.write(fd, data):]
            os.fsync(fd)
            self._next_seq += 1
            return event

    def events(self) -> list[RunEvent]:
        """All complete events, in order (a torn last line from a crash is left out)."""
        try:
            data = self.events_path.read_bytes()
        except FileNotFoundError:
            return []
        return _parse_events(data)

    def _open_events(self) -> int:
        """Open events.jsonl for appending, first cutting off a torn line left by a crash."""
        if self._events_fd is not None:
            return self._events_fd
        fd = os.open(self.events_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            data = b""
            size = os.fstat(fd).st_size
            while len(data) < size:
                chunk = os.pread(fd, size - len(data), len(data))
                if not chunk:
                    break
                data += chunk
            complete = data.rfind(b"\n") + 1
            if complete < len(data):
                # Its append never returned: nobody was told this event exists.
                os.ftruncate(fd, complete)
                os.fsync(fd)
        finally:
            os.close(fd)
        seqs = [e["seq"] for e in _parse_events(data[:complete]) if isinstance(e.get("seq"), int)]
        self._next_seq = max(seqs) + 1 if seqs else 0
        fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND)
        _fsync_dir(self.folder)
        self._events_fd = fd
        return fd

    def claim(self) -> None:
        """Become the one process that carries this run out, until release() or the end of
        the process: an exclusive lock on a file in the run folder, which the kernel drops
        when a worker dies, so a killed worker's run can be resumed and a live one cannot."""
        with self._lock:
            if self._claim_fd is not None:
                return
            fd = os.open(self.folder / CLAIM_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunBusy(f"run {self.id} is being carried out by another process") from None
            self._claim_fd = fd

    def release(self) -> None:
        with self._lock:
            if self._claim_fd is not None:
                os.close(self._claim_fd)  # closing drops the lock
                self._claim_fd = None

    def close(self) -> None:
        self.release()
        with self._lock:
            if self._events_fd is not None:
                os.close(self._events_fd)
                self._events_fd = None

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __del__(self) -> None:
        for name in ("_events_fd", "_claim_fd"):
            fd = getattr(self, name, None)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    # -- images -------------------------------------------------------------------------

    def save_image(self, step: int, index: int, data: bytes, media_type: str) -> str:
        """Store a screenshot; returns its path relative to the run folder, e.g. images/0003-01.png.

        An existing file is never overwritten (a resumed run may repeat a step number): the
        new one gets a suffix, images/0003-01-2.png.
        """
        extension = _IMAGE_EXTENSIONS.get(media_type.lower().split(";")[0].strip())
        if extension is None:
            raise ValueError(f"unsupported image media type {media_type!r}; expected one of {sorted(_IMAGE_EXTENSIONS)}")
        stem = f"{int(step):04d}-{int(index):02d}"
        with self._lock:
            folder = self.folder / IMAGES_DIR
            folder.mkdir(exist_ok=True)
            name, copy_number = f"{stem}.{extension}", 1
            while (folder / name).exists():
                copy_number += 1
                name = f"{stem}-{copy_number}.{extension}"
            write_atomic(folder / name, bytes(data))
            return f"{IMAGES_DIR}/{name}"

    # -- metadata -----------------------------------------------------------------------

    def update(self, **fields: Any) -> dict[str, Any]:
        """Merge fields into run.json (totals are merged key by key) and rewrite it atomically."""
        if "id" in fields and fields["id"] != self.id:
            raise ValueError("a run's id cannot change")
        status = fields.get("status")
        if status is not None and status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")
        with self._lock:
            meta = copy.deepcopy(self._meta)
            totals = fields.pop("totals", None)
            meta.update(fields)
            if totals:
                meta["totals"].update(totals)
            self._write_meta(meta)
            return copy.deepcopy(self._meta)

    def add_usage(
        self,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_creation_tokens: int = 0,
        cost_usd: float = 0.0,
    ) -> dict[str, Any]:
        """Add one model call's usage to the totals; returns the new totals."""
        with self._lock:
            meta = copy.deepcopy(self._meta)
            totals = meta["totals"]
            totals["input_tokens"] += int(input_tokens or 0)
            totals["output_tokens"] += int(output_tokens or 0)
            totals["cache_read_tokens"] += int(cache_read_tokens or 0)
            totals["cache_creation_tokens"] += int(cache_creation_tokens or 0)
            totals["cost_usd"] = round(float(totals["cost_usd"]) + float(cost_usd or 0.0), 6)
            self._write_meta(meta)
            return dict(self._meta["totals"])

    def _write_meta(self, meta: dict[str, Any]) -> None:
        meta["updated_at"] = utc_now()
        clean = redact(meta)
        data = (json.dumps(clean, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        write_atomic(self.folder / RUN_FILE, data)
        self._meta = clean


class RunStore:
    """The folder holding all runs."""

    def __init__(self, root: str | os.PathLike[str] | None = None):
        self.root = Path(root or os.environ.get("CUBICLE_RUNS_DIR") or "runs")

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    @staticmethod
    def add_secret(value: str | None) -> None:
        """Never write this value to any run (process-wide; values under 8 characters are ignored)."""
        if value and len(value) >= MIN_SECRET_LENGTH:
            with _secrets_lock:
                _registered_secrets.add(value)

    def create_run(self, task: str, model: str, tool_version: str, desktop: str, **extra: Any) -> Run:
        reserved = _RESERVED & extra.keys()
        if reserved:
            raise TypeError(f"create_run() sets {', '.join(sorted(reserved))} itself")
        status = extra.pop("status", "running")
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")
        self.root.mkdir(parents=True, exist_ok=True)
        while True:
            run_id = new_run_id()
            folder = self.root / run_id
            try:
                folder.mkdir()
                break
            except FileExistsError:
                continue
        (folder / IMAGES_DIR).mkdir()
        now = utc_now()
        meta: dict[str, Any] = {
            "id": run_id,
            "task": task,
            "model": model,
            "tool_version": tool_version,
            "desktop": desktop,
            "created_at": now,
            "updated_at": now,
            "status": status,
            "stop_reason": None,
            "totals": {name: 0 for name in TOTAL_FIELDS} | {"cost_usd": 0.0},
            **extra,
        }
        run = Run(folder, meta)
        run._write_meta(meta)
        (folder / EVENTS_FILE).touch()
        _fsync_dir(folder)
        _fsync_dir(self.root)
        return run

    def open(self, run_id: str) -> Run:
        """The run with this id, or with the one id that starts with it."""
        folder = self._folder(run_id)
        return Run(folder, self._load(folder))

    def list(self) -> list[dict[str, Any]]:
        """Metadata of every run, newest first (folders without a readable run.json are skipped)."""
        runs = []
        for folder in self._run_folders():
            try:
                runs.append(_read_meta(folder))
            except (OSError, ValueError):
                continue
        runs.sort(key=lambda meta: (str(meta.get("created_at") or ""), str(meta.get("id") or "")), reverse=True)
        return runs

    def _run_folders(self) -> builtins.list[Path]:  # builtins: in this class `list` is the method above
        try:
            children = list(self.root.iterdir())
        except FileNotFoundError:
            return []
        return [c for c in children if c.is_dir() and _RUN_ID.match(c.name) and (c / RUN_FILE).is_file()]

    def _folder(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise RunNotFound(f"{run_id!r} is not a run id (runs look like 20261124-193012-ab12cd)")
        folder = self.root / run_id
        if (folder / RUN_FILE).is_file():
            return folder
        matches = sorted(f for f in self._run_folders() if f.name.startswith(run_id))
        if len(matches) == 1:
            return matches[0]
        if matches:
            names = ", ".join(f.name for f in matches[:5])
            raise RunNotFound(f"{run_id!r} matches {len(matches)} runs ({names}{', ...' if len(matches) > 5 else ''}); give more of the id")
        raise RunNotFound(f"no run {run_id!r} in {self.root}")

    @staticmethod
    def _load(folder: Path) -> dict[str, Any]:
        try:
            meta = _read_meta(folder)
        except (OSError, ValueError) as error:
            raise RunNotFound(f"cannot read {folder / RUN_FILE}: {error}") from None
        meta["id"] = folder.name
        return meta
