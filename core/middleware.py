"""Request-wide concerns: request ids, body size limits, and a clean 503 when the database is down."""

from __future__ import annotations

import functools
import logging
import re
import uuid

from csp.constants import HEADER
from csp.middleware import CSPMiddleware
from csp.utils import build_policy, default_config
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError

from core.context import reset_request_id, set_request_id
from core.problems import problem_response

logger = logging.getLogger("exchange.requests")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Gives every request an id (the caller's X-Request-ID if it is sane), echoed in the response."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
            reset_request_id(token)
        response["X-Request-ID"] = request_id
        return response


# Endpoints that stream their body and enforce (and audit) their own limit: an evidence document.
_OWN_LIMIT = re.compile(r"^/api/v1/evidence-requests/[^/]+/evidence$")


# An API answer is JSON (or JSON Lines), never a page: nothing in it may load, run or be framed.
API_POLICY = {
    "default-src": ["'none'"],
    "frame-ancestors": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'none'"],
}


def _is_api_answer(path: str) -> bool:
    return path.startswith("/api/") and not path.startswith(settings.EXCHANGE_CSP_PAGES)


@functools.cache
def _api_policy_header() -> str:
    return build_policy(config=default_config(API_POLICY))


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp with two policies: CONTENT_SECURITY_POLICY (settings) for the pages (the console,
    the interactive API docs), and API_POLICY, which allows nothing, for the API's answers. The
    API's is one fixed header, built once by django-csp rather than for every answer (no nonce,
    nothing per request): the API is the hot path."""

    def process_request(self, request):
        if not _is_api_answer(request.path):
            super().process_request(request)

    def process_response(self, request, response):
        if not _is_api_answer(request.path):
            return super().process_response(request, response)
        if HEADER not in response:
            response[HEADER] = _api_policy_header()
        return response


class ApiBodyLimitMiddleware:
    """Refuses an API body over its limit with 413 from Content-Length, before anything is read."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/") and not _OWN_LIMIT.match(request.path):
            limit = (
                settings.EXCHANGE_MAX_UPLOAD_BYTES
                if request.path.startswith("/api/v1/submissions")
                else settings.EXCHANGE_MAX_JSON_BODY
            )
            length = request.META.get("CONTENT_LENGTH") or "0"
            try:
                size = int(length)
            except ValueError:
                return problem_response(400, "malformed_request", "Content-Length is not a number.")
            if size > limit:
                return problem_response(
                    413, "payload_too_large", f"The body is {size} bytes; this endpoint accepts at most {limit}."
                )
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, RequestDataTooBig) and request.path.startswith("/api/"):
            return problem_response(413, "payload_too_large", "The body is larger than this endpoint accepts.")
        return None


class DatabaseUnavailableMiddleware:
    """Turns a lost database connection anywhere into a quick 503 that is safe to retry."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            return self.get_response(request)
        except (OperationalError, InterfaceError) as exc:
            return self._unavailable(exc)

    def process_exception(self, request, exception):
        if isinstance(exception, (OperationalError, InterfaceError)):
            return self._unavailable(exception)
        return None

    @staticmethod
    def _unavailable(exc: Exception):
        logger.warning("database unavailable: %s", type(exc).__name__)
        return problem_response(
            503, "unavailable", "The database is unreachable; retrying is safe.", **{"Retry-After": "5"}
        )
