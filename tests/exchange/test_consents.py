"""Consents: registration rules, derived status, revocation, and isolation between members."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from audit.models import AuditEvent
from exchange.models import Consent
from members.services import api_key_issue
from tests.conftest import bearer
from tests.factories import consent, ric

pytestmark = pytest.mark.django_db


def register(persona, body):
    return persona.client.post("/api/v1/consents", body, format="json")


def test_it_registers_an_active_consent(bank_a):
    response = register(bank_a, consent(1))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "active"
    assert body["subject"] == {"id_type": "CN_RIC"}
    assert body["purpose"] == "credit_application"
    stored = Consent.objects.get(pk=body["id"])
    assert stored.member == bank_a.member
    assert ric(1) not in response.content.decode()
    event = AuditEvent.objects.get(action="consent.register")
    assert event.subject_token == stored.subject_token and event.object_id == body["id"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"purpose": "marketing"}, "purpose"),
        ({"channel": "fax"}, "channel"),
        ({"evidence_sha256": "abc"}, "evidence_sha256"),
        ({"granted_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()}, "granted_at"),
        ({"expires_at": (datetime.now(UTC) - timedelta(days=2)).isoformat()}, "expires_at"),
        ({"expires_at": (datetime.now(UTC) + timedelta(days=400)).isoformat()}, "expires_at"),
        ({"granted_at": "yesterday"}, "granted_at"),
        ({"subject": {"id_type": "CN_RIC", "id_number": "123"}}, "subject.id_number"),
        ({"extra": True}, None),
    ],
)
def test_each_consent_rule_is_enforced(bank_a, overrides, field):
    response = register(bank_a, consent(1, **overrides))
    assert response.status_code == 422, response.content
    assert field in {e["field"] for e in response.json()["errors"]}
    assert Consent.objects.count() == 0


def test_a_consent_of_exactly_one_year_is_accepted():
    granted = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
    from exchange.consents import _one_year_after

    assert _one_year_after(granted) == datetime(2027, 3, 1, 9, 0, tzinfo=UTC)
    assert _one_year_after(datetime(2024, 2, 29, tzinfo=UTC)) == datetime(2025, 2, 28, tzinfo=UTC)


def test_status_is_derived_from_expiry_and_revocation(bank_a):
    consent_id = register(bank_a, consent(1)).json()["id"]
    Consent.objects.filter(pk=consent_id).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert bank_a.client.get(f"/api/v1/consents/{consent_id}").json()["status"] == "expired"
    other_id = register(bank_a, consent(2)).json()["id"]
    revoked = bank_a.client.post(f"/api/v1/consents/{other_id}/revoke")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    assert AuditEvent.objects.filter(action="consent.revoke", object_id=other_id).count() == 1


def test_members_see_only_their_own_consents(bank_a, bank_b):
    consent_id = register(bank_a, consent(1)).json()["id"]
    register(bank_b, consent(1))
    listed = bank_a.client.get("/api/v1/consents").json()
    assert [c["id"] for c in listed["results"]] == [consent_id]
    assert listed["next"] is None
    for response in (
        bank_b.client.get(f"/api/v1/consents/{consent_id}"),
        bank_b.client.post(f"/api/v1/consents/{consent_id}/revoke"),
        bank_b.client.get(f"/api/v1/consents/{uuid.uuid4()}"),
        bank_b.client.get("/api/v1/consents/not-a-uuid"),
    ):
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert Consent.objects.get(pk=consent_id).revoked_at is None


def test_consents_need_the_query_scope(bank_a):
    _key, submit_only = api_key_issue(member=bank_a.member, scopes=["submit"], actor="test")
    response = bearer(submit_only).post("/api/v1/consents", consent(1), format="json")
    assert (response.status_code, response.json()["code"]) == (403, "scope_required")
