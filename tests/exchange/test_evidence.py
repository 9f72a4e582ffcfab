"""Consent assurance: evidence reuse refused, evidence requests opened, listed and answered with the
document (verified, mismatch, oversize, already answered, another member's), and marked overdue."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEvent
from exchange.evidence import MAX_DOCUMENT_BYTES, evidence_mark_overdue, evidence_requests_open
from exchange.models import Consent, EvidenceRequest, Inquiry
from tests.factories import consent, subject

pytestmark = pytest.mark.django_db

DOCUMENT = b"%PDF-1.7 signed authorisation of borrower 1 " * 100


def grant(persona, n: int, **overrides) -> dict:
    response = persona.client.post("/api/v1/consents", consent(n, **overrides), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def inquire(persona, n: int, consent_id: str) -> str:
    body = {"subject": subject(n), "consent_id": consent_id, "purpose": "credit_application"}
    response = persona.client.post("/api/v1/inquiries", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()["id"]


def answer(persona, request_id, body: bytes, content_type: str = "application/pdf"):
    return persona.client.generic(
        "POST", f"/api/v1/evidence-requests/{request_id}/evidence", body, content_type=content_type
    )


@pytest.fixture
def checked(bank_a) -> EvidenceRequest:
    """bank_a's inquiry on borrower 1 under a consent whose evidence is DOCUMENT's hash, requested."""
    granted = grant(bank_a, 1, evidence_sha256=hashlib.sha256(DOCUMENT).hexdigest())
    inquiry_id = inquire(bank_a, 1, granted["id"])
    [request] = evidence_requests_open(member=bank_a.member, actor="staff:carl", inquiry_ids=[inquiry_id])
    return request


# --- evidence reuse --------------------------------------------------------------------------------


def test_registering_one_evidence_hash_for_a_second_subject_is_refused_and_audited(bank_a):
    evidence = hashlib.sha256(b"one borrower's signature").hexdigest()
    grant(bank_a, 1, evidence_sha256=evidence)
    response = bank_a.client.post("/api/v1/consents", consent(2, evidence_sha256=evidence.upper()), format="json")
    assert response.status_code == 422
    assert response.json()["code"] == "consent_evidence_reused"
    assert Consent.objects.count() == 1
    refusal = AuditEvent.objects.get(action="consent.register", outcome="denied")
    assert refusal.details["why"] == "consent_evidence_reused" and refusal.member_code == bank_a.code


def test_renewing_a_consent_for_the_same_subject_may_reuse_its_evidence(bank_a):
    evidence = hashlib.sha256(b"one borrower's signature").hexdigest()
    grant(bank_a, 1, evidence_sha256=evidence)
    grant(bank_a, 1, evidence_sha256=evidence, purpose="post_loan_management")
    assert Consent.objects.filter(evidence_sha256=evidence).count() == 2


def test_another_member_holding_the_same_hash_does_not_block_a_member(bank_a, bank_b):
    evidence = hashlib.sha256(b"a document").hexdigest()
    grant(bank_a, 1, evidence_sha256=evidence)
    grant(bank_b, 2, evidence_sha256=evidence)


def test_a_grant_time_minutes_ahead_of_the_clock_is_refused_a_moment_ahead_is_not(bank_a):
    ahead = datetime.now(UTC) + timedelta(minutes=10)
    response = bank_a.client.post("/api/v1/consents", consent(1, granted_at=ahead.isoformat()), format="json")
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "granted_at"
    slightly = datetime.now(UTC) + timedelta(seconds=30)
    assert grant(bank_a, 2, granted_at=slightly.isoformat())["status"] == "active"


# --- opening requests ---------------------------------------------------------------------------


def test_a_sample_picks_only_the_members_own_unrequested_inquiries(bank_a, bank_b):
    mine = [inquire(bank_a, n, grant(bank_a, n)["id"]) for n in range(1, 6)]
    inquire(bank_b, 9, grant(bank_b, 9)["id"])
    first = evidence_requests_open(member=bank_a.member, actor="cli:x", sample=3, rng=random.Random(1))
    assert len(first) == 3 and {str(r.inquiry_id) for r in first} <= set(mine)
    second = evidence_requests_open(member=bank_a.member, actor="cli:x", sample=5)
    assert len(second) == 2  # only the two left
    assert not {r.inquiry_id for r in first} & {r.inquiry_id for r in second}
    request = first[0]
    assert request.due_at - request.opened_at == timedelta(days=10)
    assert request.expected_sha256 == request.consent.evidence_sha256
    assert AuditEvent.objects.filter(action="evidence_request.open", member_code=bank_a.code).count() == 5


def test_request_evidence_command_prints_one_json_line_per_request(bank_a, bank_b):
    inquiry_id = inquire(bank_a, 1, grant(bank_a, 1)["id"])
    out = StringIO()
    call_command("request_evidence", bank_a.code, "--inquiry", inquiry_id, stdout=out)
    [line] = out.getvalue().splitlines()
    row = json.loads(line)
    assert set(row) == {"id", "member", "inquiry_id", "due_at"}
    assert row["member"] == bank_a.code and row["inquiry_id"] == inquiry_id
    with pytest.raises(CommandError, match="already has an evidence request"):
        call_command("request_evidence", bank_a.code, "--inquiry", inquiry_id, stdout=StringIO())
    other = inquire(bank_b, 2, grant(bank_b, 2)["id"])
    with pytest.raises(CommandError, match="is not one of"):
        call_command("request_evidence", bank_a.code, "--inquiry", other, stdout=StringIO())
    with pytest.raises(CommandError):
        call_command("request_evidence", bank_a.code, stdout=StringIO())
    out = StringIO()
    call_command("request_evidence", bank_b.code, "--sample", "3", stdout=out, stderr=StringIO())
    assert len(out.getvalue().splitlines()) == 1


# --- the member's side ------------------------------------------------------------------------------


def test_the_member_lists_its_requests_in_the_documented_shape(bank_a, bank_b, checked):
    response = bank_a.client.get("/api/v1/evidence-requests?status=open")
    assert response.status_code == 200
    [item] = response.json()["results"]
    assert set(item) == {"id", "inquiry_id", "consent_id", "purpose", "opened_at", "due_at", "status", "answered_at"}
    assert item["status"] == "open" and item["inquiry_id"] == str(checked.inquiry_id)
    assert bank_a.client.get("/api/v1/evidence-requests?status=verified").json()["results"] == []
    assert bank_a.client.get("/api/v1/evidence-requests?status=nonsense").status_code == 422
    assert bank_b.client.get("/api/v1/evidence-requests").json()["results"] == []
    assert AuditEvent.objects.filter(action="evidence_request.list", member_code=bank_a.code).exists()


def test_the_right_document_verifies_and_is_never_stored(bank_a, checked):
    response = answer(bank_a, checked.pk, DOCUMENT)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "verified" and response.json()["answered_at"]
    stored = EvidenceRequest.objects.get(pk=checked.pk)
    assert stored.document_sha256 == hashlib.sha256(DOCUMENT).hexdigest()
    assert stored.document_size == len(DOCUMENT)
    event = AuditEvent.objects.get(action="evidence_request.answer", outcome="ok")
    assert event.details["verdict"] == "verified" and event.details["size"] == len(DOCUMENT)
    assert DOCUMENT[:40].decode() not in json.dumps([e.details for e in AuditEvent.objects.all()])


def test_another_document_is_a_mismatch(bank_a, checked):
    response = answer(bank_a, checked.pk, b"a different, unsigned page", "image/jpeg")
    assert response.status_code == 200 and response.json()["status"] == "mismatch"


def test_one_answer_only(bank_a, checked):
    assert answer(bank_a, checked.pk, b"wrong").json()["status"] == "mismatch"
    response = answer(bank_a, checked.pk, DOCUMENT)
    assert response.status_code == 409 and response.json()["code"] == "already_answered"
    assert EvidenceRequest.objects.get(pk=checked.pk).status == "mismatch"
    assert AuditEvent.objects.filter(action="evidence_request.answer", details__why="already_answered").count() == 1


def test_another_members_request_is_not_found(bank_b, checked):
    assert bank_b.client.get(f"/api/v1/evidence-requests/{checked.pk}").status_code == 404
    response = answer(bank_b, checked.pk, DOCUMENT)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert EvidenceRequest.objects.get(pk=checked.pk).status == "open"
    assert AuditEvent.objects.filter(member_code=bank_b.code, outcome="denied", details__why="not_found").count() == 2


def test_a_document_over_20_mib_is_refused_with_413_and_audited(bank_a, checked):
    response = answer(bank_a, checked.pk, b"x" * (MAX_DOCUMENT_BYTES + 1))
    assert response.status_code == 413 and response.json()["code"] == "payload_too_large"
    assert EvidenceRequest.objects.get(pk=checked.pk).status == "open"
    assert AuditEvent.objects.filter(action="evidence_request.answer", details__why="payload_too_large").exists()
    assert answer(bank_a, checked.pk, b"x" * MAX_DOCUMENT_BYTES).status_code == 200  # exactly 20 MiB is fine


def test_a_streamed_body_without_length_is_hashed_and_capped(bank_a, checked):
    from core.problems import PayloadTooLarge
    from exchange.evidence import hash_stream

    chunks = iter([b"a" * 10, b"b" * 10, b""])
    assert hash_stream(lambda n: next(chunks), limit=20) == (hashlib.sha256(b"a" * 10 + b"b" * 10).hexdigest(), 20)
    chunks = iter([b"a" * 15, b"b" * 15, b""])
    with pytest.raises(PayloadTooLarge):
        hash_stream(lambda n: next(chunks), limit=20)


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_json_and_forms_are_not_documents(bank_a, checked, content_type):
    response = answer(bank_a, checked.pk, b'{"document": "..."}', content_type)
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"
    assert EvidenceRequest.objects.get(pk=checked.pk).status == "open"


def test_an_empty_body_is_not_an_answer(bank_a, checked):
    assert answer(bank_a, checked.pk, b"").status_code == 400
    assert EvidenceRequest.objects.get(pk=checked.pk).status == "open"


def test_a_key_without_the_query_scope_cannot_list_or_answer(bank_a, checked):
    from members.services import api_key_issue
    from tests.conftest import bearer

    _key, full = api_key_issue(member=bank_a.member, scopes=["submit"], actor="test")
    client = bearer(full)
    assert client.get("/api/v1/evidence-requests").status_code == 403


# --- overdue ----------------------------------------------------------------------------------------


def test_unanswered_requests_become_overdue_past_due_and_can_still_be_answered_late(bank_a, checked):
    assert evidence_mark_overdue(actor="cli:worker", now=checked.due_at - timedelta(seconds=1)) == 0
    assert evidence_mark_overdue(actor="cli:worker", now=checked.due_at + timedelta(seconds=1)) == 1
    assert evidence_mark_overdue(actor="cli:worker", now=checked.due_at + timedelta(days=1)) == 0
    stored = EvidenceRequest.objects.get(pk=checked.pk)
    assert stored.status == "overdue" and stored.overdue_at
    assert AuditEvent.objects.filter(action="evidence_request.overdue", object_id=str(checked.pk)).count() == 1
    assert bank_a.client.get("/api/v1/evidence-requests?status=overdue").json()["results"][0]["id"] == str(checked.pk)
    # A late answer is still judged (and shows as late in the console); the overdue alert stays raised.
    EvidenceRequest.objects.filter(pk=checked.pk).update(
        opened_at=timezone.now() - timedelta(days=11), due_at=timezone.now() - timedelta(days=1)
    )
    assert answer(bank_a, checked.pk, DOCUMENT).json()["status"] == "verified"
    assert EvidenceRequest.objects.get(pk=checked.pk).late


def test_inquiries_without_a_consent_left_cannot_be_checked(bank_a):
    inquiry_id = inquire(bank_a, 1, grant(bank_a, 1)["id"])
    Inquiry.objects.filter(pk=inquiry_id).update(consent=None)
    from exchange.evidence import EvidenceError

    with pytest.raises(EvidenceError, match="no consent"):
        evidence_requests_open(member=bank_a.member, actor="cli:x", inquiry_ids=[inquiry_id])
    assert evidence_requests_open(member=bank_a.member, actor="cli:x", sample=5) == []


# --- the status as of now -----------------------------------------------------------------------------


def _past_due(request: EvidenceRequest) -> None:
    """Its due date passes (run_worker has not run: the stored status is still open)."""
    EvidenceRequest.objects.filter(pk=request.pk).update(
        opened_at=timezone.now() - timedelta(days=11), due_at=timezone.now() - timedelta(seconds=1)
    )


def test_a_request_past_due_reads_overdue_at_once_before_run_worker_stores_it(bank_a, checked):
    _past_due(checked)
    assert EvidenceRequest.objects.get(pk=checked.pk).status == "open"  # stored: not marked yet
    assert bank_a.client.get(f"/api/v1/evidence-requests/{checked.pk}").json()["status"] == "overdue"
    [listed] = bank_a.client.get("/api/v1/evidence-requests").json()["results"]
    assert listed["status"] == "overdue"
    assert bank_a.client.get("/api/v1/evidence-requests?status=open").json()["results"] == []
    [overdue] = bank_a.client.get("/api/v1/evidence-requests?status=overdue").json()["results"]
    assert overdue["id"] == str(checked.pk)
    # run_worker still stores it, audited once; what the member reads does not change.
    assert evidence_mark_overdue(actor="cli:worker") == 1
    assert EvidenceRequest.objects.get(pk=checked.pk).status == "overdue"
    assert bank_a.client.get(f"/api/v1/evidence-requests/{checked.pk}").json()["status"] == "overdue"
    # Answered late, it reads as its verdict.
    assert answer(bank_a, checked.pk, DOCUMENT).json()["status"] == "verified"
    assert bank_a.client.get("/api/v1/evidence-requests?status=overdue").json()["results"] == []


def test_the_console_outcomes_count_a_request_past_due_as_overdue(bank_a, checked):
    from exchange.evidence import evidence_outcomes

    [before] = evidence_outcomes()
    assert (before["open"], before["overdue"]) == (1, 0)
    _past_due(checked)
    [after] = evidence_outcomes()
    assert (after["open"], after["overdue"], after["overdue_rate"]) == (0, 1, "100%")


# --- two operators at once ------------------------------------------------------------------------


def _opened_meanwhile(monkeypatch, bank_a, inquiry_ids):
    """Another operator's request for the inquiries is committed between our check and our insert."""
    from exchange import evidence

    real = evidence._insert_requests

    def racing(member, actor, chosen, now):
        if not EvidenceRequest.objects.filter(inquiry__in=inquiry_ids).exists():
            real(member, "staff:other", [i for i in chosen if str(i.pk) in inquiry_ids], now)
        return real(member, actor, chosen, now)

    monkeypatch.setattr(evidence, "_insert_requests", racing)


