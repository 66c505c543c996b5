"""A run as one self-contained HTML page: each step's words, and its actions drawn on the
screenshot they were decided on.

The page lives in the run folder (replay.html) and points at images/ by relative path; it
has no scripts and loads nothing from elsewhere. Images load lazily, so long runs open fast.
"""

from __future__ import annotations

import functools
import html
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cubicle.imaging import image_size_from_header

from .events import RunEvent
from .runs import Run, parse_time, write_atomic

REPLAY_FILE = "replay.html"
# The page's style, inlined into each replay.html so that the page needs no other file.
CSS_FILE = Path(__file__).resolve().parent / "replay_page" / "replay.css"

BUTTON_COLOURS = {"left": "#e53935", "right": "#1e88e5", "middle": "#43a047"}
HUMAN_COLOUR = "#8e24aa"
SCROLL_COLOUR = "#f57c00"
ZOOM_COLOUR = "#00897b"
MOVE_COLOUR = "#f9a825"

_CLICKS = {
    "left_click": ("left", 1),
    "right_click": ("right", 1),
    "middle_click": ("middle", 1),
    "double_click": ("left", 2),
    "triple_click": ("left", 3),
    "left_mouse_down": ("left", "down"),
    "left_mouse_up": ("left", "up"),
}
_SCROLL_VECTORS = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}
_EDITOR = "str_replace_based_edit_tool"
_SAFE_IMAGE = re.compile(r"^images/[A-Za-z0-9][A-Za-z0-9._-]*$")
_SAFE_VIDEO = re.compile(r"^recording\.(mp4|webm)$")
_LONG_TEXT = 1500


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


# -- summaries (shared with `cubicle runs show`) ----------------------------------------


def _clip(text: Any, limit: int) -> str:
    text = str(text).replace("\r", "").replace("\n", "⏎").replace("\t", "⇥")
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _n(value: float) -> str:
    value = round(float(value), 1)
    return str(int(value)) if value.is_integer() else f"{value:.1f}"


