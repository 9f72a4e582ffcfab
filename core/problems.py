"""RFC 9457 problem+json errors: one shape for every error the API returns."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger("exchange.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://exchange.example/problems/"

TITLES = {
    "malformed_request": "Malformed request",
    "authentication_failed": "Authentication failed",
    "scope_required": "Scope required",
    "member_suspended": "Member suspended",
    "consent_required": "Consent required",
    "reciprocity_required": "Reciprocity required",
    "permission_denied": "Permission denied",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "not_acceptable": "Not acceptable",
    "idempotency_in_progress": "Request with this Idempotency-Key in progress",
    "conflict": "Conflict",
    "payload_too_large": "Payload too large",
    "unsupported_media_type": "Unsupported media type",
    "validation_failed": "Validation failed",
    "idempotency_key_reused": "Idempotency-Key reused with a different body",
    "consent_evidence_reused": "Consent evidence registered for another subject",
    "raw_identifier_refused": "Raw identifier refused",
    "already_answered": "Already answered",
    "throttled": "Too many requests",
    "quota_exceeded": "Quota exceeded",
    "unavailable": "Service unavailable",
    "internal_error": "Internal error",
}


class ApiError(exceptions.APIException):
    """An API error with a stable machine code; raise it from views and services."""

    def __init__(self, status_code: int, code: str, detail: str, *, errors: list | None = None):
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.problem_code = code
        self.errors = errors
        self.headers: dict[str, str] | None = None  # e.g. Retry-After


class Forbidden(ApiError):
    def __init__(self, code: str, detail: str):
        super().__init__(status.HTTP_403_FORBIDDEN, code, detail)


class NotFound(ApiError):
    def __init__(self, detail: str = "No such object."):
        super().__init__(status.HTTP_404_NOT_FOUND, "not_found", detail)


class Malformed(ApiError):
    def __init__(self, detail: str):
        super().__init__(status.HTTP_400_BAD_REQUEST, "malformed_request", detail)


class Invalid(ApiError):
    """422 with the list of every error: [{"index", "field", "message"}]."""

    def __init__(self, errors: list[dict[str, Any]], detail: str | None = None, *, code: str = "validation_failed"):
        count = len(errors)
        super().__init__(
            status.HTTP_422_UNPROCESSABLE_ENTITY,
            code,
            detail or f"{count} error{'s' if count != 1 else ''} in the request; nothing was stored.",
            errors=errors,
        )


class PayloadTooLarge(ApiError):
    def __init__(self, detail: str):
        super().__init__(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "payload_too_large", detail)


def problem_body(status_code: int, code: str, detail: str, errors: list | None = None) -> dict:
    body: dict[str, Any] = {
        "type": TYPE_BASE + code.replace("_", "-"),
        "title": TITLES.get(code, code.replace("_", " ").capitalize()),
        "status": status_code,
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem_response(status_code: int, code: str, detail: str, **extra) -> JsonResponse:
    """A plain Django response, for middleware and URL-level handlers outside DRF."""
    response = JsonResponse(problem_body(status_code, code, detail), status=status_code)
    response["Content-Type"] = PROBLEM_CONTENT_TYPE
    for header, value in extra.items():
        response[header] = value
    return response


def unknown_fields_message(unknown: Iterable[object], known: Iterable[str]) -> str:
    """The message for fields a request should not carry, without quoting them: a field's name is
    the sender's text and could be anything (a national ID sent as a key). A close known name is
    suggested instead, which names the typo without echoing it."""
    unknown = [str(key) for key in unknown]
    known = sorted(known)
    hints = sorted({match for key in unknown for match in difflib.get_close_matches(key[:64], known, n=1, cutoff=0.75)})
    count = f"{len(unknown)} unknown field{'s' if len(unknown) != 1 else ''}"
    if hints:
        return f"has {count} (did you mean {', '.join(hints)}?)"
    return f"has {count}; the fields are {', '.join(known)}"


def flatten_errors(detail: Any, *, index: int | None = None, prefix: str = "") -> list[dict]:
    """Turn DRF's nested error detail into [{"index", "field", "message"}]."""
    out: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            key = str(key)
            if key == "non_field_errors":
                out += flatten_errors(value, index=index, prefix=prefix)
            else:
                out += flatten_errors(value, index=index, prefix=f"{prefix}.{key}" if prefix else key)
    elif isinstance(detail, list):
        if detail and all(not isinstance(item, (dict, list)) for item in detail):
            for item in detail:
                out.append({"index": index, "field": prefix or None, "message": str(item)})
        else:
            for position, item in enumerate(detail):
                if not item:
                    continue
                out += flatten_errors(item, index=index, prefix=f"{prefix}.{position}" if prefix else str(position))
    else:
        out.append({"index": index, "field": prefix or None, "message": str(detail)})
    return out


