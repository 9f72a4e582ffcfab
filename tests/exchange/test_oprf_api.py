"""`/api/v1/oprf`: the public key, batch evaluation with a verifiable proof, errors by index, audit."""

from __future__ import annotations

import base64

import pytest
from cx_client import voprf
from cx_client.subjects import oprf_input

from audit.models import AuditEvent
from core import oprf
from tests.conftest import make_persona

KEY_URL = "/api/v1/oprf/key"
EVAL_URL = "/api/v1/oprf/evaluate"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_the_key_is_served_to_any_scope(db):
    for scopes in (["submit"], ["query"]):
        persona = make_persona(f"K{scopes[0][:3].upper()}", "Key reader", scopes)
        response = persona.client.get(KEY_URL)
        assert response.status_code == 200
        body = response.json()
        assert body == {
            "suite": "ristretto255-SHA512",
            "mode": "VOPRF",
            "key_id": oprf.oprf_key().key_id,
            "public_key": _b64(oprf.oprf_key().pair.public),
        }


def test_a_member_blinds_the_hub_evaluates_and_the_proof_verifies_against_the_served_key(bank_a):
    public = base64.b64decode(bank_a.client.get(KEY_URL).json()["public_key"])
    inputs = [oprf_input("CN_MOBILE", f"1380013{n:04d}") for n in range(5)]
    blinds, blinded = zip(*(voprf.blind(i) for i in inputs), strict=True)
    response = bank_a.client.post(EVAL_URL, {"blinded": [_b64(b) for b in blinded]}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["key_id"] == oprf.oprf_key().key_id
    evaluated = [base64.b64decode(e) for e in body["evaluated"]]
    proof = base64.b64decode(body["proof"])
    assert len(proof) == 64
    outputs = voprf.finalize_batch(inputs, blinds, evaluated, blinded, public, proof)
    # the same outputs the hub computes for the raw IDs (RFC 9497 Evaluate)
    assert outputs == [oprf.evaluate_subject("CN_MOBILE", f"1380013{n:04d}") for n in range(5)]
    # a reordered answer does not verify
    assert not voprf.verify_proof(public, blinded, list(reversed(evaluated)), proof)


def test_one_audit_event_per_call_with_the_count_and_nothing_else(bank_a):
    blinded = [_b64(voprf.blind(b"x%d" % n)[1]) for n in range(3)]
    before = AuditEvent.objects.count()
    assert bank_a.client.post(EVAL_URL, {"blinded": blinded}, format="json").status_code == 200
    events = list(AuditEvent.objects.order_by("-id")[: AuditEvent.objects.count() - before])
    evaluations = [e for e in events if e.action == "oprf.evaluate"]
    assert len(evaluations) == 1
    event = evaluations[0]
    assert event.member_code == "BANKA"
    assert event.details["count"] == 3
    assert not any(b in str(event.details) for b in blinded)


def test_bad_elements_are_422_by_index_nothing_is_evaluated_and_the_refusal_is_audited(bank_a):
    good = _b64(voprf.blind(b"x")[1])
    before = AuditEvent.objects.filter(action="oprf.evaluate").count()
    response = bank_a.client.post(
        EVAL_URL, {"blinded": [good, _b64(bytes(32)), good, _b64(b"\xff" * 32), "%%"]}, format="json"
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_failed"
    assert [(e["index"], e["field"]) for e in body["errors"]] == [(1, "blinded"), (3, "blinded"), (4, "blinded")]
    [refusal] = AuditEvent.objects.filter(action="oprf.evaluate").order_by("-id")[:1]
    assert AuditEvent.objects.filter(action="oprf.evaluate").count() == before + 1
    assert (refusal.outcome, refusal.details) == ("denied", {"why": "validation_failed", "count": 5, "errors": 3})


@pytest.mark.parametrize(
    "body",
    [{"blinded": []}, {"blinded": ["AAAA"] * 1001}, {"blinded": "AAAA"}, {"elements": ["AAAA"]}, {}],
    ids=["empty", "too-many", "not-a-list", "unknown-field", "missing"],
)
def test_the_batch_must_hold_1_to_1000_elements(bank_a, body):
    response = bank_a.client.post(EVAL_URL, body, format="json")
    assert response.status_code == 422
    assert response.json()["code"] == "validation_failed"


def test_a_full_batch_of_1000_is_evaluated(bank_a):
    blinded = [voprf.blind(b"%d" % n)[1] for n in range(1000)]
    response = bank_a.client.post(EVAL_URL, {"blinded": [_b64(b) for b in blinded]}, format="json")
    assert response.status_code == 200
    body = response.json()
    evaluated = [base64.b64decode(e) for e in body["evaluated"]]
    assert voprf.verify_proof(oprf.oprf_key().pair.public, blinded, evaluated, base64.b64decode(body["proof"]))


@pytest.mark.django_db  # a refused key is counted against the client address, in the database
def test_no_key_no_evaluation(outsider):
    assert outsider.get(KEY_URL).status_code == 401
    assert outsider.post(EVAL_URL, {"blinded": ["AAAA"]}, format="json").status_code == 401


def test_evaluations_count_against_the_members_daily_oprf_quota(bank_a):
    from audit.actors import cli_actor
    from members.services import member_set_limits

    member_set_limits(member=bank_a.member, actor=cli_actor("test"), oprf_per_day=5)
    three = [_b64(voprf.blind(b"q%d" % n)[1]) for n in range(3)]
    assert bank_a.client.post(EVAL_URL, {"blinded": three}, format="json").status_code == 200
    refused = bank_a.client.post(EVAL_URL, {"blinded": three}, format="json")  # 6 > 5
    assert (refused.status_code, refused.json()["code"]) == (429, "quota_exceeded")
    assert int(refused["Retry-After"]) > 0
    two = three[:2]  # the refused call counted nothing: 3 + 2 = 5 still fits
    assert bank_a.client.post(EVAL_URL, {"blinded": two}, format="json").status_code == 200
