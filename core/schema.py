"""OpenAPI post-processing: every operation documents its problem+json errors, and every list
its `{"results", "next"}` page, so that the published schema is what the API really answers."""

from __future__ import annotations

from typing import Any

from core.problems import PROBLEM_CONTENT_TYPE

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem; `code` is the stable machine code (see the contract).",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "validation errors, each with the batch index (or null) and the field path",
            "items": {
                "type": "object",
                "required": ["index", "field", "message"],
                "properties": {
                    "index": {"type": "integer", "nullable": True},
                    "field": {"type": "string", "nullable": True},
                    "message": {"type": "string"},
                },
            },
        },
    },
}

# status: (description, applies to): "all", "post", or "object" (a POST, or a path naming an object).
ERRORS: dict[str, tuple[str, str]] = {
    "400": ("malformed_request: the body or a parameter is not well formed", "all"),
    "401": ("authentication_failed: no key, or an unknown, expired or revoked key", "all"),
    "403": ("scope_required, member_suspended, consent_required or reciprocity_required", "all"),
    "404": ("not_found: no such object (in the path or named in the body), or another member's", "object"),
    "406": ("not_acceptable: the Accept header asks for a type this operation cannot give", "all"),
    "409": ("idempotency_in_progress, or conflict (e.g. an answer already given)", "post"),
    "413": ("payload_too_large", "post"),
    "415": ("unsupported_media_type", "post"),
    "422": ("validation_failed or idempotency_key_reused, with `errors`", "all"),
    "429": ("throttled: see Retry-After", "all"),
    "503": ("unavailable: the database is unreachable; retrying is safe (see Retry-After)", "all"),
}


def _applies(scope: str, method: str, operation: dict) -> bool:
    if scope == "all":
        return True
    if scope == "post":
        return method == "post"
    # object: a POST (its body may name an object) or a path that names one
    return method == "post" or any(p.get("in") == "path" for p in operation.get("parameters", []))


def _page(schema: dict) -> dict:
    return {
        "type": "object",
        "required": ["results", "next"],
        "properties": {"results": schema, "next": {"type": "string", "format": "uri", "nullable": True}},
    }


def document_problems(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular post-processing hook (runs after the default enum hook)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/") or path == "/api/v1/schema":
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            ok = responses.get("200", {}).get("content", {}).get("application/json", {})
            if method == "get" and ok.get("schema", {}).get("type") == "array":
                ok["schema"] = _page(ok["schema"])
            for status, (description, scope) in ERRORS.items():
                if status in responses or not _applies(scope, method, operation):
                    continue
                responses[status] = {
                    "description": description,
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}},
                }
            # A response documented without a body elsewhere (e.g. 413 on uploads) gets the problem body.
            for status in ERRORS:
                if status in responses and "content" not in responses[status]:
                    responses[status]["content"] = {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}}
    return result
