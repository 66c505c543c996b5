"""Who gets in through the fleet.

- The fleet's own routes (create, list, get, delete, keepalive, reset, its schema) take the
  fleet's token (CUBICLE_FLEET_TOKEN).
- Everything under /desktops/{id}/... is that desktop's own API, proxied: it takes that
  desktop's token (never another desktop's), or the fleet's token, which opens every desktop
  (the operator's key: the console's live view of any desktop). The desktop's public pages
  (/health, /view, /docs and their static files) need none, as on the desktop itself.

Upstream, the fleet always speaks to a desktop with its operator token, HMAC(fleet token,
desktop ref), whose digest the desktop got at creation. So the fleet keeps no token of any
desktop, and a restarted fleet, given the same fleet token, opens every desktop it adopts.
"""

from __future__ import annotations

import re

from cubicle.web import AccessRules, token_matches
from cubicle.web.asgi import Scope
from cubicle.web.auth import derived_secret

from .manager import FleetManager

PROXIED = re.compile(r"^/desktops/(?P<id>[A-Za-z0-9_-]+)/(?P<rest>.+)$")
MANAGEMENT = frozenset({"keepalive", "reset"})  # /desktops/{id}/<these> are the fleet's own routes
PUBLIC_ON_DESKTOP = re.compile(r"^(health|view|docs)$|^(view|docs/static)/")
UNAUTHORIZED = ("Missing or wrong token. The fleet's routes take 'Authorization: Bearer <CUBICLE_FLEET_TOKEN>'; "
                "/desktops/{id}/... take that desktop's token (from its creation).")
ACCESS = AccessRules(unauthorized_message=UNAUTHORIZED, public_paths=frozenset({"/health"}))


def operator_token(fleet_token: str, ref: str) -> str:
    return derived_secret(fleet_token, f"cubicle fleet operator of {ref}")


def proxied(path: str) -> tuple[str, str] | None:
    """(desktop id, path on the desktop) for a path the proxy serves, else None."""
    match = PROXIED.match(path)
    if match is None or match["rest"] in MANAGEMENT:
        return None
    return match["id"], match["rest"]


class FleetAccess:
    """The token check (cubicle.web.auth.TokenCheck) of the fleet's app."""

    def __init__(self, fleet_token: str, manager: FleetManager):
        self.fleet_token = fleet_token
        self.manager = manager

    def __call__(self, scope: Scope, token: str | None) -> bool:
        target = proxied(scope.get("path") or "")
        fleet = token_matches(self.fleet_token, token)
        if target is None:
            return fleet
        desktop_id, rest = target
        if scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and PUBLIC_ON_DESKTOP.match(rest):
            return True
        return self.manager.token_opens(desktop_id, token) or fleet
