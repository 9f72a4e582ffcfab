"""OpenAPI post-processing: every operation documents its problem+json errors, every list its
`{"results", "next"}` page and paging parameters, every input its refusal of unknown fields, so
that the published schema is what the API really answers and accepts."""

from __future__ import annotations

from typing import Any

from core.pagination import page_parameters
from core.problems import PROBLEM_CONTENT_TYPE

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem. `code` is the stable machine code to branch on; a 422 "
    "`validation_failed` lists every invalid field in `errors`.",
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
    "406": ("not_acceptable: the Accept header allows no type this operation answers", "all"),
    "409": ("idempotency_in_progress, or conflict (e.g. an answer already given)", "post"),
    "413": ("payload_too_large", "post"),
    "415": ("unsupported_media_type", "post"),
    "422": ("validation_failed (with `errors`), or idempotency_key_reused", "all"),
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


RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer", "minimum": 1}}

# Header parameters OpenAPI says to ignore: the request's media types and its credentials.
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})


def _paged(operation: dict) -> None:
    """Declare the cursor and page size, replacing any parameter of the same name."""
    extra = page_parameters()
    names = {parameter["name"] for parameter in extra}
    kept = [p for p in operation.get("parameters", []) if not (p.get("in") == "query" and p["name"] in names)]
    operation["parameters"] = kept + extra


def _page_ref(schemas: dict, array: dict) -> dict:
    """A named page component (`XPage` for items `X`), so that generated clients get one model per list."""
    item = array.get("items", {}).get("$ref", "")
    if not item:
        return _page(array)
    name = item.rsplit("/", 1)[-1].removesuffix("Output") + "Page"
    schemas[name] = {"description": "A page of results: follow `next` (null on the last page).", **_page(array)}
    return {"$ref": f"#/components/schemas/{name}"}


def document_problems(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular post-processing hook (runs after the default enum hook)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas["Problem"] = PROBLEM_SCHEMA
    for name, component in schemas.items():
        # Every input refuses fields it does not know (StrictSerializer, exchange.validation).
        if name.endswith("Request") and component.get("type") == "object":
            component["additionalProperties"] = False
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/v1/") or path == "/api/v1/schema":
            continue
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            parameters = [
                p
                for p in operation.get("parameters", [])
                if not (p.get("in") == "header" and p["name"].lower() in _IGNORED_HEADERS)
            ]
            for parameter in parameters:
                if parameter.get("in") == "path":  # every object id is a UUID (another string is a 404)
                    parameter["schema"] = {"type": "string", "format": "uuid"}
            operation["parameters"] = parameters
            if "requestBody" in operation:
                operation["requestBody"]["required"] = True
            responses = operation["responses"]
            ok = responses.get("200", {}).get("content", {}).get("application/json", {})
            if method == "get" and ok.get("schema", {}).get("type") == "array":
                ok["schema"] = _page_ref(schemas, ok["schema"])
                _paged(operation)
            for status, (description, scope) in ERRORS.items():
                if status in responses or not _applies(scope, method, operation):
                    continue
                responses[status] = {
                    "description": description,
                    "content": {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}},
                }
                if status in ("429", "503"):
                    responses[status]["headers"] = {"Retry-After": RETRY_AFTER}
            # A response documented without a body elsewhere (e.g. 413 on uploads) gets the problem body.
            for status in ERRORS:
                if status in responses and "content" not in responses[status]:
                    responses[status]["content"] = {PROBLEM_CONTENT_TYPE: {"schema": PROBLEM_REF}}
            if not operation["parameters"]:
                del operation["parameters"]
    return result
