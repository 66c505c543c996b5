"""The web layer every cubicle service shares (the desktop, the worker, the fleet), free of X.

    errors.py      ApiError -> {"error": {"code", "message"}}; install_error_handlers (validation,
                   404, 405 with every allowed method, 415, 500), field_location
    checks.py      only_known_query, exact_json_types: the request rules of every service
    auth.py        token_matches, TokenAuth (HTTP and WebSocket: header, subprotocol, first
                   message), AccessRules, WebSocketWays, CookieRule
    body_limit.py  BodyLimit: 413 before a body is parsed
    openapi.py     the bearer scheme and every error answer, in each service's schema
    closes.py      WebSocket close codes
    asgi.py        ASGI type aliases and the JSON error the middleware sends itself
"""

from .auth import AccessRules, CookieRule, TokenAuth, WebSocketWays, new_token, single_token, token_matches
from .body_limit import BodyLimit
from .checks import exact_json_types, only_known_query
from .errors import ApiError, ErrorResponse, install_error_handlers
from .openapi import error_responses

__all__ = [
    "AccessRules", "ApiError", "BodyLimit", "CookieRule", "ErrorResponse", "TokenAuth", "WebSocketWays",
    "error_responses", "exact_json_types", "install_error_handlers", "new_token", "only_known_query",
    "single_token", "token_matches",
]
