"""Desktops the worker takes from a fleet for one run (`"desktop": "new"`) and gives back when
the run ends, unless asked to keep them.

The fleet is CUBICLE_FLEET_URL with CUBICLE_FLEET_TOKEN; in a cluster without DNS, a Service
named cubicle-fleet is found by the variables Kubernetes gives every Pod
(CUBICLE_FLEET_SERVICE_HOST and _PORT). The desktop's token lives only in the worker's memory
for the run, like any desktop token a run is given.
"""

from __future__ import annotations

import logging
import os

from cubicle.client import CubicleError
from cubicle.fleet.client import FleetClient
from cubicle.fleet.models import DesktopView
from cubicle.web import ApiError

log = logging.getLogger("cubicle.worker")

NEW = "new"


def fleet_url() -> str | None:
    url = os.environ.get("CUBICLE_FLEET_URL", "").strip()
    host, port = os.environ.get("CUBICLE_FLEET_SERVICE_HOST"), os.environ.get("CUBICLE_FLEET_SERVICE_PORT")
    if not url and host and port:
        url = f"http://{host}:{port}"
    return url or None


class FleetDesktops:
    def __init__(self, url: str | None, token: str | None):
        self.url = url
        self.token = token

    @classmethod
    def from_environment(cls) -> FleetDesktops:
        return cls(fleet_url(), os.environ.get("CUBICLE_FLEET_TOKEN", "").strip() or None)

    def claim(self, labels: dict[str, str]) -> DesktopView:
        """A new desktop for a run (its token is on the answer); refusals say what to do."""
        if not self.url or not self.token:
            raise ApiError(503, "fleet_unconfigured", 'desktop "new" needs a fleet: start the worker with '
                           "CUBICLE_FLEET_URL and CUBICLE_FLEET_TOKEN set (see the README).")
        try:
            with FleetClient(self.url, self.token) as fleet:
                return fleet.create(labels=labels, idle_timeout_s=None)
        except CubicleError as error:
            status = error.status if error.status in (429, 503) else 502
            raise ApiError(status, "fleet_refused", f"The fleet at {self.url} gave no desktop: {error.status} "
                           f"{error.code}: {error.message}") from None
        except Exception as error:  # unreachable: httpx's errors, and anything else on the way
            raise ApiError(502, "fleet_unreachable", f"The fleet at {self.url} did not answer "
                           f"({type(error).__name__}: {error}).") from None

    def list(self) -> list[DesktopView]:
        """The fleet's desktops (without tokens: a list never has them)."""
        if not self.url or not self.token:
            raise ApiError(503, "fleet_unconfigured", "This worker has no fleet: start it with CUBICLE_FLEET_URL and "
                           "CUBICLE_FLEET_TOKEN set (see the README).")
        try:
            with FleetClient(self.url, self.token, timeout=30) as fleet:
                return fleet.list()
        except CubicleError as error:
            raise ApiError(502, "fleet_refused", f"The fleet at {self.url} answered {error.status} {error.code}: "
                           f"{error.message}") from None
        except Exception as error:
            raise ApiError(502, "fleet_unreachable", f"The fleet at {self.url} did not answer "
                           f"({type(error).__name__}: {error}).") from None

    def vnc_url(self, desktop_id: str) -> str:
        """The fleet's VNC WebSocket of one desktop (the fleet's token opens every desktop)."""
        base = (self.url or "").rstrip("/")
        return ("wss://" if base.startswith("https://") else "ws://") + base.split("://", 1)[1] + f"/desktops/{desktop_id}/vnc"

    def release(self, desktop_id: str) -> None:
        if not self.url or not self.token:
            return
        try:
            with FleetClient(self.url, self.token) as fleet:
                fleet.delete(desktop_id)
        except Exception as error:  # noqa: BLE001 - the fleet's TTL reaps it anyway
            log.warning("desktop %s of the fleet could not be deleted (%s); its TTL will reap it", desktop_id, error)
