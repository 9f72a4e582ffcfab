"""One rule for every `/{id}` path of the member API: a malformed id, an unknown one and another
member's object are the same 404 `not_found`, each audited once as a refusal; a malformed id is
recorded only as malformed, never as the raw path text."""

from __future__ import annotations

import uuid

import pytest

from audit.models import AuditEvent

pytestmark = pytest.mark.django_db

# (method, path template, audited action, object type)
ENDPOINTS = [
    ("get", "/api/v1/records/{}", "record.read", "record"),
    ("get", "/api/v1/records/{}/history", "record.history", "record"),
    ("post", "/api/v1/records/{}/withdraw", "record.withdraw", "record"),
    ("get", "/api/v1/consents/{}", "consent.read", "consent"),
    ("post", "/api/v1/consents/{}/revoke", "consent.revoke", "consent"),
    ("get", "/api/v1/inquiries/{}", "inquiry.read", "inquiry"),
    ("get", "/api/v1/submissions/{}", "submission.read", "submission"),
    ("get", "/api/v1/submissions/{}/errors", "submission.errors", "submission"),
    ("get", "/api/v1/evidence-requests/{}", "evidence_request.read", "evidence_request"),
    ("post", "/api/v1/evidence-requests/{}/evidence", "evidence_request.answer", "evidence_request"),
    ("get", "/api/v1/disputes/{}", "dispute.read", "dispute"),
    ("post", "/api/v1/disputes/{}/resolve", "dispute.resolve", "dispute"),
]
MALFORMED = ["not-a-uuid", "12345", "0" * 33, "%E2%80%AE" + "a" * 200, "'%20OR%201=1--"]


def _call(persona, method: str, path: str):
    if path.endswith("/evidence"):
        return persona.client.generic("POST", path, b"%PDF-1.4 signed", content_type="application/pdf")
    if method == "post":
        body = {"withdraw": {"reason": "gone"}, "resolve": {"outcome": "upheld"}}.get(path.rsplit("/", 1)[1], {})
        return persona.client.post(path, body, format="json")
    return persona.client.get(path)


def _refusals(persona):
    return AuditEvent.objects.filter(member_code=persona.code, outcome="denied")


@pytest.mark.parametrize(("method", "template", "action", "object_type"), ENDPOINTS)
@pytest.mark.parametrize("malformed", MALFORMED)
def test_a_malformed_id_is_a_404_audited_once_as_not_found(bank_a, method, template, action, object_type, malformed):
    response = _call(bank_a, method, template.format(malformed))
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    [event] = _refusals(bank_a)
    assert (event.action, event.object_type, event.object_id) == (action, object_type, "")
    assert event.details == {"why": "not_found", "malformed_id": True}


@pytest.mark.parametrize(("method", "template", "action", "object_type"), ENDPOINTS)
def test_an_unknown_id_is_a_404_audited_once_with_its_id(bank_a, method, template, action, object_type):
    unknown = uuid.uuid4()
    response = _call(bank_a, method, template.format(unknown))
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    [event] = _refusals(bank_a)
    assert (event.action, event.object_type, event.object_id) == (action, object_type, str(unknown))
    assert event.details == {"why": "not_found"}
