"""API errors: one JSON shape, {"error": {"code", "message"}}, with a 4xx/5xx status.

The message is what a model reads when its action is refused, so it says what was wrong and
what to send instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from cubicle import x11
from cubicle.actions import ACTION_NAMES, ActionResult, ErrorBody


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class BatchRefused(BaseModel):
    """A batch of actions that failed: `results` says what each action did, once the batch
    got past parsing (a body that is not a valid batch has no results)."""

    error: ErrorBody
    results: list[ActionResult] | None = Field(None, description="one per action: ok, error or not_executed")


def from_engine_error(error: x11.X11Error) -> ApiError:
    """Map an engine exception to the status and code clients see."""
    if isinstance(error, x11.DisplayUnavailable):
        return ApiError(503, "display_unavailable", str(error))
    if isinstance(error, x11.WindowNotFound):
        return ApiError(404, "window_not_found", str(error))
    if isinstance(error, x11.LaunchFailed):
        return ApiError(422, "launch_failed", str(error))
    if isinstance(error, x11.UnknownKey):
        return ApiError(422, "unknown_key", str(error))
    if isinstance(error, (x11.InvalidKeyCombo, x11.UntypableCharacter)):
        return ApiError(422, "invalid_text", str(error))
    return ApiError(500, "desktop_error", str(error))


def _location(loc: tuple) -> str:
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


def _describe(error: dict[str, Any]) -> str:
    where = _location(tuple(error.get("loc", ())))
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"{where}: unknown field (check its spelling against the API docs)"
    if kind == "missing" and where == "body":
        return "the body is missing: send JSON with 'Content-Type: application/json'"
    if kind == "missing":
        return f"{where}: this field is required"
    if kind == "json_invalid":
        return f"the body is not valid JSON ({error.get('ctx', {}).get('error', 'parse error')})"
    if where == "body" and kind in ("model_attributes_type", "model_type", "dict_type"):
        return f"the body must be a JSON object, not {_json_kind(error.get('input'))}"
    if kind == "string_unicode":
        return (f"{where}: holds a lone surrogate (an escape such as \\ud800 without its pair), which is no "
                "character: send valid Unicode")
    if kind == "int_parsing_size":
        return f"{where}: {error.get('input')!r} is far too large; send a whole number in range"
    return f"{where}: {error.get('msg', 'invalid value')}"


def _json_kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(x11.X11Error)
    async def _engine_error(_: Request, error: x11.X11Error) -> JSONResponse:
        api_error = from_engine_error(error)
        return JSONResponse(api_error.body(), status_code=api_error.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if request.method in ("POST", "PUT") and "json" not in content_type and await request.body():
            return JSONResponse(
                {"error": {"code": "unsupported_media_type", "message": (
                    f"The body must be JSON sent with 'Content-Type: application/json', not {content_type or 'no content type'!r} "
                    "(with curl: --json '{...}')."
                )}},
                status_code=415,
            )
        problems = error.errors()
        malformed = any(p.get("type") == "json_invalid" for p in problems)
        messages = list(dict.fromkeys(_describe(p) for p in problems))
        shown = "; ".join(messages[:5]) + (f"; and {len(messages) - 5} more" if len(messages) > 5 else "")
        code, status = ("malformed_body", 400) if malformed else ("invalid_request", 422)
        return JSONResponse({"error": {"code": code, "message": shown}}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        allowed = (getattr(error, "headers", None) or {}).get("Allow")
        message = {
            404: "No such route. See /docs for the API.",
            405: f"{request.method} is not allowed on {request.url.path}" + (f"; it takes {allowed}." if allowed else "."),
        }.get(error.status_code, str(error.detail))
        return JSONResponse(
            {"error": {"code": codes.get(error.status_code, "http_error"), "message": message}},
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, error: Exception) -> JSONResponse:
        return JSONResponse(
            {"error": {"code": "internal_error", "message": f"Unexpected server error: {type(error).__name__}: {error}"}},
            status_code=500,
        )
