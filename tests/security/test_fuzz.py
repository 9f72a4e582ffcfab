"""Property-based fuzzing of every API operation from the project's own OpenAPI schema
(schemathesis): valid and invalid inputs, as a member with both scopes. No answer is a 5xx, and
every answer conforms to the schema (status code, content type, headers and body).

Bounded for CI: a few examples per operation and generation mode, derandomized (the same
inputs every run), no example database. Raise FUZZ_EXAMPLES locally for a longer hunt."""

from __future__ import annotations

import os

import hypothesis.strategies as st
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import consent, record, subject
from tests.security.conftest import api_endpoints

pytestmark = pytest.mark.django_db

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def wsgi_app():
    """The Django WSGI app, called in this thread inside the test's transaction: like Django's
    test client, keep the request signals from closing the test's connection. (The test client
    connects them again after each of its own requests, so they are taken off at every call.)"""
    handler = WSGIHandler()

    def app(environ, start_response):
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        return handler(environ, start_response)

    try:
        yield app
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def api_schema(wsgi_app):
    return schemathesis.openapi.from_wsgi("/api/v1/schema?format=json", wsgi_app)


def valid_bodies(world) -> dict[tuple[str, str], object]:
    """One well-formed body per write operation, so that success answers are checked too."""
    ids = world.ids
    return {
        ("POST", "/api/v1/records"): {"records": [record("FUZZ-OK-1", 11)]},
        ("POST", "/api/v1/records/{record_id}/withdraw"): {"reason": "sent in error"},
        ("POST", "/api/v1/consents"): consent(12),
        ("POST", "/api/v1/inquiries"): {
            "subject": subject(7),
            "consent_id": ids["consent_id"],
            "purpose": "credit_application",
        },
        ("POST", "/api/v1/disputes"): {"inquiry_id": ids["inquiry_id"], "line": 0, "reason": "again"},
        ("POST", "/api/v1/disputes/{dispute_id}/resolve"): {"outcome": "upheld", "note": "checked"},
    }


@pytest.mark.parametrize(("method", "path"), api_endpoints(), ids=lambda value: value)
def test_every_operation_answers_within_its_schema_and_never_5xx(method, path, api_schema, world):
    operation = api_schema[path][method]
    headers = {"Authorization": f"Bearer {world.owner.key}"}
    real_ids = {name: world.ids[name] for name in world.ids if "{" + name + "}" in path}

    def check(case) -> None:
        response = case.call(headers=headers)
        case.validate_response(response, checks=CHECKS, headers=headers)

    # Known-good calls first, deterministic: the success answers must match the schema too.
    body = valid_bodies(world).get((method, path))
    if path != "/api/v1/submissions" or method == "GET":
        kwargs = {"path_parameters": real_ids} if real_ids else {}
        if body is not None:
            kwargs.update(body=body, media_type="application/json")
        check(operation.Case(**kwargs))

    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategy = operation.as_strategy(generation_mode=mode)
        if real_ids:  # half the time aim at a real object rather than a random id
            strategy = st.one_of(strategy, operation.as_strategy(generation_mode=mode, path_parameters=real_ids))

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def fuzz(case):
            check(case)

        fuzz()