def test_naming_an_inquiry_another_operator_just_requested_is_refused_cleanly(bank_a, monkeypatch):
    from exchange.evidence import EvidenceError

    inquiry_id = inquire(bank_a, 1, grant(bank_a, 1)["id"])
    _opened_meanwhile(monkeypatch, bank_a, [inquiry_id])
    with pytest.raises(EvidenceError, match="already has an evidence request"):
        evidence_requests_open(member=bank_a.member, actor="staff:carl", inquiry_ids=[inquiry_id])
    [request] = EvidenceRequest.objects.all()
    assert request.opened_by == "staff:other"
    assert AuditEvent.objects.filter(action="evidence_request.open").count() == 1


def test_a_sample_leaves_out_an_inquiry_another_operator_just_requested(bank_a, monkeypatch):
    ids = [inquire(bank_a, n, grant(bank_a, n)["id"]) for n in range(1, 4)]
    _opened_meanwhile(monkeypatch, bank_a, ids[:1])
    opened = evidence_requests_open(member=bank_a.member, actor="staff:carl", sample=3)
    assert sorted(str(r.inquiry_id) for r in opened) == sorted(ids[1:])
    assert EvidenceRequest.objects.count() == 3
    assert AuditEvent.objects.filter(action="evidence_request.open", actor="staff:carl").count() == 2
