"""Request checks every service applies as router dependencies: no unknown query parameter,
and JSON types taken as they are. One rule for all services: a number where the schema says
number, true or false where it says boolean; a whole number written 5.0 is an integer, as
JSON Schema has it."""

from __future__ import annotations

import functools
import json
from typing import Any

from fastapi import Request
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import HTTPConnection

from .errors import ApiError


def _query_names(dependant: Any) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return names


def only_known_query(connection: HTTPConnection) -> None:
    """Unknown query parameters are refused, as unknown body fields are: a misspelt
    `max_widht=800` must not silently give a full-size screenshot."""
    route = connection.scope.get("route")
    if not connection.query_params or route is None or not hasattr(route, "dependant"):
        return
    known = _query_names(route.dependant)
    unknown = [name for name in dict.fromkeys(connection.query_params) if name not in known]
    if unknown:
        takes = f"this route takes {', '.join(sorted(known))}" if known else "this route takes none"
        raise ApiError(422, "invalid_request", f"{unknown[0]!r}: unknown query parameter (check its spelling; {takes}).")


def coerced_fields(raw: Any, value: Any, where: str = "") -> list[tuple[str, str]]:
    """(field, what to send instead) wherever pydantic's lax mode read one JSON type as
    another: true as 1 ([true, true] would click at (1, 1)), 0 or "yes" as a boolean, "5"
    as a number."""
    where = where or "body"
    if isinstance(raw, bool) != isinstance(value, bool):
        if isinstance(raw, bool):
            return [(where, f"{str(raw).lower()} is not a number; send a number")]
        return [(where, f"{_shown(raw)} is not true or false; send true or false")]
    if isinstance(raw, str) and isinstance(value, (int, float)):
        return [(where, f"{_shown(raw)} is a string; send the number itself")]
    if isinstance(raw, dict):
        found = []
        for key, item in raw.items():
            inner = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
            found += coerced_fields(item, inner, f"{where}.{key}" if where != "body" else str(key))
        return found
    if isinstance(raw, list) and isinstance(value, (list, tuple)) and len(raw) == len(value):
        return [hit for index, pair in enumerate(zip(raw, value))
                for hit in coerced_fields(*pair, f"{'' if where == 'body' else where}[{index}]")]
    return []


def _shown(raw: Any) -> str:
    text = json.dumps(raw, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


@functools.cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


async def exact_json_types(request: Request) -> None:
    """A body's numbers must be JSON numbers and its booleans JSON booleans (its other
    problems are left to the usual validation)."""
    route = request.scope.get("route")
    fields = getattr(getattr(route, "dependant", None), "body_params", None)
    if not fields or request.method not in ("POST", "PUT", "PATCH"):
        return
    annotation = fields[0].field_info.annotation
    try:
        raw = json.loads(await request.body())
        value = _adapter(annotation).validate_python(raw)
    except (ValueError, ValidationError):
        return
    # A body model that also takes shorter shapes (the desktop's ActionRequest takes one
    # action, or a bare list) says how the raw body reads in the full shape.
    as_full_body = getattr(type(value), "as_full_body", None) if isinstance(value, BaseModel) else None
    if as_full_body is not None:
        raw = as_full_body(raw)
    coerced = coerced_fields(raw, value)
    if coerced:
        where, instead = coerced[0]
        raise ApiError(422, "invalid_request", f"{where}: {instead}.")
