"""One signed authorisation, two borrowers, two registrations at the same moment (two processes):
the check of the evidence hash and the insert run under one lock, so only one passes.

PostgreSQL only: SQLite (development) takes the write lock at BEGIN (`transaction_mode`
IMMEDIATE), so two registrations cannot interleave there to begin with, and a held first one
would block the second before it even checks.
"""

from __future__ import annotations

import hashlib
import threading

import pytest
from django.db import connection

from audit.models import AuditEvent
from exchange import consents
from exchange.models import Consent
from tests.conftest import make_persona
from tests.factories import consent
from tests.security.test_idempotency_races import Held

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        "connection.vendor != 'postgresql'",
        reason="SQLite serialises writing transactions (IMMEDIATE): two registrations cannot interleave",
    ),
]

EVIDENCE = hashlib.sha256(b"one signed authorisation").hexdigest()


def register(persona, n: int, results: dict) -> threading.Thread:
    def run():
        try:
            body = consent(n, evidence_sha256=EVIDENCE)
            results[n] = persona.client.post("/api/v1/consents", body, format="json")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            results[f"error {n}"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_two_registrations_of_one_evidence_for_two_subjects_at_once_let_one_pass(monkeypatch):
    bank_a = make_persona("BANKA", "Bank A")
    hold = Held(consents.insert_audited, before=True)  # the first waits after its check, before its insert
    monkeypatch.setattr(consents, "insert_audited", hold)
    results: dict = {}
    first = register(bank_a, 1, results)
    second = None
    try:
        assert hold.reached.wait(timeout=30)
        second = register(bank_a, 2, results)
        second.join(timeout=1.5)
        assert second.is_alive(), "the second registration did not wait for the first"
    finally:
        hold.release.set()
        first.join(timeout=60)
        if second is not None:
            second.join(timeout=60)
    assert not [key for key in results if str(key).startswith("error")], results
    assert (results[1].status_code, results[2].status_code) == (201, 422)
    assert results[2].json()["code"] == "consent_evidence_reused"
    assert Consent.objects.filter(evidence_sha256=EVIDENCE).count() == 1
    assert AuditEvent.objects.filter(action="consent.register", details__why="consent_evidence_reused").count() == 1


def test_registrations_of_other_hashes_do_not_wait(monkeypatch):
    bank_a = make_persona("BANKA", "Bank A")
    hold = Held(consents.insert_audited, before=True)
    monkeypatch.setattr(consents, "insert_audited", hold)
    results: dict = {}
    first = register(bank_a, 1, results)
    try:
        assert hold.reached.wait(timeout=30)
        other = bank_a.client.post("/api/v1/consents", consent(2), format="json")  # its own evidence
        assert other.status_code == 201
    finally:
        hold.release.set()
        first.join(timeout=60)
    assert results[1].status_code == 201
