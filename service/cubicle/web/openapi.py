"""The OpenAPI schema says what the server really answers: the bearer token that every route
but the public ones needs, and the `{"error": {"code", "message"}}` body of every refusal,
with the statuses that middleware and error handlers add to what the routes declare
themselves: 401 on every guarded route, 400/413/415 wherever a body is read, and 422 on
every route (an unknown query parameter is refused), in our shape rather than FastAPI's.
Clients generated from the schema, and schema-driven fuzzers, then meet no undocumented answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

from .errors import ErrorResponse

ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON (malformed_body).",
    401: "Missing or wrong token (unauthorized): send 'Authorization: Bearer <token>'.",
    403: "Not allowed; the message says why (outside_root, permission_denied ...).",
    404: "No such thing (window, file, run ...); the message says what exists.",
    409: "Not possible in the current state; the message says what to do first.",
    413: "The body is too large (body_too_large).",
    415: "The body is not sent as 'Content-Type: application/json' (unsupported_media_type).",
    422: "The request is invalid; the message names the field and what to send instead.",
    429: "A quota is reached (quota_exceeded); the message says which and what to do.",
    502: "A server this one relies on failed or refused; the message names it.",
    503: "Not available right now (display_unavailable while X restarts ...): retry in a few seconds.",
    504: "Something this server waited for did not happen in time; the message says what.",
    507: "No space left on the device (no_space).",
}


def error_responses(*statuses: int, model: type[BaseModel] = ErrorResponse) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses answer with `model`."""
    return {status: {"model": model, "description": ERROR_DESCRIPTIONS[status]} for status in statuses}


SCHEME = "bearer"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
_FASTAPI_422 = "#/components/schemas/HTTPValidationError"


def _error(status: int) -> dict[str, Any]:
    return {"description": ERROR_DESCRIPTIONS[status], "content": {"application/json": {"schema": dict(_ERROR_REF)}}}


def document(schema: dict[str, Any], public_paths: Iterable[str]) -> dict[str, Any]:
    """Adds the token and the error answers to a schema FastAPI generated; returns it."""
    public = frozenset(public_paths)
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    model = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(model.pop("$defs", {}))
    schemas["ErrorResponse"] = model
    components["securitySchemes"] = {SCHEME: {"type": "http", "scheme": "bearer", "description": "the token the server was started with"}}
    schema["security"] = [{SCHEME: []}]
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            default_422 = responses.get("422", {}).get("content", {}).get("application/json", {}).get("schema", {})
            if default_422.get("$ref") == _FASTAPI_422:
                responses["422"] = _error(422)
            responses.setdefault("422", _error(422))  # any route: an unknown query parameter
            if "requestBody" in operation:
                for status in (400, 413, 415):
                    responses.setdefault(str(status), _error(status))
            if path in public:
                operation["security"] = []
            else:
                responses.setdefault("401", _error(401))
    if not any(_FASTAPI_422 in str(operations) for operations in schema.get("paths", {}).values()):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return schema


Amend = Callable[[dict[str, Any]], None]


def install(app: FastAPI, public_paths: Iterable[str], amend: Amend | None = None) -> None:
    """The app's schema, documented once on first use; `amend` adds what only that app says."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = document(generate(), public_paths)
            if amend is not None:
                amend(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
