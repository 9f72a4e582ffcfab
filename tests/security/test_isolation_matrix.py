"""Tenant isolation over every endpoint and method of config.api_urls: the owner of the data, a
peer member, the owner's keys that lack a scope, the owner while suspended, and no key. Each gets
the status the matrix below names, and no one but the owner sees anything of the owner's.

An endpoint added to config.api_urls without a row here fails test_the_matrix_covers_every_endpoint.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from members.models import MemberStatus, Scope
from members.services import api_key_issue, member_set_status
from tests.conftest import bearer
from tests.factories import consent, record, subject
from tests.security.conftest import OWNER_REFERENCE, api_endpoints

pytestmark = pytest.mark.django_db

# A valid blinded element (RFC 9497 Appendix A.1.2, test vector 1).
BLINDED = "hj8zDMGhJZ7VpZmKI6z9N/tDUaeTpbPAkLZC3cQ5uUU="

CSV = (
    "member_reference,id_type,id_number,product,principal,amount_overdue,days_past_due,status,"
    "opened_on,delinquent_since,as_of,notice_sent_on\n"
    "MATRIX-CSV-1,CN_RIC,{id},consumer_loan,100.00,10.00,40,delinquent,2025-01-10,2026-08-01,2026-09-15,2026-08-20\n"
)

# (METHOD, path): expected status for the owner, a peer member, the owner's submit-only key and
# its query-only key. No key is always 401 and a suspended member always 403 member_suspended.
# A peer's create makes its own object (records, consents, submissions) or is refused when the
# body names the owner's object (the owner's consent: 403 consent_required; inquiry: 404).
# The owner's second dispute on its only report line is a 409 conflict (the first is open), and
# so is its answer to a dispute that its submit-only key answered just before (a resolution is final).
MATRIX: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/api/v1/me"): {"owner": 200, "peer": 200, "submit_only": 200, "query_only": 200},
    ("GET", "/api/v1/records"): {"owner": 200, "peer": 200, "submit_only": 200, "query_only": 403},
    ("POST", "/api/v1/records"): {"owner": 201, "peer": 201, "submit_only": 201, "query_only": 403},
    ("GET", "/api/v1/records/{record_id}"): {"owner": 200, "peer": 404, "submit_only": 200, "query_only": 403},
    ("GET", "/api/v1/records/{record_id}/history"): {"owner": 200, "peer": 404, "submit_only": 200, "query_only": 403},
    ("POST", "/api/v1/records/{record_id}/withdraw"): {
        "owner": 200,
        "peer": 404,
        "submit_only": 200,
        "query_only": 403,
    },
    ("GET", "/api/v1/consents"): {"owner": 200, "peer": 200, "submit_only": 403, "query_only": 200},
    ("POST", "/api/v1/consents"): {"owner": 201, "peer": 201, "submit_only": 403, "query_only": 201},
    ("GET", "/api/v1/consents/{consent_id}"): {"owner": 200, "peer": 404, "submit_only": 403, "query_only": 200},
    ("POST", "/api/v1/consents/{consent_id}/revoke"): {
        "owner": 200,
        "peer": 404,
        "submit_only": 403,
        "query_only": 200,
    },
    ("GET", "/api/v1/inquiries"): {"owner": 200, "peer": 200, "submit_only": 403, "query_only": 200},
    ("POST", "/api/v1/inquiries"): {"owner": 200, "peer": 403, "submit_only": 403, "query_only": 200},
    ("GET", "/api/v1/inquiries/{inquiry_id}"): {"owner": 200, "peer": 404, "submit_only": 403, "query_only": 200},
    ("GET", "/api/v1/disputes"): {"owner": 200, "peer": 200, "submit_only": 200, "query_only": 200},
    ("POST", "/api/v1/disputes"): {"owner": 409, "peer": 404, "submit_only": 403, "query_only": 409},
    ("GET", "/api/v1/disputes/{dispute_id}"): {"owner": 200, "peer": 404, "submit_only": 200, "query_only": 200},
    ("POST", "/api/v1/disputes/{dispute_id}/resolve"): {
        "owner": 409,
        "peer": 404,
        "submit_only": 200,
        "query_only": 403,
    },
    ("GET", "/api/v1/evidence-requests"): {"owner": 200, "peer": 200, "submit_only": 403, "query_only": 200},
    ("GET", "/api/v1/evidence-requests/{evidence_request_id}"): {
        "owner": 200,
        "peer": 404,
        "submit_only": 403,
        "query_only": 200,
    },
    # The owner's query-only key answers first; the owner's own answer is then one too many.
    ("POST", "/api/v1/evidence-requests/{evidence_request_id}/evidence"): {
        "owner": 409,
        "peer": 404,
        "submit_only": 403,
        "query_only": 200,
    },
    # The OPRF key and evaluation hold nothing of anyone's: every member with either scope may call them.
    ("GET", "/api/v1/oprf/key"): {"owner": 200, "peer": 200, "submit_only": 200, "query_only": 200},
    ("POST", "/api/v1/oprf/evaluate"): {"owner": 200, "peer": 200, "submit_only": 200, "query_only": 200},
    ("GET", "/api/v1/submissions"): {"owner": 200, "peer": 200, "submit_only": 200, "query_only": 403},
    ("POST", "/api/v1/submissions"): {"owner": 202, "peer": 202, "submit_only": 202, "query_only": 403},
    ("GET", "/api/v1/submissions/{submission_id}"): {"owner": 200, "peer": 404, "submit_only": 200, "query_only": 403},
    ("GET", "/api/v1/submissions/{submission_id}/errors"): {
        "owner": 200,
        "peer": 404,
        "submit_only": 200,
        "query_only": 403,
    },
}
# Callers that change state go last: the owner's own keys, then the owner.
ORDER = ["anonymous", "peer", "suspended", "query_only", "submit_only", "owner"]


def test_the_matrix_covers_every_endpoint():
    assert sorted(MATRIX) == sorted(api_endpoints())


def request(client, method: str, path: str, world, caller: str):
    if method == "GET":
        return client.get(path)
    template = next(t for m, t in MATRIX if m == method and world.path(t) == path)
    n = 40 + ORDER.index(caller)
    bodies = {
        "/api/v1/records": {"records": [record(f"MATRIX-{caller}", n)]},
        "/api/v1/records/{record_id}/withdraw": {"reason": "matrix"},
        "/api/v1/consents": consent(n),
        "/api/v1/consents/{consent_id}/revoke": None,
        "/api/v1/inquiries": {
            "subject": subject(7),
            "consent_id": world.ids["consent_id"],
            "purpose": "credit_application",
        },
        "/api/v1/disputes": {"inquiry_id": world.ids["inquiry_id"], "line": 0, "reason": "matrix"},
        "/api/v1/disputes/{dispute_id}/resolve": {"outcome": "upheld", "note": "matrix"},
        "/api/v1/oprf/evaluate": {"blinded": [BLINDED]},
    }
    if template.endswith("/evidence"):
        return client.generic("POST", path, f"signed authorisation {caller}".encode(), content_type="application/pdf")
    if template == "/api/v1/submissions":
        body = CSV.format(id=subject(n)["id_number"]).encode()
        return client.generic("POST", path, body, content_type="text/csv")
    return client.post(path, bodies[template], format="json")


def body_text(response) -> str:
    if hasattr(response, "streaming_content"):
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


@pytest.mark.parametrize(("method", "template"), sorted(MATRIX), ids=lambda value: value)
def test_each_caller_gets_its_status_and_nothing_of_the_owners(method, template, world, bank_b):
    owner = world.owner
    submit_key = api_key_issue(member=owner.member, scopes=[Scope.SUBMIT], actor="test")[1]
    query_key = api_key_issue(member=owner.member, scopes=[Scope.QUERY], actor="test")[1]
    clients = {
        "anonymous": APIClient(),
        "peer": bank_b.client,
        "suspended": owner.client,
        "query_only": bearer(query_key),
        "submit_only": bearer(submit_key),
        "owner": owner.client,
    }
    expected = {**MATRIX[(method, template)], "anonymous": 401, "suspended": 403}
    path = world.path(template)
    # What a non-owner must never see: the owner's identity, references and object ids.
    secrets = [owner.member.code, owner.member.name, owner.key, *world.references, *world.ids.values()]
    for caller in ORDER:
        if caller == "suspended":
            member_set_status(member=owner.member, status=MemberStatus.SUSPENDED, actor="test")
        response = request(clients[caller], method, path, world, caller)
        if caller == "suspended":
            member_set_status(member=owner.member, status=MemberStatus.ACTIVE, actor="test")
        text = body_text(response)
        assert response.status_code == expected[caller], (caller, response.status_code, text[:300])
        if response.status_code >= 400:
            assert response["Content-Type"] == "application/problem+json"
            code = response.json()["code"]
            conflict = "already_answered" if template.endswith("/evidence") else "conflict"
            wanted = {401: "authentication_failed", 404: "not_found", 409: conflict}.get(response.status_code)
            if caller == "suspended":
                wanted = "member_suspended"
            elif caller.endswith("_only") and response.status_code == 403:
                wanted = "scope_required"
            assert wanted is None or code == wanted, (caller, code)
        if caller in ("anonymous", "peer", "suspended"):
            leaked = [secret for secret in secrets if secret in text]
            assert not leaked, (caller, leaked)
        elif caller != "owner":
            # the owner's own narrower keys may see its objects, never another member's key
            assert owner.key not in text


def test_a_peer_sees_the_owners_record_only_as_an_anonymous_line(world, bank_b):
    """The exchange's purpose: a peer with consent sees the delinquency, never who reported it."""
    granted = bank_b.client.post("/api/v1/consents", consent(7), format="json")
    body = {"subject": subject(7), "consent_id": granted.json()["id"], "purpose": "credit_application"}
    response = bank_b.client.post("/api/v1/inquiries", body, format="json")
    assert response.status_code == 200
    report = response.json()
    assert report["summary"]["open_delinquencies"] == 1
    assert report["records"][0]["reported_by_you"] is False
    text = response.content.decode()
    for secret in ("BANKA", "Bank A", OWNER_REFERENCE, *world.ids.values()):
        assert secret not in text
