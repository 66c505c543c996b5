"""Errors of every cubicle service: one JSON shape, `{"error": {"code", "message"}}`, with a
4xx or 5xx status, and one set of handlers that turn every failure into it.

The message is what a model (or a person) reads when a request is refused, so it names the
field and says what to send instead. `ApiError` is raised by routes and the code under them;
`install_error_handlers` covers what the framework refuses on its own: bodies that are not
JSON or not valid, unknown routes, wrong methods, and any unexpected exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from cubicle.actions import ACTION_NAMES, ErrorBody

Redact = Callable[[Any], Any]


class ApiError(Exception):
    """A refusal or failure with its HTTP status, a code to branch on and a message to act on."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class MethodNotAllowed(StarletteHTTPException):
    """Raised by a route that refuses a method itself, naming what the path takes (the
    fleet's proxy, under the fleet's own /desktops/{id}/reset): its 405 says those."""

    def __init__(self, allowed: list[str]):
        super().__init__(405)
        self.allowed = allowed


class ErrorResponse(BaseModel):
    """Every refusal and failure: a code to branch on and a message to act on."""

    error: ErrorBody


def field_location(loc: tuple[Any, ...]) -> str:
    """('body', 'actions', 0, 'left_click', 'coordinate', 1) -> 'actions[0].coordinate[1]'."""
    parts: list[str] = []
    previous: Any = None
    for item in loc:
        if item in ("body", "query", "path", "header") and previous is None:
            pass
        elif isinstance(item, int):
            parts.append(f"[{item}]")
        elif isinstance(previous, int) and item in ACTION_NAMES:
            pass  # the discriminator tag pydantic puts after an action's index
        elif str(item).startswith("function-"):
            pass  # validator bookkeeping
        else:
            parts.append(("." if parts else "") + str(item))
        previous = item
    return "".join(parts) or "body"


def describe_problem(error: dict[str, Any]) -> str:
    """One pydantic validation problem in words. Echoes only numbers the client sent, never its
    strings: they may hold a secret (a token in a misspelt field)."""
    where = field_location(tuple(error.get("loc", ())))
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    if kind == "missing" and where == "body":
        return "the body is missing: send JSON with 'Content-Type: application/json'"
    if kind == "missing":
        return f"{where}: this field is required"
    if kind == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    if where == "body" and kind in ("model_attributes_type", "model_type", "dict_type"):
        return f"the body must be a JSON object, not {json_kind(error.get('input'))}"
    if kind == "string_unicode":
        return (f"{where}: holds a lone surrogate (an escape such as \\ud800 without its pair), which is no "
                "character: send valid Unicode")
    if kind == "int_parsing_size":
        return f"{where}: {error.get('input')!r} is far too large; send a whole number in range"
    return f"{where}: {error.get('msg', 'invalid value')}"


def describe_problems(problems: Sequence[Any]) -> str:
    """Every problem of a validation error in words, the first five shown: the message of a
    refused body (and of the MCP face's refused arguments, checked by the same models)."""
    messages = list(dict.fromkeys(describe_problem(p) for p in problems))
    return "; ".join(messages[:5]) + (f"; and {len(messages) - 5} more" if len(messages) > 5 else "")


def json_kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def allowed_methods(request: Request) -> list[str]:
    """Every method the path takes, over all the routes that match it: Starlette's own 405
    names only the first route's methods (GET for a path whose PUT is another route). A path
    without parameters comes before templated ones, as OpenAPI matches paths: /recording/stop
    takes what it takes, not also what /recording/{recording_id} does."""
    matching = [route for path, route in _http_routes(request.app.router.routes, request.url.path)
                if route.matches({**request.scope, "path": path})[0] in (Match.PARTIAL, Match.FULL)]
    literal = [route for route in matching if not getattr(route, "param_convertors", None)]
    return sorted({method for route in literal or matching for method in route.methods or ()})


def _http_routes(routes: list[Any], path: str) -> Iterator[tuple[str, Any]]:
    """(the path as that route sees it, the route) for every route with methods; FastAPI
    includes a router as one entry whose routes sit under its prefix."""
    for route in routes:
        router = getattr(route, "original_router", None)
        if router is not None:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            if path.startswith(prefix):
                yield from _http_routes(router.routes, path[len(prefix):])
        elif getattr(route, "methods", None):
            yield path, route


def _json(status: int, code: str, message: str, redact: Redact, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(redact({"error": {"code": code, "message": message}}), status_code=status, headers=headers)


def install_error_handlers(app: FastAPI, not_found_hint: str, redact: Redact = lambda body: body) -> None:
    """Every error the app can answer, in the one shape. `not_found_hint` follows "No such
    route." (where the routes are described); `redact` cleans every body (the worker hides
    secrets that an exception's text might hold)."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return _json(error.status, error.code, error.message, redact)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if request.method in ("POST", "PUT", "PATCH") and "json" not in content_type and await request.body():
            return _json(415, "unsupported_media_type", (
                f"The body must be JSON sent with 'Content-Type: application/json', not {content_type or 'no content type'!r} "
                "(with curl: --json '{...}')."), redact)
        problems = error.errors()
        malformed = any(p.get("type") == "json_invalid" for p in problems)
        shown = describe_problems(problems)
        code, status = ("malformed_body", 400) if malformed else ("invalid_request", 422)
        return _json(status, code, shown, redact)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(error, "headers", None) or {})
        if error.status_code == 405:
            allowed = error.allowed if isinstance(error, MethodNotAllowed) else allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed on {request.url.path}; it takes {' or '.join(allowed)}."
            return _json(405, "method_not_allowed", message, redact, headers)
        if error.status_code == 404:
            return _json(404, "not_found", f"No such route. {not_found_hint}", redact, headers)
        return _json(error.status_code, "http_error", str(error.detail), redact, headers)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        return _json(500, "internal_error", f"Unexpected server error: {type(error).__name__}: {error}", redact)