def _point(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        return float(value[0]), float(value[1])
    return None


def _at(value: Any) -> str:
    point = _point(value)
    return f"({_n(point[0])}, {_n(point[1])})" if point else ""


def _input_of(event: RunEvent) -> dict[str, Any]:
    tool_input = event.get("input")
    return tool_input if isinstance(tool_input, dict) else {}


def _modifiers(tool_input: dict[str, Any]) -> str | None:
    held = tool_input.get("text") or tool_input.get("key")
    return str(held) if held else None


def action_name(event: RunEvent) -> str:
    tool = event.get("tool") or "computer"
    if tool == "computer":
        return str(event.get("name") or (event.get("input") or {}).get("action") or "?")
    return str(tool)


def describe_action(event: RunEvent, limit: int = 70) -> str:
    """One line saying what an action event did, e.g. `left_click (120, 40)` or `bash: ls -l`."""
    tool = event.get("tool") or "computer"
    tool_input = _input_of(event)
    if tool == "bash":
        if tool_input.get("restart"):
            return "bash: restart"
        return "bash: " + _clip(tool_input.get("command", ""), limit)
    if tool == _EDITOR:
        return _clip(f"edit {tool_input.get('command', '?')} {tool_input.get('path', '')}".rstrip(), limit + 6)
    if tool != "computer":
        return _clip(f"{tool}: {json.dumps(tool_input, ensure_ascii=False)}", limit + 6)
    name = action_name(event)
    words = [name]
    if name == "left_click_drag":
        words.append(f"{_at(tool_input.get('start_coordinate')) or 'here'} → {_at(tool_input.get('coordinate'))}")
    elif name == "scroll":
        words.append(f"{tool_input.get('scroll_direction', '?')} {tool_input.get('scroll_amount', 3)}")
        if _point(tool_input.get("coordinate")):
            words.append("at " + _at(tool_input.get("coordinate")))
    elif name == "type":
        words.append(json.dumps(_clip(tool_input.get("text", ""), limit), ensure_ascii=False))
    elif name in ("key", "hold_key"):
        words.append(str(tool_input.get("text") or tool_input.get("key") or ""))
        if tool_input.get("repeat") not in (None, 1):
            words.append(f"×{tool_input['repeat']}")
        if tool_input.get("duration") is not None:
            words.append(f"{tool_input['duration']} s")
    elif name == "wait":
        words.append(f"{tool_input.get('duration', '?')} s")
    elif name == "zoom":
        words.append(str(tool_input.get("region", "")))
    elif _point(tool_input.get("coordinate")):
        words.append(_at(tool_input.get("coordinate")))
    if name in _CLICKS or name in ("left_click_drag", "scroll"):
        held = _modifiers(tool_input)
        if held:
            words.append(f"+{held}")
    return _clip(" ".join(w for w in words if w), limit + 20)


def describe_result(event: RunEvent | None, limit: int = 60) -> str:
    if event is None:
        return "(no result)"
    text = str(event.get("text") or "").strip()
    first = text.splitlines()[0] if text else ""
    if event.get("is_error"):
        return "ERROR " + _clip(first or "failed", limit)
    return _clip(first, limit) if first else "ok"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def run_duration(meta: dict[str, Any], events: list[RunEvent] | None = None) -> float | None:
    """Seconds from the run's creation to its last recorded moment."""
    start = parse_time(meta.get("created_at"))
    moments = [parse_time(meta.get("updated_at"))] + [parse_time(e.get("time")) for e in (events or [])[-1:]]
    known = [m for m in moments if m is not None]
    if start is None or not known:
        return None
    return max(0.0, (max(known) - start).total_seconds())


def format_tokens(totals: dict[str, Any]) -> str:
    text = f"{int(totals.get('input_tokens') or 0):,} in / {int(totals.get('output_tokens') or 0):,} out"
    read, written = int(totals.get("cache_read_tokens") or 0), int(totals.get("cache_creation_tokens") or 0)
    if read or written:
        text += f" · cache {read:,} read / {written:,} written"
    return text


# -- image sizes ------------------------------------------------------------------------


def image_size(path: Path) -> tuple[int, int] | None:
    """Width and height of a PNG, JPEG, WebP or GIF file, read from its header."""
    try:
        return image_size_from_header(path.read_bytes())
    except OSError:
        return None


# -- drawing ----------------------------------------------------------------------------


class _Overlay:
    """SVG marks in the screenshot's own pixel space; the SVG is scaled with the image."""

    def __init__(self, width: int, height: int, uid: str):
        self.width, self.height, self.uid = width, height, uid
        self.unit = max(width, height) / 100
        self.parts: list[str] = []
        self.markers: dict[str, str] = {}
        self.captions: list[tuple[str, str]] = []

    def arrowhead(self, colour: str) -> str:
        if colour not in self.markers:
            self.markers[colour] = f"arrow-{self.uid}-{len(self.markers)}"
        return self.markers[colour]

    def label(self, x: float, y: float, text: str, colour: str) -> None:
        size = self.unit * 1.6
        anchor = "end" if x > self.width * 0.8 else "start"
        dx = -self.unit * 1.8 if anchor == "end" else self.unit * 1.8
        ty = max(size, y - self.unit * 1.4)
        self.parts.append(
            f'<text x="{_n(x + dx)}" y="{_n(ty)}" font-size="{_n(size)}" text-anchor="{anchor}" fill="{colour}" '
            f'stroke="#fff" stroke-width="{_n(size * 0.22)}" paint-order="stroke" font-weight="bold">{_e(text)}</text>'
        )

    def caption(self, text: str, colour: str) -> None:
        self.captions.append((text, colour))

    def _caption_boxes(self) -> str:
        """Text boxes stacked at the bottom left, the first action's on top."""
        size = self.unit * 1.5
        pad = size * 0.4
        height = size + 2 * pad
        max_chars = max(4, int((self.width - 2 * self.unit - 2 * pad) / (size * 0.62)))
        boxes = []
        for position, (text, colour) in enumerate(self.captions):
            text = _clip(text, min(max_chars, 100))
            width = min(self.width - 2 * self.unit, len(text) * size * 0.62 + 2 * pad)
            y = self.height - self.unit - (len(self.captions) - position) * (height + self.unit * 0.5)
            boxes.append(
                f'<g class="caption"><rect x="{_n(self.unit)}" y="{_n(y)}" width="{_n(width)}" height="{_n(height)}" '
                f'rx="{_n(pad)}" fill="#000" fill-opacity="0.78" stroke="{colour}" stroke-width="2" vector-effect="non-scaling-stroke"/>'
                f'<text x="{_n(self.unit + pad)}" y="{_n(y + pad + size * 0.85)}" font-size="{_n(size)}" '
                f'font-family="ui-monospace,monospace" fill="#fff" xml:space="preserve">{_e(text)}</text></g>'
            )
        return "".join(boxes)

    def svg(self) -> str:
        defs = "".join(
            f'<marker id="{mid}" viewBox="0 0 10 10" refX="7" refY="5" markerWidth="5" markerHeight="5" '
            f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
            for colour, mid in self.markers.items()
        )
        return (
            f'<svg viewBox="0 0 {self.width} {self.height}" preserveAspectRatio="none" aria-hidden="true">'
            f'{"<defs>" + defs + "</defs>" if defs else ""}{"".join(self.parts)}{self._caption_boxes()}</svg>'
        )

    def draw(self, event: RunEvent, number: int | None) -> None:
        name = action_name(event)
        tool_input = _input_of(event)
        human = event.get("actor") == "human"
        prefix = f"{number}. " if number is not None else ""
        prefix += "human " if human else ""
        prefix_alone = prefix.strip().rstrip(".")
        u = self.unit
        stroke = 'stroke-width="3" vector-effect="non-scaling-stroke" fill="none"'

        if name in _CLICKS:
            button, count = _CLICKS[name]
            colour = HUMAN_COLOUR if human else BUTTON_COLOURS[button]
            point = _point(tool_input.get("coordinate"))
            if point is None:
                return
            x, y = point
            rings = count if isinstance(count, int) else 1
            for ring in range(rings):
                self.parts.append(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(u * (1.2 + 0.7 * ring))}" stroke="{colour}" {stroke}/>')
            arm = u * 2
            self.parts.append(
                f'<path d="M{_n(x - arm)},{_n(y)} H{_n(x + arm)} M{_n(x)},{_n(y - arm)} V{_n(y + arm)}" stroke="{colour}" '
                f'stroke-width="1.5" vector-effect="non-scaling-stroke"/>'
            )
            words = []
            if count == 2:
                words.append("double")
            elif count == 3:
                words.append("triple")
            elif isinstance(count, str):
                words.append(f"mouse {count}")
            if button != "left":
                words.append(button)
            if _modifiers(tool_input):
                words.append(f"+{_modifiers(tool_input)}")
            text = (prefix + " ".join(words)).strip() if words else prefix_alone
            if text:
                self.label(x, y, text, colour)
        elif name == "left_click_drag":
            colour = HUMAN_COLOUR if human else BUTTON_COLOURS["left"]
            end = _point(tool_input.get("coordinate"))
            start = _point(tool_input.get("start_coordinate"))
            path = [p for p in (_point(v) for v in tool_input.get("path") or []) if p]
            points = ([start] if start else []) + path + ([end] if end else [])
            if len(points) < 2:
                return
            coords = " ".join(f"{_n(x)},{_n(y)}" for x, y in points)
            self.parts.append(
                f'<circle cx="{_n(points[0][0])}" cy="{_n(points[0][1])}" r="{_n(u * 0.6)}" fill="{colour}"/>'
                f'<polyline points="{coords}" stroke="{colour}" {stroke} stroke-linejoin="round" '
                f'marker-end="url(#{self.arrowhead(colour)})"/>'
            )
            held = _modifiers(tool_input)
            self.label(points[-1][0], points[-1][1], (prefix + "drag" + (f" +{held}" if held else "")).strip(), colour)
        elif name == "scroll":
            colour = HUMAN_COLOUR if human else SCROLL_COLOUR
            point = _point(tool_input.get("coordinate"))
            direction = str(tool_input.get("scroll_direction", ""))
            if point is None or direction not in _SCROLL_VECTORS:
                return
            amount = tool_input.get("scroll_amount", 3)
            amount = amount if isinstance(amount, (int, float)) and not isinstance(amount, bool) else 3
            dx, dy = _SCROLL_VECTORS[direction]
            length = u * (3 + 1.2 * min(max(amount, 1), 10))
            x, y = point
            self.parts.append(
                f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(u * 0.5)}" fill="{colour}"/>'
                f'<line x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x + dx * length)}" y2="{_n(y + dy * length)}" '
                f'stroke="{colour}" {stroke} marker-end="url(#{self.arrowhead(colour)})"/>'
            )
            self.label(x, y, f"{prefix}scroll {direction} {_n(amount)}", colour)
        elif name == "zoom":
            colour = HUMAN_COLOUR if human else ZOOM_COLOUR
            region = tool_input.get("region")
            if not (isinstance(region, (list, tuple)) and len(region) == 4 and all(_point(region[i : i + 2]) for i in (0, 2))):
                return
            x0, y0, x1, y1 = (float(v) for v in region)
            self.parts.append(
                f'<rect x="{_n(min(x0, x1))}" y="{_n(min(y0, y1))}" width="{_n(abs(x1 - x0))}" height="{_n(abs(y1 - y0))}" '
                f'stroke="{colour}" {stroke} stroke-dasharray="8 5"/>'
            )
            self.label(min(x0, x1), min(y0, y1), f"{prefix}zoom", colour)
        elif name == "mouse_move":
            colour = HUMAN_COLOUR if human else MOVE_COLOUR
            point = _point(tool_input.get("coordinate"))
            if point is None:
                return
            self.parts.append(
                f'<circle cx="{_n(point[0])}" cy="{_n(point[1])}" r="{_n(u * 0.5)}" fill="{colour}" stroke="#000" '
                f'stroke-width="1" vector-effect="non-scaling-stroke"/>'
            )
            if prefix_alone:
                self.label(point[0], point[1], prefix_alone, colour)
        elif name in ("type", "key", "hold_key", "wait"):
            colour = HUMAN_COLOUR if human else "#ffffff"
            self.caption(prefix + describe_action(event, limit=100), colour)


