"""The fleet API's bodies. Requests refuse unknown fields; JSON types are taken as they are
(the shared rule of cubicle.web.checks)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

LABEL_KEY = r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$"
MAX_LABELS = 32
Status = Literal["starting", "running", "failed"]
LabelKey = Annotated[str, StringConstraints(pattern=LABEL_KEY)]
LabelValue = Annotated[str, StringConstraints(max_length=256)]


class NewDesktop(BaseModel):
    model_config = ConfigDict(extra="forbid")

    width: int = Field(1280, ge=200, le=7680, description="screen width in pixels")
    height: int = Field(800, ge=200, le=4320, description="screen height in pixels")
    ttl_s: int = Field(3600, ge=10, description="seconds until the desktop is deleted, whatever happens; at most the "
                       "fleet's --max-ttl (default one day)")
    idle_timeout_s: int | None = Field(600, ge=10, description="deleted after this long without a request through the "
                                       "fleet (none: only the TTL); at most the TTL")
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS,
                                               description=f"up to {MAX_LABELS} key/value pairs to find it by "
                                               "(keys: letters, digits, . _ / -; values up to 256 characters)")
    office: bool | None = Field(None, description="with LibreOffice (the image built with WITH_OFFICE=1) or without; "
                                "default: the fleet's default image. Refused if the fleet has no such image.")
    wait: bool = Field(True, description="answer once the desktop is ready (true) or at once, while it starts (false)")
    osworld: bool = Field(False, description=(
        "also serve OSWorld's in-desktop protocol (for OSWorld's DesktopEnv: cubicle.osworld.provider) on port 5000 of "
        "the desktop's private network, at the address `osworld` of the answer. It takes no credentials and runs any "
        "code it is sent as the desktop user: it is never reachable through the fleet, only from the fleet's own host "
        "(Docker) or cluster (Kubernetes). Never from the warm pool."))


class KeepAlive(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_s: int | None = Field(None, ge=10, description="a new TTL from now; default: the TTL stays, the idle timer restarts")


class DesktopUrls(BaseModel):
    api: str = Field(description="the desktop's API: give it to DesktopClient with the desktop's token")
    view: str = Field(description="watch it live in a browser: add #token=<the token>")
    vnc: str = Field(description="the VNC WebSocket (token in the first message)")


class DesktopView(BaseModel):
    id: str
    status: Status = Field(description="starting, running (ready for requests), failed (its container or pod died; "
                           "it is cleaned up and the record goes after a while)")
    created_at: str
    expires_at: str
    idle_timeout_s: int | None
    last_active_at: str
    width: int
    height: int
    labels: dict[str, str]
    backend: str
    reason: str | None = Field(None, description="why it failed")
    urls: DesktopUrls
    token: str | None = Field(None, description="the desktop's own token: shown once, in the answer to its creation")
    osworld: str | None = Field(None, description=(
        "desktops made with osworld: true, once running: host:port of their OSWorld server on the desktop's private "
        "network (no credentials: reachable from the fleet's host or cluster only)"))


class DesktopList(BaseModel):
    desktops: list[DesktopView]


class Health(BaseModel):
    status: Literal["ok"]
    backend: str
    desktops: int
    pooled: int
