"""Idempotency records keep neither member references nor plain digests of request bodies
(issue #18), yet replay exactly, and every replay is audited."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection

from audit.models import AuditEvent
from exchange.idempotency import response_aad
from exchange.models import IdempotencyKey
from tests.factories import consent, record, ric

pytestmark = pytest.mark.django_db

REFERENCE = "LOAN-REF-SECRET-4471"


def stored_rows() -> bytes:
    """The idempotency table as the database holds it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {IdempotencyKey._meta.db_table}")
        rows = cursor.fetchall()
    assert rows
    return b"".join(bytes(v) if isinstance(v, (bytes, memoryview)) else str(v).encode() for row in rows for v in row)


def test_a_stored_response_holds_no_member_reference_and_replays_exactly(bank_a):
    body = {"records": [record(REFERENCE, 41)]}
    first = bank_a.client.post("/api/v1/records", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201 and REFERENCE in first.content.decode()
    dump = stored_rows()
    assert REFERENCE.encode() not in dump
    assert ric(41).encode() not in dump
    replay = bank_a.client.post("/api/v1/records", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.content == first.content


def test_the_fingerprint_is_keyed_not_a_plain_hash_of_the_body(bank_a):
    response = bank_a.client.post(
        "/api/v1/records", {"records": [record(REFERENCE, 41)]}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    request = response.wsgi_request
    plain = hashlib.sha256(b"POST\0/api/v1/records\0" + request.body).hexdigest()
    stored = IdempotencyKey.objects.get()
    assert stored.fingerprint != plain and plain.encode() not in stored_rows()


def test_a_stored_response_moved_to_another_row_does_not_open(bank_a):
    from core.crypto import DecryptionError, decrypt

    bank_a.client.post("/api/v1/records", {"records": [record("R-1", 1)]}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    row = IdempotencyKey.objects.get()
    with pytest.raises(DecryptionError):
        decrypt(bytes(row.response_sealed), aad=response_aad(row.pk + 1))


@pytest.mark.parametrize(
    ("path", "body", "action"),
    [
        ("/api/v1/records", {"records": [record("R-1", 1)]}, "record.submit.replay"),
        ("/api/v1/consents", consent(1), "consent.register.replay"),
    ],
)
def test_every_replay_is_audited(bank_a, path, body, action):
    first = bank_a.client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    assert not AuditEvent.objects.filter(action=action).exists()
    for _ in range(2):
        assert bank_a.client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")["Idempotent-Replayed"]
    events = AuditEvent.objects.filter(action=action)
    assert events.count() == 2
    assert {e.member_code for e in events} == {bank_a.code}
    assert all(e.actor.startswith(f"member:{bank_a.code}") for e in events)


def test_an_inquiry_replay_is_audited_with_the_inquiry(bank_a):
    consent_id = bank_a.client.post("/api/v1/consents", consent(1), format="json").json()["id"]
    body = {
        "subject": {"id_type": "CN_RIC", "id_number": ric(1)},
        "consent_id": consent_id,
        "purpose": "credit_application",
    }
    first = bank_a.client.post("/api/v1/inquiries", body, format="json", HTTP_IDEMPOTENCY_KEY="q-1")
    assert first.status_code == 200
    bank_a.client.post("/api/v1/inquiries", body, format="json", HTTP_IDEMPOTENCY_KEY="q-1")
    event = AuditEvent.objects.get(action="inquiry.create.replay")
    assert (event.object_type, event.object_id) == ("inquiry", first.json()["id"])


def test_another_member_cannot_replay_with_the_same_key(bank_a, bank_b):
    body = {"records": [record(REFERENCE, 41)]}
    bank_a.client.post("/api/v1/records", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    other = bank_b.client.post("/api/v1/records", body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert other.status_code == 201 and "Idempotent-Replayed" not in other
    assert not AuditEvent.objects.filter(action="record.submit.replay").exists()
