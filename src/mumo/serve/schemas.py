"""OpenAPI request bodies of the routes that read their body themselves (so that a body over the limit
is a 413, not FastAPI's generic 400): what /docs shows and schemathesis generates from."""

from __future__ import annotations

from typing import Any

ROWS = {"type": "array", "items": {"type": "object"}, "minItems": 1}
FORM = {"schema": {"type": "object", "additionalProperties": True}}  # one field per column


def body(properties: dict[str, Any], required: list[str], form: bool = False) -> dict[str, Any]:
    """An `openapi_extra` with a JSON object body (and, with form, a multipart one)."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if form:
        content["multipart/form-data"] = FORM
    return {"requestBody": {"required": True, "content": content}}


ROWS_BODY = body({"rows": ROWS}, ["rows"], form=True)
SEARCH_BODY = body(
    {
        "text": {"type": "string"},
        "image": {"type": "string", "description": "a data: URI"},
        "audio": {"type": "string", "description": "a data: URI"},
        "like": {"type": "integer"},
        "k": {"type": "integer", "minimum": 1, "maximum": 1000},
        "where": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    [],
    form=True,
)
EMBED_BODY = body({"rows": ROWS, "column": {"type": "string"}}, ["rows", "column"])
GENERATE_BODY = body(
    {"rows": ROWS, "n": {"type": "integer", "minimum": 1, "maximum": 16}, "seed": {"type": "integer"}},
    ["rows"],
)
