"""The worker API's bodies: what its routes take and what they answer, as its schema shows them.

Requests refuse unknown fields; JSON types are taken as they are by the shared rule
(cubicle.web.checks): "5" is not a number, true is not one either, 566.0 is the integer 566.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from cubicle.actions import WHITESPACE

from .models import MODEL_ID, TOOL_VERSIONS

# What the run manager takes as a desktop: "new" (a desktop of the fleet), or an http(s) URL
# with a host (a name, an IPv4 address or an IPv6 one in brackets), an optional port and path;
# "" stands for the default. Checked here, so that the schema can say exactly what is taken.
_HEX = "[0-9A-Fa-f]{1,4}"
_IPV6 = "|".join([f"(?:{_HEX}:){{7}}{_HEX}", f"(?:{_HEX}:){{1,7}}:", f"(?:{_HEX}:){{1,6}}:{_HEX}"]
                 + [f"(?:{_HEX}:){{1,{n}}}(?::{_HEX}){{1,{7 - n}}}" for n in range(5, 0, -1)]
                 + [f":(?:(?::{_HEX}){{1,7}}|:)"])
_PORT = "(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
DESKTOP = (rf"^(?:new|[hH][tT][tT][pP][sS]?://(?:[A-Za-z0-9._~-]+|\[(?:{_IPV6})\])(?::{_PORT})?"
           r"(?:/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?)?$")
# A model id, around which whitespace is ignored; "" stands for the default model.
MODEL = f"^(?:[{WHITESPACE}]*{re.sub(r'[?]P<[a-z]+>', '?:', MODEL_ID)}[{WHITESPACE}]*)?$"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewRun(_Request):
    # A desktop "new" comes with a token of its own (else 422).
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"properties": {"desktop": {"const": "new"}}, "required": ["desktop"]},
        "then": {"properties": {"desktop_token": {"type": "null"}}},
    })

    task: str = Field(min_length=1, max_length=100_000, description="what the agent is to do (not blank)",
                      json_schema_extra={"pattern": f"[^{WHITESPACE}]"})
    desktop: str | None = Field(None, json_schema_extra={"pattern": DESKTOP}, description=(
        'the desktop\'s URL (default $CUBICLE_DESKTOP_URL): http:// or https://, a host, an optional port and path; or '
        '"new": a desktop of the fleet (CUBICLE_FLEET_URL), taken for this run and deleted at its end (503 '
        "fleet_unconfigured on a worker without a fleet). A URL other than the default needs desktop_token (else 422)"))
    keep_desktop: bool = Field(False, description='with desktop "new": keep the desktop after the run (the fleet\'s '
                               "TTL still applies)")
    desktop_token: str | None = Field(None, description="the desktop's token (default $CUBICLE_TOKEN); never shown")
    model: str | None = Field(None, json_schema_extra={"pattern": MODEL},
                              description="a Claude model id such as claude-sonnet-4-5 or claude-opus-5 (default $CUBICLE_MODEL)")
    tool_version: Literal[TOOL_VERSIONS] | None = None  # type: ignore[valid-type]
    browser: bool = Field(False, description="also give the model the browser toolset, on the desktop's Chromium "
                          "(toolset models only)")
    record: bool = Field(False, description="record the desktop's screen for the whole run (POST /recording/start on "
                         "the desktop): the video is kept in the run folder and played beside the steps in its replay")
    max_steps: int = Field(50, ge=1, le=10_000)
    max_tokens: int | None = Field(None, ge=1)
    max_cost: float | None = Field(None, gt=0)

    @field_validator("task")
    @classmethod
    def _not_blank(cls, task: str) -> str:
        if not task.strip():
            raise PydanticCustomError("blank", "must not be empty")
        return task

    @field_validator("desktop")
    @classmethod
    def _url_or_new(cls, desktop: str | None) -> str | None:
        if desktop is not None and not re.fullmatch(DESKTOP, desktop):
            raise PydanticCustomError("desktop", 'must be "new" or an http:// or https:// URL: a host (a name, an IPv4 '
                                      "address or [an IPv6 one]), an optional port and path")
        return desktop


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


class FleetDesktopList(BaseModel):
    """The fleet's answer to GET /desktops, as it is (without tokens)."""

    desktops: list[dict[str, Any]]


class Health(BaseModel):
    status: Literal["ok"]
