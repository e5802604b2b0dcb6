"""OpenAPI request bodies of the routes that read their body themselves (so that a body over the limit
is a 413, not FastAPI's generic 400): what /docs shows and schemathesis generates from."""

from __future__ import annotations

ROWS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["rows"],
                    "properties": {"rows": {"type": "array", "items": {"type": "object"}, "minItems": 1}},
                }
            },
            "multipart/form-data": {"schema": {"type": "object", "additionalProperties": True}},
        },
    }
}
SEARCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string"},
                        "image": {"type": "string", "description": "a data: URI"},
                        "audio": {"type": "string", "description": "a data: URI"},
                        "like": {"type": "integer"},
                        "k": {"type": "integer", "minimum": 1, "maximum": 1000},
                        "where": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                }
            },
            "multipart/form-data": {"schema": {"type": "object", "additionalProperties": True}},
        },
    }
}
EMBED_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["rows", "column"],
                    "properties": {
                        "rows": {"type": "array", "items": {"type": "object"}, "minItems": 1},
                        "column": {"type": "string"},
                    },
                }
            }
        },
    }
}
GENERATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["rows"],
                    "properties": {
                        "rows": {"type": "array", "items": {"type": "object"}, "minItems": 1},
                        "n": {"type": "integer", "minimum": 1, "maximum": 16},
                        "seed": {"type": "integer"},
                    },
                }
            }
        },
    }
}
