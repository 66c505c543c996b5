"""The events of a run's log (events.jsonl), as one typed shape.

Every event has `seq`, `time` and `type`; the other fields depend on the type (runs.py's
docstring lists which type carries which). One TypedDict with every field optional keeps the
readers simple (`event.get("image")` on any event) while the type checker still knows each
field's type. Other fields and types may appear (a newer writer): readers ignore them.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

EventType = Literal[
    "run_started", "run_resumed", "request", "response", "thinking", "action", "result", "retry", "message",
    "paused", "resumed", "taken_over", "handed_back", "approval_requested", "approval_decided", "run_finished",
]
Actor = Literal["model", "human"]


class Totals(TypedDict):
    steps: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    cost_usd: float


class RunEvent(TypedDict, total=False):
    seq: int
    time: str  # ISO 8601 UTC
    type: str  # an EventType, or a newer writer's
    step: int
    actor: Actor
    # run_started, run_resumed
    task: str
    model: str
    tool_version: str
    desktop: str
    screen: dict[str, int]
    browser: bool
    not_carried_out: int
    # request, response
    messages: int
    images: int
    pruned: int
    bytes: int
    stop_reason: str | None
    content: list[dict[str, Any]]
    usage: dict[str, int]
    cost_usd: float
    duration_ms: float
    # action, result
    tool_use_id: str
    tool: str
    name: str | None
    input: dict[str, Any]
    # action, result, handed_back: a screenshot's path in the run folder (images/0003-01.png);
    # run_started: the size of the screenshots the model gets ({"width", "height"})
    image: str | dict[str, int] | None
    is_error: bool
    text: str
    settle_ms: float | None
    # retry, message, approvals, hand back, the end
    error: str
    wait_s: float
    approval_id: str
    approved: bool
    note: str
    reason: str
    actions: list[str]
    status: str
    totals: Totals
