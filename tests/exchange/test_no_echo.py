"""Refused values are never quoted back: a value in the wrong field could be a national ID."""

from __future__ import annotations

import json

import pytest

from tests.factories import consent, ric, subject

pytestmark = pytest.mark.django_db


def test_a_refused_choice_names_the_allowed_values_not_the_value_sent(bank_a):
    response = bank_a.client.post("/api/v1/consents", consent(1, purpose=ric(7), channel=ric(8)), format="json")
    assert response.status_code == 422
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert errors["purpose"].startswith("must be one of credit_application")
    assert errors["channel"] == "must be one of app, web, paper, recorded_call"
    body = {"subject": subject(1), "consent_id": "00000000-0000-0000-0000-000000000000", "purpose": ric(9)}
    response = bank_a.client.post("/api/v1/inquiries", body, format="json")
    assert response.status_code == 422
    assert not {ric(7), ric(8), ric(9)} & set(json.dumps(response.json()).split('"'))
    assert ric(9) not in response.content.decode()
