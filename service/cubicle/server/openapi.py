"""What only the desktop's schema says, on top of what every service's says (cubicle.web.openapi)."""

from __future__ import annotations

from typing import Any


def amend_schema(schema: dict[str, Any]) -> None:
    _batch_shorthands(schema)


def _batch_shorthands(schema: dict[str, Any]) -> None:
    """POST /actions also takes one action object, or a bare list of actions (see
    ActionRequest): the body's schema says so, or clients would think them invalid."""
    batch = schema["components"]["schemas"].get("ActionRequest")
    if batch is None:
        return
    actions = batch["properties"]["actions"]
    one = actions["items"]
    listed = {key: actions[key] for key in ("type", "items", "minItems", "maxItems") if key in actions}
    ref = "#/components/schemas/ActionRequest"
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            if body.get("schema", {}).get("$ref") == ref:
                body["schema"] = {"anyOf": [{"$ref": ref}, one, listed], "title": "A batch, one action, or a list of actions"}


