"""Who gets in: the token checks of every cubicle service, as one ASGI middleware.

The rules (`AccessRules`) say which paths are public, which read-only GETs may also use a
cookie (what a browser loads by URL cannot carry a header), and how each WebSocket may
present its token. The token is never read from a query string: it would end up in logs and
browser history.

- HTTP: `Authorization: Bearer <token>`; else 401 with `WWW-Authenticate: Bearer`.
- WebSocket, in up to three ways (`WebSocketWays`): the same header; a subprotocol
  `bearer.<token>` (browsers cannot set headers on a WebSocket; the server then selects the
  app's own protocol when it is offered too, else echoes the bearer one, since browsers
  require a selected subprotocol); or `{"token": "..."}` as the first message within
  FIRST_MESSAGE_TIMEOUT_S (for clients that can do neither). A wrong header or subprotocol
  refuses the handshake (401); a missing or wrong first message closes the socket with 4401.
  The first message, parsed, is handed to the app as `websocket.state.first_message`
  (the desktop's /vnc takes its options from it).

Every comparison takes the same time wherever the first difference is (`token_matches`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import closes
from .asgi import ASGIApp, Message, Receive, Scope, Send, header, send_json_error

FIRST_MESSAGE_TIMEOUT_S = 10.0
DIGEST_PREFIX = "sha256:"
BEARER_PROTOCOL = "bearer."
FIRST_MESSAGE_REASON = 'missing or wrong token: send {"token": "..."} as the first message'


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_matches(expected: str, given: str | None) -> bool:
    """Constant-time comparison; an empty expected token matches nothing."""
    if not expected or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header value, or None."""
    return authorization[7:].strip() if authorization.startswith("Bearer ") else None


def digest_of(text: str) -> str:
    """'sha256:<hex>' as the digest it names; anything else is a token, hashed."""
    text = text.strip()
    return text[len(DIGEST_PREFIX):] if text.startswith(DIGEST_PREFIX) else token_digest(text)


def derived_secret(token: str, purpose: str) -> str:
    """A value derived from the token for one purpose (a cookie): good for that, not the token."""
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def token_digest(token: str) -> str:
    """What may be stored in place of a token: its SHA-256, to check a token against later."""
    return hashlib.sha256(token.encode()).hexdigest()


class Credential:
    """A service's token, held as its SHA-256 only (what a container's settings or a file
    may show is then no credential), and replaceable while the service runs: a desktop taken
    from a warm pool gets its user's token, and a token can be rotated. `store` is called
    with each new digest, to keep it across restarts."""

    def __init__(self, digest: str, store: Callable[[str], None] | None = None, operator_digest: str | None = None,
                 token: str | None = None):
        self.digest = digest
        self._store = store
        # Where the token itself was given (not its digest), it is compared as it is.
        self._token = token
        # A second token that always opens the service and is never replaced: the fleet's own
        # way into the desktops it runs (derived from the fleet's token, so it is kept nowhere).
        self.operator_digest = operator_digest

    @classmethod
    def from_text(cls, text: str, store: Callable[[str], None] | None = None) -> Credential:
        """'sha256:<hex>' is a digest; anything else is the token itself."""
        text = text.strip()
        return cls(digest_of(text), store, token=None if text.startswith(DIGEST_PREFIX) else text)

    def check(self, scope: Scope, given: str | None) -> bool:
        if not isinstance(given, str) or not given:
            return False
        digest = token_digest(given)
        # Both compared, whatever the first says: the time taken tells nothing either way.
        user = token_matches(self._token, given) if self._token else token_matches(self.digest, digest)
        operator = self.operator_digest is not None and token_matches(self.operator_digest, digest)
        return user or operator

    def replace(self, digest: str) -> None:
        if self._store is not None:
            self._store(digest)  # first: a restart must not bring back the old token
        self.digest = digest
        self._token = None


@dataclass(frozen=True)
class WebSocketWays:
    header: bool = True
    subprotocol: bool = True
    first_message: bool = True


FIRST_MESSAGE_ONLY = WebSocketWays(header=False, subprotocol=False, first_message=True)


@dataclass(frozen=True)
class CookieRule:
    """GET and HEAD of paths matching `paths`, without an Authorization header, may present
    the cookie `name` with the value `value` instead."""

    name: str
    value: str
    paths: re.Pattern[str]