# -- the page ---------------------------------------------------------------------------


@dataclass
class _Group:
    step: int | None
    events: list[RunEvent] = field(default_factory=list)


@dataclass
class _Figure:
    image: str | dict[str, int] | None  # a RunEvent's image: a path for an action's screenshot
    human: bool
    actions: list[RunEvent] = field(default_factory=list)


class _Page:
    def __init__(self, run: Run):
        self.folder = Path(run.folder)
        self.meta = run.meta
        self.events = run.events()
        self.results = {e.get("tool_use_id"): e for e in self.events if e.get("type") == "result" and e.get("tool_use_id")}
        actions = [e for e in self.events if e.get("type") == "action"]
        self.acted_ids = {e.get("tool_use_id") for e in actions if e.get("tool_use_id")}
        self.decision_images = {e.get("image") for e in actions if e.get("image")}
        started = next((e for e in self.events if e.get("type") == "run_started"), RunEvent())
        self.default_size = self._size_of(started.get("image")) or self._size_of(started.get("screen"))
        self.sizes: dict[str, tuple[int, int] | None] = {}
        self.figures = 0
        self.anchored: set[int] = set()
        self.recorded: tuple[str, float] | None = None  # the run's video and its start, once render() looked

    @staticmethod
    def _size_of(value: Any) -> tuple[int, int] | None:
        if isinstance(value, dict) and isinstance(value.get("width"), int) and isinstance(value.get("height"), int):
            return value["width"], value["height"]
        return None

    def image(self, path: Any) -> tuple[str, tuple[int, int]] | None:
        """A screenshot path safe to put in the page and its size, if the file is there."""
        if not isinstance(path, str) or not _SAFE_IMAGE.match(path):
            return None
        if path not in self.sizes:
            file = self.folder / path
            self.sizes[path] = (image_size(file) or self.default_size) if file.is_file() else None
        size = self.sizes[path]
        return (path, size) if size else None

    # -- grouping -------------------------------------------------------------------------

    def groups(self) -> list[_Group]:
        groups: list[_Group] = []
        for event in self.events:
            if event.get("type") in ("run_started", "run_finished"):
                continue
            step = event.get("step") if isinstance(event.get("step"), int) and not isinstance(event.get("step"), bool) else None
            if groups and groups[-1].step == step:
                groups[-1].events.append(event)
            else:
                groups.append(_Group(step, [event]))
        return groups

    # -- rendering ------------------------------------------------------------------------

    def video(self) -> tuple[str, float] | None:
        """The run's recording in the run folder (its file name) and its start, if it is there."""
        recording = self.meta.get("recording")
        if not isinstance(recording, dict) or not isinstance(recording.get("file"), str):
            return None
        name, started = recording["file"], recording.get("started_at")
        if not _SAFE_VIDEO.match(name) or not (self.folder / name).is_file() or not isinstance(started, (int, float)):
            return None
        return name, float(started)

    def player(self, name: str) -> str:
        """The video, fixed beside the steps; each step links to its moment in it."""
        return (f'<aside class="recording"><video src="{_e(name)}" controls preload="metadata" muted></video>'
                f'<p>The screen during the run (<a href="{_e(name)}">{_e(name)}</a>); each step links to its '
                "moment in it.</p></aside>")

    def moment(self, events: list[RunEvent]) -> str:
        """A link to the step's first moment in the video ("▶ 1:05"), when the run was recorded."""
        if self.recorded is None:
            return ""
        times = [t for t in (parse_time(e.get("time")) for e in events) if t]
        if not times:
            return ""
        name, started = self.recorded
        offset = max(0.0, times[0].timestamp() - started)
        return f' <a class="moment" href="{_e(name)}#t={offset:.1f}">▶ {int(offset) // 60}:{int(offset) % 60:02d}</a>'

    def render(self) -> str:
        groups = self.groups()
        title = f"cubicle run {self.meta.get('id', '')}"
        self.recorded = self.video()
        body = ([self.player(self.recorded[0])] if self.recorded else []) + [self.header(groups)]
        body += [self.group(g) for g in groups]
        finished = [e for e in self.events if e.get("type") == "run_finished"]
        if finished:
            last = finished[-1]
            body.append(
                f'<footer class="end {_e(last.get("status", ""))}">Run {_e(last.get("status", "ended"))}'
                f'{": " + _e(last.get("reason")) if last.get("reason") else ""} at {_e(_clock(last.get("time")))}</footer>'
            )
        return (
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"script-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'\">"
            f"<title>{_e(title)}</title><style>\n{_css()}</style></head>\n"
            + ('<body class="recorded">\n' if self.recorded else "<body>\n") + "\n".join(body) + "\n</body></html>\n"
        )

    def header(self, groups: list[_Group]) -> str:
        meta, totals = self.meta, self.meta.get("totals") or {}
        status = str(meta.get("status", "?"))
        started = next((e for e in self.events if e.get("type") == "run_started"), RunEvent())
        rows = [
            ("model", f"{meta.get('model', '?')} · {meta.get('tool_version', '?')}"),
            ("desktop", meta.get("desktop") or "—"),
            ("started", _when(meta.get("created_at"))),
            ("duration", format_duration(run_duration(meta, self.events))),
            ("steps", totals.get("steps", 0)),
            ("tokens", format_tokens(totals)),
            ("cost", f"${float(totals.get('cost_usd') or 0):.4f}"),
        ]
        screen, image = self._size_of(started.get("screen")), self._size_of(started.get("image"))
        if screen:
            rows.append(("screen", f"{screen[0]}×{screen[1]}" + (f", screenshots {image[0]}×{image[1]}" if image and image != screen else "")))
        if meta.get("stop_reason"):
            rows.append(("stop reason", meta["stop_reason"]))
        details = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
        failed = {g.step for g in groups for e in g.events if e.get("type") == "result" and e.get("is_error")}
        index = []
        seen: set[int] = set()
        for group in groups:
            if group.step is None or group.step in seen:
                continue
            seen.add(group.step)
            css = ' class="err"' if group.step in failed else ""
            index.append(f'<a href="#step-{group.step}"{css}>{group.step}</a>')
        nav = f'<nav class="index">{"".join(index)}</nav>' if index else ""
        return (
            f'<header class="run"><p class="id">{_e(meta.get("id", ""))} <span class="status {_e(status)}">{_e(status)}</span></p>'
            f'<h1 class="task">{_e(meta.get("task", ""))}</h1><dl>{details}</dl>{nav}</header>'
        )

    def group(self, group: _Group) -> str:
        blocks = self.blocks(group.events)
        if group.step is None:
            return f'<section class="interlude">{"".join(blocks)}</section>'
        anchor, title = "", f"Step {group.step}"
        if group.step not in self.anchored:
            self.anchored.add(group.step)
            anchor = f' id="step-{group.step}"'
        else:
            title += " (continued)"
        failed = any(e.get("type") == "result" and e.get("is_error") for e in group.events)
        return (
            f'<section class="step{" failed" if failed else ""}"{anchor}><h2>{title}'
            f'<span class="stats">{self.stats(group.events)}{self.moment(group.events)}</span></h2>'
            f'{"".join(blocks)}</section>'
        )

    def stats(self, events: list[RunEvent]) -> str:
        parts = []
        times = [t for t in (parse_time(e.get("time")) for e in events) if t]
        if times:
            parts.append(_clock(min(times).isoformat()))
            if len(times) > 1:
                parts.append(f"step {format_duration((max(times) - min(times)).total_seconds())}")
        for response in (e for e in events if e.get("type") == "response"):
            if isinstance(response.get("duration_ms"), (int, float)):
                parts.append(f"model {format_duration(response['duration_ms'] / 1000)}")
            usage = response.get("usage") if isinstance(response.get("usage"), dict) else {}
            if usage:
                parts.append(format_tokens(usage) + " tokens")
            if isinstance(response.get("cost_usd"), (int, float)):
                parts.append(f"${response['cost_usd']:.4f}")
        for request in (e for e in events if e.get("type") == "request"):
            images = request.get("images")
            sent = [f"{images} image{'' if images == 1 else 's'}" if isinstance(images, int) else ""]
            if isinstance(request.get("bytes"), int):
                sent.append(f"{request['bytes'] / 1024:.0f} KiB sent")
            parts += [s for s in sent if s]
        return " · ".join(_e(p) for p in parts)

    def blocks(self, events: list[RunEvent]) -> list[str]:
        out: list[str | _Figure] = []
        for event in events:
            kind = event.get("type")
            if kind == "request":
                continue
            if kind == "response":
                out.append(self.response(event))
            elif kind == "action":
                human = event.get("actor") == "human"
                image = event.get("image") if (event.get("tool") or "computer") == "computer" else None
                last = out[-1] if out else None
                if isinstance(last, _Figure) and image and last.image == image and last.human == human:
                    last.actions.append(event)
                else:
                    out.append(_Figure(image, human, [event]))
            elif kind == "result":
                if event.get("tool_use_id") not in self.acted_ids:
                    out.append(f'<div class="orphan">{self.result(event)}</div>')
            elif kind == "retry":
                out.append(
                    f'<div class="retry">Model API error, retrying in {_e(_n(event.get("wait_s") or 0))} s: '
                    f'{_e(event.get("error", ""))}</div>'
                )
            elif kind == "message":
                who = "human" if event.get("actor", "human") == "human" else str(event.get("actor"))
                out.append(f'<div class="message human"><span class="who">{_e(who)}</span>{_e(event.get("text", ""))}</div>')
            else:
                body = json.dumps({k: v for k, v in event.items() if k not in ("seq", "time", "type")}, ensure_ascii=False, indent=1)
                out.append(f'<details class="other"><summary>{_e(kind)}</summary><pre>{_e(body)}</pre></details>')
        return [self.figure(item) if isinstance(item, _Figure) else item for item in out]

    def response(self, event: RunEvent) -> str:
        parts = []
        for block in event.get("content") or []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and str(block.get("text", "")).strip():
                parts.append(f'<div class="say">{_e(block["text"])}</div>')
            elif kind in ("thinking", "redacted_thinking"):
                parts.append(f'<details class="thinking"><summary>thinking</summary><pre>{_e(block.get("thinking", ""))}</pre></details>')
            elif kind == "tool_use" and block.get("id") not in self.acted_ids:
                text = json.dumps(block.get("input"), ensure_ascii=False)
                parts.append(f'<div class="request">asked for <code>{_e(block.get("name", "?"))}</code> <code>{_e(_clip(text, 300))}</code> (not carried out)</div>')
        if event.get("stop_reason") not in (None, "tool_use"):
            parts.append(f'<div class="stop">stop reason: {_e(event["stop_reason"])}</div>')
        return "".join(parts)

    def figure(self, figure: _Figure) -> str:
        numbered = len(figure.actions) > 1
        classes = "figure human" if figure.human else "figure"
        picture = ""
        shot = self.image(figure.image)
        if shot:
            path, (width, height) = shot
            self.figures += 1
            overlay = _Overlay(width, height, str(self.figures))
            for number, action in enumerate(figure.actions, 1):
                overlay.draw(action, number if numbered else None)
            picture = (
                f'<div class="shot" style="max-width:{width}px"><a href="{_e(path)}">'
                f'<img src="{_e(path)}" width="{width}" height="{height}" loading="lazy" decoding="async" '
                f'alt="screenshot the action was decided on"></a>{overlay.svg()}</div>'
            )
        elif figure.image:
            picture = f'<p class="missing">screenshot {_e(figure.image)} is missing</p>'
        items = "".join(self.action(a, n if numbered else None) for n, a in enumerate(figure.actions, 1))
        badge = '<span class="who">human</span>' if figure.human else ""
        return f'<div class="{classes}">{badge}{picture}<ol class="actions">{items}</ol></div>'

    def action(self, event: RunEvent, number: int | None) -> str:
        tool = event.get("tool") or "computer"
        tool_input = _input_of(event)
        result = self.results.get(event.get("tool_use_id")) if event.get("tool_use_id") else None
        error = bool(result and result.get("is_error"))
        human = event.get("actor") == "human"
        head = f'<span class="num">{number}</span>' if number is not None else ""
        if human:
            head += '<span class="who">human</span>'
        if tool == "bash":
            command = "(restart the shell)" if tool_input.get("restart") else tool_input.get("command", "")
            body = f'<pre class="cmd">$ {_e(command)}</pre>'
        elif tool == _EDITOR:
            body = f'<code>{_e(describe_action(event, limit=200))}</code>'
            extra = {k: v for k, v in tool_input.items() if k not in ("command", "path")}
            if extra:
                body += "".join(f'<pre class="cmd"><b>{_e(k)}</b> {_e(v if isinstance(v, str) else json.dumps(v))}</pre>' for k, v in extra.items())
        else:
            body = f'<code>{_e(describe_action(event, limit=200))}</code>'
        classes = " ".join(c for c in ("act", "human" if human else "", "err" if error else "") if c)
        return f'<li class="{classes}">{head}{body}{self.result(result) if result else ""}</li>'

    def result(self, event: RunEvent) -> str:
        error = bool(event.get("is_error"))
        text = str(event.get("text") or "")
        timing = ""
        if isinstance(event.get("duration_ms"), (int, float)):
            timing = f'<span class="ms">{_e(format_duration(event["duration_ms"] / 1000))}</span>'
        if not text.strip():
            shown = f'<span class="ok">{"error" if error else "ok"}</span>'
        elif len(text) > _LONG_TEXT or text.count("\n") > 25:
            shown = f'<details><summary>{_e(_clip(text.strip().splitlines()[0], 120))} ({len(text):,} chars)</summary><pre>{_e(text)}</pre></details>'
        else:
            shown = f"<pre>{_e(text)}</pre>"
        picture = ""
        shot = self.image(event.get("image"))
        if shot:
            path, (width, height) = shot
            if path in self.decision_images:
                picture = f'<a class="shotlink" href="{_e(path)}">screenshot</a>'
            else:
                picture = (
                    f'<a href="{_e(path)}"><img class="thumb" src="{_e(path)}" width="{width}" height="{height}" '
                    f'loading="lazy" decoding="async" alt="returned screenshot"></a>'
                )
        return f'<div class="result{" error" if error else ""}">{shown}{timing}{picture}</div>'


def _clock(text: Any) -> str:
    moment = parse_time(text)
    return moment.strftime("%H:%M:%S") if moment else ""


def _when(text: Any) -> str:
    moment = parse_time(text)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(moment, datetime) else "?"


@functools.cache
def _css() -> str:
    return CSS_FILE.read_text(encoding="utf-8")


def render_replay(run: Run) -> str:
    """The run as one HTML page; image paths are relative to the run folder."""
    return _Page(run).render()


def write_replay(run: Run) -> Path:
    """Write replay.html into the run folder and return its path."""
    path = Path(run.folder) / REPLAY_FILE
    write_atomic(path, render_replay(run).encode("utf-8"))
    return path
