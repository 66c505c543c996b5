"""Where desktops run. One interface (`Backend`), two engines: docker.py and kubernetes.py.

A desktop is two containers of the desktop image sharing one network and IPC namespace: the
session (X, apps, VNC, the runner) as the desktop user, and the API server as a user of its
own, which alone knows the token's digest. A backend starts and removes such pairs, says how
to reach a desktop's server, tells whether it still lives, and keeps a small record (`meta`)
with each desktop so that a restarted fleet finds every desktop it owns and what it knew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

DESKTOP_PORT = 8000
OSWORLD_PORT = 5000  # OSWorld's in-desktop protocol, on desktops made with osworld: true
SESSION_UID = 1000
SERVER_UID = 1001

State = Literal["starting", "running", "failed", "gone"]


@dataclass(frozen=True)
class Limits:
    """Per desktop (both containers together): CPUs, memory in MiB, processes."""

    cpus: float = 2.0
    memory_mib: int = 2048
    pids: int = 1024
    shm_mib: int = 1024  # /dev/shm, which Firefox and Chromium need far beyond Docker's 64 MB


@dataclass(frozen=True)
class DesktopSpec:
    ref: str  # the backend's name for it: a container name prefix, a pod name
    image: str
    width: int
    height: int
    token_digest: str  # of the user's token
    operator_digest: str  # of the fleet's own way in (see fleet/auth.py)
    limits: Limits
    meta: dict[str, Any] = field(default_factory=dict)
    osworld: bool = False  # the session also serves OSWorld's protocol, inside the desktop's network


def session_environment(spec: DesktopSpec) -> dict[str, str]:
    """The session container's settings: its screen, and OSWorld's protocol when asked for, on
    every address of the desktop's own network namespace (which no port is published from)."""
    environment = {"WIDTH": str(spec.width), "HEIGHT": str(spec.height)}
    if spec.osworld:
        environment.update(CUBICLE_OSWORLD="1", CUBICLE_OSWORLD_HOST="0.0.0.0", CUBICLE_OSWORLD_PORT=str(OSWORLD_PORT))
    return environment


def osworld_address(address: str) -> str:
    """host:port of a desktop's OSWorld server, from its server's base URL (http://host:8000)."""
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    return f"{host}:{OSWORLD_PORT}"


@dataclass
class Owned:
    """A desktop the backend found with this fleet's owner label."""

    ref: str
    state: State
    meta: dict[str, Any]
    address: str | None


class BackendError(Exception):
    """The engine refused or could not be reached; the message says which and why."""


class Backend(Protocol):
    name: str

    def create(self, spec: DesktopSpec) -> None:
        """Start the desktop (returns once the engine accepted it; it becomes healthy later)."""

    def address(self, ref: str) -> str | None:
        """The base URL of the desktop's server, once it has one."""

    def state(self, ref: str) -> State: ...

    def delete(self, ref: str) -> None:
        """Remove the desktop and everything made for it; a desktop already gone is no error."""

    def save_meta(self, ref: str, meta: dict[str, Any]) -> None: ...

    def list_owned(self) -> list[Owned]: ...

    def close(self) -> None: ...
