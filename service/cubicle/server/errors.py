"""The desktop's errors: the shared shape (cubicle.web.errors) plus what only the desktop
has, the X engine's exceptions mapped to statuses, and a refused batch's per-action results.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from cubicle import x11
from cubicle.actions import ActionResult, ErrorBody
from cubicle.web.errors import ApiError, install_error_handlers

__all__ = ["ApiError", "BatchRefused", "from_engine_error", "install"]


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


def install(app: FastAPI) -> None:
    install_error_handlers(app, not_found_hint="See /docs for the API.")

    @app.exception_handler(x11.X11Error)
    async def _engine_error(_: Request, error: x11.X11Error) -> JSONResponse:
        api_error = from_engine_error(error)
        return JSONResponse(api_error.body(), status_code=api_error.status)