@dataclass(frozen=True)
class AccessRules:
    unauthorized_message: str
    public_paths: frozenset[str] = frozenset({"/health"})
    # GET and HEAD under these (static files of public pages) need no token.
    public_prefixes: tuple[str, ...] = ()
    cookie: CookieRule | None = None
    # How a WebSocket at a given path may present its token; any other path: all three ways.
    websockets: dict[str, WebSocketWays] = field(default_factory=dict)
    # Subprotocols the app itself speaks: selected when a client offers one.
    protocols: tuple[str, ...] = ()

    def is_public(self, scope: Scope) -> bool:
        path = scope.get("path") or ""
        if path in self.public_paths:
            return True
        return (scope["type"] == "http" and scope.get("method") in ("GET", "HEAD")
                and bool(self.public_prefixes) and path.startswith(self.public_prefixes))


TokenCheck = Callable[[Scope, str | None], bool]


def single_token(token: str) -> TokenCheck:
    """The check of a service with one token."""
    return lambda scope, given: token_matches(token, given)


def _cookie(scope: Scope, name: str) -> str | None:
    for part in header(scope, b"cookie").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class TokenAuth:
    """The middleware. `check(scope, token)` says whether a token opens that request."""

    def __init__(self, app: ASGIApp, check: TokenCheck, rules: AccessRules):
        self.app = app
        self.check = check
        self.rules = rules

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.rules.is_public(scope):
            return await self.app(scope, receive, send)
        authorization = header(scope, b"authorization")
        if scope["type"] == "http":
            if self.check(scope, bearer_token(authorization)):
                return await self.app(scope, receive, send)
            cookie = self.rules.cookie
            if (cookie is not None and not authorization and scope.get("method") in ("GET", "HEAD")
                    and cookie.paths.match(scope.get("path") or "")
                    and token_matches(cookie.value, _cookie(scope, cookie.name))):
                return await self.app(scope, receive, send)
            return await send_json_error(send, 401, "unauthorized", self.rules.unauthorized_message,
                                         [(b"www-authenticate", b"Bearer")])
        await self._websocket(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        ways = self.rules.websockets.get(scope.get("path") or "", WebSocketWays())
        offered = [str(p) for p in scope.get("subprotocols") or []]
        authorization = header(scope, b"authorization") if ways.header else ""
        bearers = [p[len(BEARER_PROTOCOL):] for p in offered if p.startswith(BEARER_PROTOCOL)] if ways.subprotocol else []
        if authorization or bearers:
            if self.check(scope, bearer_token(authorization)) or any(self.check(scope, b) for b in bearers):
                return await self.app(scope, receive, self._selecting_subprotocol(send, offered))
            return await self._refuse_handshake(scope, send)
        if not ways.first_message:
            return await self._refuse_handshake(scope, send)
        await self._first_message(scope, receive, send, offered)

    def _own_protocol(self, offered: list[str]) -> str | None:
        return next((p for p in offered if p in self.rules.protocols), None)

    def _selecting_subprotocol(self, send: Send, offered: list[str]) -> Send:
        chosen = self._own_protocol(offered) or next((p for p in offered if p.startswith(BEARER_PROTOCOL)), None)

        async def selecting_send(message: Message) -> None:
            if message["type"] == "websocket.accept" and not message.get("subprotocol"):
                message = {**message, "subprotocol": chosen}
            await send(message)
        return selecting_send

    async def _refuse_handshake(self, scope: Scope, send: Send) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send_json_error(send, 401, "unauthorized", self.rules.unauthorized_message, prefix="websocket.http")
        else:
            await send({"type": "websocket.close", "code": closes.UNAUTHORIZED, "reason": "missing or wrong token"})

    async def _first_message(self, scope: Scope, receive: Receive, send: Send, offered: list[str]) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept", "subprotocol": self._own_protocol(offered)})
        try:
            first = await asyncio.wait_for(receive(), FIRST_MESSAGE_TIMEOUT_S)
        except TimeoutError:
            first = {"type": "websocket.receive", "text": ""}
        if first["type"] != "websocket.receive":
            return  # the client left
        hello = _json_object(first.get("text") or first.get("bytes") or b"")
        given = hello.get("token")
        if not isinstance(given, str) or not self.check(scope, given):
            await send({"type": "websocket.close", "code": closes.UNAUTHORIZED, "reason": FIRST_MESSAGE_REASON})
            return
        scope.setdefault("state", {})["first_message"] = hello
        connect: list[Message] = [{"type": "websocket.connect"}]

        async def app_receive() -> Message:
            return connect.pop() if connect else await receive()

        async def app_send(message: Message) -> None:
            if message["type"] != "websocket.accept":  # already accepted above
                await send(message)

        await self.app(scope, app_receive, app_send)


def _json_object(data: str | bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}
