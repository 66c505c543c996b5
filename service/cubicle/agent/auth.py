"""Who may use the worker: its own token, the console's cookie, and the rule that the worker's
token is never a desktop's (a program on a desktop must not find, on that desktop, anything
that opens the worker: it could read every run, start runs and approve its own held actions).

The token checks themselves are the shared ones (cubicle.web.auth): a header on HTTP; a
header, a subprotocol `bearer.<token>` or a first message `{"token": ...}` on WebSockets.
"""

from __future__ import annotations

import os
import re
import sys

from cubicle.web import AccessRules, CookieRule, new_token
from cubicle.web.auth import derived_secret

WORKER_TOKEN_VARIABLE = "CUBICLE_WORKER_TOKEN"
DESKTOP_TOKEN_VARIABLE = "CUBICLE_TOKEN"  # the worker's own desktop's token
EVENTS_PROTOCOL = "cubicle.events"
SESSION_COOKIE = "cubicle_console"
# What a browser loads by URL (img src, a link to a replay) cannot carry a header: these
# read-only GETs also take the console's cookie.
COOKIE_PATHS = re.compile(r"^/runs/[A-Za-z0-9_.-]+/(images/[A-Za-z0-9][A-Za-z0-9._-]*|replay)$")
PUBLIC_PATHS = frozenset({"/health", "/"})
UNAUTHORIZED = ("Missing or wrong token. Send the header 'Authorization: Bearer <token>' (the token is "
                "CUBICLE_WORKER_TOKEN, or the one the worker printed at start).")


class SameTokenRefused(ValueError):
    """The worker's token equals a desktop's: refused, with the reason."""


def session_cookie_value(token: str) -> str:
    """The console's cookie: derived from the token, so it stays valid across restarts of the
    worker, but not the token itself, and good only for COOKIE_PATHS."""
    return derived_secret(token, "cubicle console session")


def access_rules(token: str) -> AccessRules:
    return AccessRules(
        unauthorized_message=UNAUTHORIZED,
        public_paths=PUBLIC_PATHS,
        public_prefixes=("/console/",),  # the console's own files and noVNC: no data in them
        cookie=CookieRule(SESSION_COOKIE, session_cookie_value(token), COOKIE_PATHS),
        protocols=(EVENTS_PROTOCOL,),
    )


def check_distinct(worker_token: str, desktop_token: str | None) -> None:
    if desktop_token and worker_token == desktop_token:
        raise SameTokenRefused(
            "the worker's token (CUBICLE_WORKER_TOKEN) is the desktop's token (CUBICLE_TOKEN). Every program on "
            "the desktop could then use the worker: read every run, start runs, take over and approve its own held "
            "actions. Give the worker a token of its own, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'."
        )


def worker_token() -> str:
    """CUBICLE_WORKER_TOKEN, else a new one printed once on the terminal; never the desktop's."""
    token = os.environ.get(WORKER_TOKEN_VARIABLE, "").strip()
    if not token:
        token = new_token()
        print(f"cubicle agent serve: no {WORKER_TOKEN_VARIABLE} set, generated one for this run: {token}",
              file=sys.stderr, flush=True)
    check_distinct(token, os.environ.get(DESKTOP_TOKEN_VARIABLE, "").strip())
    if token == os.environ.get("CUBICLE_FLEET_TOKEN", "").strip():
        raise SameTokenRefused("the worker's token (CUBICLE_WORKER_TOKEN) is the fleet's token (CUBICLE_FLEET_TOKEN): "
                               "give each its own.")
    return token