def _response(status_code: int, code: str, detail: str, errors=None, headers=None) -> Response:
    response = Response(problem_body(status_code, code, detail, errors), status=status_code, headers=headers)
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def exception_handler(exc: Exception, context: dict) -> Response:
    """DRF's exception handler, answering problem+json for every error."""
    if isinstance(exc, ApiError):
        return _response(exc.status_code, exc.problem_code, str(exc.detail), exc.errors, headers=exc.headers)
    if isinstance(exc, (Http404, exceptions.NotFound)):
        return _response(404, "not_found", "No such object.")
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        detail = (
            str(exc.detail)
            if isinstance(exc, exceptions.AuthenticationFailed)
            else ("Send an API key: Authorization: Bearer <key>.")
        )
        return _response(401, "authentication_failed", detail, headers={"WWW-Authenticate": 'Bearer realm="api"'})
    if isinstance(exc, exceptions.PermissionDenied | DjangoPermissionDenied):
        code = getattr(exc, "default_code", "permission_denied")
        detail = getattr(exc, "detail", "You may not do this.")
        codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else code
        return _response(403, codes if isinstance(codes, str) else code, str(detail))
    if isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1) if exc.wait is not None else 1
        return _response(
            429,
            "throttled",
            f"Request limit reached; retry in {wait} seconds.",
            headers={"Retry-After": str(max(wait, 1))},
        )
    if isinstance(exc, exceptions.ParseError):
        detail = str(exc.detail) if str(exc.detail).startswith("Malformed JSON") else "The body is not valid JSON."
        return _response(400, "malformed_request", detail)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return _response(415, "unsupported_media_type", str(exc.detail))
    if isinstance(exc, exceptions.MethodNotAllowed):
        return _response(
            405, "method_not_allowed", str(exc.detail), headers={"Allow": ", ".join(context["view"].allowed_methods)}
        )
    if isinstance(exc, exceptions.NotAcceptable):
        view = context.get("view")
        available = [renderer.media_type for renderer in getattr(view, "renderer_classes", ())] or ["application/json"]
        return _response(406, "not_acceptable", f"Only {' or '.join(available)} responses are available.")
    if isinstance(exc, exceptions.ValidationError):
        return _response(
            422, "validation_failed", "The request has invalid fields; nothing was stored.", flatten_errors(exc.detail)
        )
    if isinstance(exc, RequestDataTooBig):
        return _response(413, "payload_too_large", "The body is larger than this endpoint accepts.")
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable", exc_info=exc)
        return _response(
            503, "unavailable", "The database is unreachable; retrying is safe.", headers={"Retry-After": "5"}
        )
    if isinstance(exc, exceptions.APIException):
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
        return _response(exc.status_code, code, str(exc.detail))
    if isinstance(exc, DatabaseError):
        logger.error("database error", exc_info=exc)
        return _response(500, "internal_error", "An internal error occurred; nothing was stored.")
    logger.error("unhandled error", exc_info=exc)
    return _response(500, "internal_error", "An internal error occurred; nothing was stored.")
