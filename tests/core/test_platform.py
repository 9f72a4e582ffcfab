"""Platform behaviour: health probes, schema and docs, problem+json for unknown routes and
methods, request ids, body limits, throttling, and refusing to start without secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.db import OperationalError

from audit.models import AuditEvent
from tests.testenv import TEST_ENV

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_readiness_is_503_when_the_database_is_unreachable(client, monkeypatch):
    from django.db.backends.utils import CursorWrapper

    def broken(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(CursorWrapper, "execute", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"


def test_an_api_call_is_503_when_the_database_fails(bank_a, monkeypatch):
    from exchange.api import records as api

    def broken(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(api.records, "records_submit", broken)
    response = bank_a.client.post("/api/v1/records", {"records": [{}]}, format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert response["Retry-After"]


def test_the_openapi_schema_and_docs_are_served(client):
    schema = client.get("/api/v1/schema", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/v1/me", "/api/v1/records", "/api/v1/consents", "/api/v1/inquiries"):
        assert path in paths
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    assert b"swagger" in docs.content.lower()


def test_unknown_api_routes_and_methods_are_problems(bank_a):
    response = bank_a.client.get("/api/v1/nothing-here")
    assert (response.status_code, response["Content-Type"]) == (404, "application/problem+json")
    assert response.json()["code"] == "not_found"
    response = bank_a.client.delete("/api/v1/records")
    assert (response.status_code, response.json()["code"]) == (405, "method_not_allowed")


def test_every_response_carries_a_request_id_which_lands_on_audit_events(bank_a):
    response = bank_a.client.get("/api/v1/records", HTTP_X_REQUEST_ID="client-chosen-id-123")
    assert response["X-Request-ID"] == "client-chosen-id-123"
    assert AuditEvent.objects.filter(action="record.list").latest("id").request_id == "client-chosen-id-123"
    generated = bank_a.client.get("/api/v1/records", HTTP_X_REQUEST_ID="bad id\nwith newline")
    assert len(generated["X-Request-ID"]) == 32


def test_a_body_over_the_limit_is_413(bank_a, settings):
    settings.EXCHANGE_MAX_JSON_BODY = 2048
    response = bank_a.client.post("/api/v1/records", {"records": [{"x": "y" * 4000}]}, format="json")
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")


def test_members_are_throttled_with_retry_after(bank_a, settings):
    settings.EXCHANGE_THROTTLE_RATE = "3/minute"
    cache.clear()
    try:
        statuses = [bank_a.client.get("/api/v1/me").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        response = bank_a.client.get("/api/v1/me")
        assert response.json()["code"] == "throttled"
        assert int(response["Retry-After"]) >= 1
    finally:
        cache.clear()


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_") and k not in ("SECRET_KEY", "DEBUG")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    "missing",
    ["SECRET_KEY", "EXCHANGE_SUBJECT_KEY", "EXCHANGE_FIELD_KEYS", "EXCHANGE_AUDIT_SIGNING_KEY", "EXCHANGE_OPRF_KEY"],
)
def test_production_refuses_to_start_without_each_key(missing):
    env = {k: v for k, v in TEST_ENV.items() if k != missing}
    env["DEBUG"] = "0"
    result = _manage("check", **env)
    assert result.returncode != 0
    assert f"{missing} is not set" in result.stderr
    # A server start goes through the same check (the WSGI module refuses to load).
    server = subprocess.run(
        [sys.executable, "-c", "import config.wsgi"],
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if k not in TEST_ENV}, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert server.returncode != 0
    assert missing in server.stderr


def test_production_starts_with_every_key_and_never_prints_them():
    result = _manage("check", **TEST_ENV)
    assert result.returncode == 0, result.stderr
    for name in ("EXCHANGE_SUBJECT_KEY", "EXCHANGE_FIELD_KEYS", "EXCHANGE_AUDIT_SIGNING_KEY", "EXCHANGE_OPRF_KEY"):
        assert TEST_ENV[name] not in result.stdout + result.stderr


def test_a_malformed_key_is_refused_by_name():
    result = _manage("check", **{**TEST_ENV, "EXCHANGE_SUBJECT_KEY": "c2hvcnQ="})
    assert result.returncode != 0
    assert "EXCHANGE_SUBJECT_KEY must decode to 32 bytes" in result.stderr
    result = _manage("check", **{**TEST_ENV, "EXCHANGE_OPRF_KEY": "c2hvcnQ="})
    assert result.returncode != 0
    assert "EXCHANGE_OPRF_KEY must decode to 32 bytes" in result.stderr


def test_generate_keys_prints_a_complete_env_file_keeping_current_field_keys():
    result = _manage("generate_keys", **TEST_ENV)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split("=", 1) for line in result.stdout.strip().splitlines())
    assert set(lines) == {
        "SECRET_KEY",
        "EXCHANGE_SUBJECT_KEY",
        "EXCHANGE_FIELD_KEYS",
        "EXCHANGE_AUDIT_SIGNING_KEY",
        "EXCHANGE_OPRF_KEY",
    }
    ring = lines["EXCHANGE_FIELD_KEYS"].split(",")
    assert len(ring) == 2 and ring[1] == TEST_ENV["EXCHANGE_FIELD_KEYS"]
    # and they are valid: a production check passes with them
    assert _manage("check", **lines, DEBUG="0", SECURE_SSL_REDIRECT="0").returncode == 0


def test_the_deployment_check_passes_with_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **{**TEST_ENV, "SECURE_SSL_REDIRECT": "1"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_logs_of_a_full_request_cycle_hold_no_key_identifier_name_or_reference(bank_a, caplog):
    import logging

    from django.db import connection

    from tests.factories import consent, record, ric, subject

    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django")
    caplog.set_level(logging.DEBUG, logger="django.db.backends")
    connection.force_debug_cursor = True  # log every SQL statement with its parameters too
    try:
        body = record("SECRET-REF-42", 42, subject={**subject(42), "name": "Wang Secretname"})
        assert bank_a.client.post("/api/v1/records", {"records": [body]}, format="json").status_code == 201
        bad = record("SECRET-REF-43", 42, status="wrong")
        assert bank_a.client.post("/api/v1/records", {"records": [bad]}, format="json").status_code == 422
        consent_id = bank_a.client.post("/api/v1/consents", consent(42), format="json").json()["id"]
        inquiry = {"subject": subject(42), "consent_id": consent_id, "purpose": "credit_application"}
        assert bank_a.client.post("/api/v1/inquiries", inquiry, format="json").status_code == 200
        assert bank_a.client.get("/api/v1/records").status_code == 200
    finally:
        connection.force_debug_cursor = False
    text = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert "exchange_record" in text  # SQL really was logged
    for secret in (bank_a.key, ric(42), "Wang Secretname", "SECRET-REF-42", "SECRET-REF-43"):
        assert secret not in text


def test_an_unknown_api_post_is_a_problem_not_a_csrf_page(bank_a):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)  # as a real client: no CSRF cookie at all
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bank_a.key}")
    response = client.post("/api/v1/disputes//resolve", {"outcome": "upheld"}, format="json")
    assert (response.status_code, response["Content-Type"]) == (404, "application/problem+json")
