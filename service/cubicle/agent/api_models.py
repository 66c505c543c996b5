"""The worker API's bodies: what its routes take and what they answer, as its schema shows them.

Requests refuse unknown fields; JSON types are taken as they are by the shared rule
(cubicle.web.checks): "5" is not a number, true is not one either, 566.0 is the integer 566.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from .models import TOOL_VERSIONS


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRun(_Request):
    task: str = Field(min_length=1, max_length=100_000, description="what the agent is to do",
                      json_schema_extra={"pattern": r"\S"})
    desktop: str | None = Field(None, description='the desktop\'s URL (default $CUBICLE_DESKTOP_URL), or "new": a '
                                'desktop of the fleet (CUBICLE_FLEET_URL), taken for this run and deleted at its end')
    keep_desktop: bool = Field(False, description='with desktop "new": keep the desktop after the run (the fleet\'s '
                               "TTL still applies)")
    desktop_token: str | None = Field(None, description="the desktop's token (default $CUBICLE_TOKEN); never shown")
    model: str | None = None
    tool_version: Literal[TOOL_VERSIONS] | None = None  # type: ignore[valid-type]
    max_steps: int = Field(50, ge=1, le=10_000)
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0)

    @field_validator("task")
    @classmethod
    def _not_blank(cls, task: str) -> str:
        if not task.strip():
            raise PydanticCustomError("blank", "must not be empty")
        return task


class Message(_Request):
    text: str = Field(min_length=1, max_length=20_000)


class Decision(_Request):
    approve: bool
    note: str = Field("", max_length=2_000)


class Totals(BaseModel):
    steps: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: float = 0.0


class RunView(BaseModel):
    """A run as clients see it: its run.json, and how it stands in this worker."""

    model_config = ConfigDict(extra="allow")

    id: str
    task: str = ""
    model: str = ""
    tool_version: str = ""
    desktop: str = ""
    created_at: str | None = None
    updated_at: str | None = None
    status: str = Field(description="running, paused, finished, failed, stopped or interrupted")
    stop_reason: str | None = None
    totals: Totals = Field(default_factory=Totals)
    active: bool = Field(description="carried out by this worker now")
    pause_requested: bool | None = None
    stop_requested: bool | None = None
    taken_over: bool | None = None
    recorded_status: str | None = Field(None, description="for an interrupted run: the status its file holds")


class RunDetail(RunView):
    pending: list[dict[str, Any]] = Field(default_factory=list, description="actions waiting for approval")
    events: list[dict[str, Any]] | None = Field(None, description="the run's log (unless events=false)")


class HandedBack(RunView):
    human_actions: list[str] = Field(description="what the human did, as the model is told")


class RunList(BaseModel):
    runs: list[RunView]


class Queued(BaseModel):
    id: str
    queued: bool


class DecisionMade(BaseModel):
    id: str
    approval_id: str
    approved: bool
    note: str


class Health(BaseModel):
    status: Literal["ok"]
