"""Hostile JSON bodies get a clear 400 and change nothing."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from exchange.models import Record

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"records": [], "records": [{}]}', "repeats a key"),
        (b'{"records": [{"days_past_due": NaN}]}', "NaN"),
        (b'{"records": [{"days_past_due": Infinity}]}', "Infinity"),
        (b"[" * 5000 + b"]" * 5000, "nests deeper"),
        (b'{"records": "\xff\xfe"}', "UTF-8"),
        (b'{"records": [', "not valid JSON"),
        (b"", None),
    ],
)
def test_malformed_json_is_a_400_problem(bank_a, body, says):
    events_before = AuditEvent.objects.count()
    response = bank_a.client.post("/api/v1/records", body, content_type="application/json")
    assert response.status_code == 400, response.content
    problem = response.json()
    assert problem["code"] == "malformed_request"
    if says:
        assert says in problem["detail"]
    assert Record.objects.count() == 0
    assert AuditEvent.objects.count() == events_before  # nothing parsed, nothing to audit


def test_a_nul_byte_in_a_field_is_a_validation_error(bank_a):
    from tests.factories import record

    response = bank_a.client.post("/api/v1/records", {"records": [record("REF\x00-1", 1)]}, format="json")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "member_reference"
