"""Disputes: filed from an inquiry line, flagged, answered each way, suppressed when overdue, isolated."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from exchange.disputes import dispute_open_by_staff
from exchange.models import Dispute, Record
from members.services import api_key_issue
from tests.conftest import bearer, make_persona
from tests.factories import consent, record, subject

pytestmark = pytest.mark.django_db

REASON = "I repaid this loan in full on 2026-09-01, receipt no. 4711"
NOTE = "Checked our ledger: repayment confirmed, record corrected"
REFERENCE = "A-LOAN-77"


def submit(persona, *records):
    response = persona.client.post("/api/v1/records", {"records": list(records)}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["results"]


def inquire(persona, n: int = 1) -> dict:
    granted = persona.client.post("/api/v1/consents", consent(n), format="json")
    assert granted.status_code == 201, granted.content
    body = {"subject": subject(n), "consent_id": granted.json()["id"], "purpose": "credit_application"}
    response = persona.client.post("/api/v1/inquiries", body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def _client(persona_or_client):
    return getattr(persona_or_client, "client", persona_or_client)


def file(persona, inquiry_id: str, line: int = 0, reason: str = REASON):
    return _client(persona).post(
        "/api/v1/disputes", {"inquiry_id": inquiry_id, "line": line, "reason": reason}, format="json"
    )


def resolve(persona, dispute_id: str, outcome: str, note: str | None = NOTE):
    return _client(persona).post(
        f"/api/v1/disputes/{dispute_id}/resolve", {"outcome": outcome, "note": note}, format="json"
    )


@pytest.fixture
def bank_c(db):
    return make_persona("BANKC", "Bank C")


@pytest.fixture
def case(bank_a, bank_b):
    """bank_a furnishes a record on subject 1; bank_b pulls a report and disputes its only line."""
    record_id = submit(bank_a, record(REFERENCE, 1))[0]["id"]
    inquiry = inquire(bank_b)
    assert [line["line"] for line in inquiry["records"]] == [0]
    response = file(bank_b, inquiry["id"])
    assert response.status_code == 201, response.content
    return {"record_id": record_id, "inquiry_id": inquiry["id"], "dispute": response.json()}


# --- filing ------------------------------------------------------------------------------------


def test_a_lender_files_a_dispute_from_a_line_of_its_inquiry(case, settings):
    dispute = case["dispute"]
    assert set(dispute) == {
        "id", "status", "outcome", "reason", "note", "opened_at", "due_at", "resolved_at", "inquiry_id", "line"
    }  # fmt: skip
    assert (dispute["status"], dispute["outcome"], dispute["note"], dispute["resolved_at"]) == (
        "open",
        None,
        None,
        None,
    )
    assert (dispute["reason"], dispute["inquiry_id"], dispute["line"]) == (REASON, case["inquiry_id"], 0)
    stored = Dispute.objects.get(pk=dispute["id"])
    assert str(stored.record_id) == case["record_id"]
    assert stored.due_at - stored.opened_at == timedelta(days=settings.EXCHANGE_DISPUTE_DAYS)
    event = AuditEvent.objects.get(action="dispute.open")
    assert (event.member_code, event.object_id, event.outcome) == ("BANKB", dispute["id"], "ok")
    assert event.subject_token == stored.subject_token


def test_the_reason_is_encrypted_in_the_database(case):
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT * FROM "{Dispute._meta.db_table}"')
        rows = cursor.fetchall()
    assert rows
    assert "repaid this loan" not in repr(rows)


def test_the_due_date_follows_the_setting(bank_a, bank_b, settings):
    settings.EXCHANGE_DISPUTE_DAYS = 7
    submit(bank_a, record(REFERENCE, 1))
    dispute = file(bank_b, inquire(bank_b)["id"]).json()
    stored = Dispute.objects.get(pk=dispute["id"])
    assert stored.due_at - stored.opened_at == timedelta(days=7)


def test_a_line_out_of_range_is_422_and_audited(bank_a, bank_b):
    submit(bank_a, record(REFERENCE, 1))
    inquiry = inquire(bank_b)
    response = file(bank_b, inquiry["id"], line=1)
    assert response.status_code == 422, response.content
    assert response.json()["errors"][0]["field"] == "line"
    event = AuditEvent.objects.filter(action="dispute.open").latest("id")
    assert (event.outcome, event.details["why"]) == ("denied", "line_out_of_range")
    assert file(bank_b, inquiry["id"], line=-1).status_code == 422  # refused by the body's own bounds
    event = AuditEvent.objects.filter(action="dispute.open").latest("id")
    assert (event.outcome, event.details["why"]) == ("denied", "validation_failed")
    assert Dispute.objects.count() == 0


def test_a_report_without_lines_cannot_be_disputed(bank_b):
    inquiry = inquire(bank_b, 5)
    response = file(bank_b, inquiry["id"])
    assert response.status_code == 422
    assert "no lines" in response.json()["detail"]


def test_another_members_inquiry_is_not_found(bank_a, bank_b):
    submit(bank_a, record(REFERENCE, 1))
    inquiry = inquire(bank_b)
    response = file(bank_a, inquiry["id"])
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert file(bank_a, str(uuid.uuid4())).status_code == 404
    assert file(bank_a, "not-a-uuid").status_code == 404
    assert Dispute.objects.count() == 0
    event = AuditEvent.objects.filter(action="dispute.open").latest("id")
    assert (event.member_code, event.outcome) == ("BANKA", "denied")


def test_a_reason_is_required(bank_a, bank_b):
    submit(bank_a, record(REFERENCE, 1))
    inquiry = inquire(bank_b)
    assert file(bank_b, inquiry["id"], reason="   ").status_code == 422
    response = bank_b.client.post("/api/v1/disputes", {"inquiry_id": inquiry["id"], "line": 0}, format="json")
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"reason"}


def test_the_same_filer_cannot_open_a_second_dispute_on_an_open_line(case, bank_b):
    again = file(bank_b, case["inquiry_id"])
    assert again.status_code == 409
    assert again.json()["code"] == "conflict"
    assert case["dispute"]["id"] in again.json()["detail"]
    assert Dispute.objects.count() == 1


def test_filing_needs_the_query_scope(bank_a, bank_b):
    submit(bank_a, record(REFERENCE, 1))
    inquiry = inquire(bank_b)
    _key, submit_only = api_key_issue(member=bank_b.member, scopes=["submit"], actor="test")
    response = file(bearer(submit_only), inquiry["id"])
    assert response.status_code == 403
    assert response.json()["code"] == "scope_required"


# --- the flag and the furnisher's view ---------------------------------------------------------


def test_the_furnisher_sees_the_open_dispute_and_the_record_is_flagged(case, bank_a, bank_b):
    listed = bank_a.client.get("/api/v1/disputes?status=open")
    assert listed.status_code == 200
    body = listed.json()
    assert body["next"] is None
    [item] = body["results"]
    assert (item["id"], item["record_id"], item["reason"]) == (case["dispute"]["id"], case["record_id"], REASON)
    assert "inquiry_id" not in item and "line" not in item
    assert bank_a.client.get("/api/v1/disputes?status=resolved").json()["results"] == []
    assert bank_a.client.get(f"/api/v1/records/{case['record_id']}").json()["disputed"] is True
    again = inquire(bank_b)
    assert again["records"][0]["disputed"] is True
    assert again["summary"]["disputed_count"] == 1
    assert AuditEvent.objects.filter(action="dispute.list", member_code="BANKA").exists()


def test_either_party_reads_the_dispute_and_reads_are_audited(case, bank_a, bank_b):
    dispute_id = case["dispute"]["id"]
    as_furnisher = bank_a.client.get(f"/api/v1/disputes/{dispute_id}")
    as_filer = bank_b.client.get(f"/api/v1/disputes/{dispute_id}")
    assert (as_furnisher.status_code, as_filer.status_code) == (200, 200)
    assert as_furnisher.json()["record_id"] == case["record_id"]
    assert "record_id" not in as_filer.json()
    assert set(AuditEvent.objects.filter(action="dispute.read").values_list("member_code", flat=True)) == {
        "BANKA",
        "BANKB",
    }


def test_a_list_filter_must_be_known(case, bank_a):
    assert bank_a.client.get("/api/v1/disputes?status=closed").status_code == 422
    assert bank_a.client.get("/api/v1/disputes?role=everyone").status_code == 422


def test_each_scope_opens_one_side_of_the_list(case, bank_a, bank_b):
    _key, query_only = api_key_issue(member=bank_a.member, scopes=["query"], actor="test")
    _key, submit_only = api_key_issue(member=bank_b.member, scopes=["submit"], actor="test")
    dispute_id = case["dispute"]["id"]
    # The furnisher's query-only key sees nothing to answer and cannot answer.
    assert bearer(query_only).get("/api/v1/disputes").json()["results"] == []
    refused = bearer(query_only).get("/api/v1/disputes?role=to_answer")
    assert (refused.status_code, refused.json()["code"]) == (403, "scope_required")
    event = AuditEvent.objects.filter(action="dispute.list").latest("id")
    assert (event.outcome, event.details["why"]) == ("denied", "scope_required")
    assert bearer(query_only).get(f"/api/v1/disputes/{dispute_id}").status_code == 403
    assert resolve(bearer(query_only), dispute_id, "upheld").status_code == 403
    # The filer's submit-only key does not see what it filed.
    assert bearer(submit_only).get("/api/v1/disputes").json()["results"] == []
    assert bearer(submit_only).get("/api/v1/disputes?role=filed").status_code == 403
    # Both-scope keys see each side, and the role filter narrows it.
    assert [d["id"] for d in bank_b.client.get("/api/v1/disputes?role=filed").json()["results"]] == [dispute_id]
    assert bank_b.client.get("/api/v1/disputes?role=to_answer").json()["results"] == []


def test_the_list_is_cursor_paginated_newest_first(bank_a, bank_b):
    submit(bank_a, *(record(f"A-{n}", 1) for n in range(3)))
    inquiry = inquire(bank_b)
    ids = [file(bank_b, inquiry["id"], line=n).json()["id"] for n in range(3)]
    first = bank_a.client.get("/api/v1/disputes?page_size=2").json()
    assert len(first["results"]) == 2 and first["next"]
    second = bank_a.client.get(first["next"]).json()
    assert second["next"] is None
    assert [d["id"] for d in first["results"] + second["results"]] == ids[::-1]


def test_listing_costs_the_same_queries_for_few_or_many_disputes(bank_a, bank_b):
    submit(bank_a, *(record(f"A-{n}", 1) for n in range(6)))
    inquiry = inquire(bank_b)
    file(bank_b, inquiry["id"], line=0)
    with CaptureQueriesContext(connection) as one:
        assert len(bank_a.client.get("/api/v1/disputes").json()["results"]) == 1
    for line in range(1, 6):
        file(bank_b, inquiry["id"], line=line)
    with CaptureQueriesContext(connection) as six:
        assert len(bank_a.client.get("/api/v1/disputes").json()["results"]) == 6
    assert len(six) == len(one)


# --- answering ---------------------------------------------------------------------------------


def test_corrected_without_a_new_version_is_refused(case, bank_a):
    response = resolve(bank_a, case["dispute"]["id"], "corrected")
    assert response.status_code == 422, response.content
    assert "new version" in response.json()["errors"][0]["message"]
    assert Dispute.objects.get(pk=case["dispute"]["id"]).status == "open"
    event = AuditEvent.objects.filter(action="dispute.resolve").latest("id")
    assert (event.outcome, event.details["why"]) == ("denied", "no_new_version")


def test_corrected_after_a_new_version_resolves_and_clears_the_flag(case, bank_a, bank_b):
    submit(bank_a, record(REFERENCE, 1, amount_overdue="0", days_past_due=0))
    response = resolve(bank_a, case["dispute"]["id"], "corrected")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["outcome"], body["note"]) == ("resolved", "corrected", NOTE)
    assert body["resolved_at"]
    assert bank_a.client.get(f"/api/v1/records/{case['record_id']}").json()["disputed"] is False
    line = inquire(bank_b)["records"][0]
    assert (line["disputed"], line["amount_overdue"]) == (False, "0.00")
    seen_by_filer = bank_b.client.get(f"/api/v1/disputes/{case['dispute']['id']}").json()
    assert (seen_by_filer["outcome"], seen_by_filer["note"]) == ("corrected", NOTE)
    event = AuditEvent.objects.get(action="dispute.resolve", outcome="ok")
    assert event.details == {"outcome": "corrected", "record": case["record_id"], "version": 2, "overdue": False}


def test_deleted_withdraws_the_record_from_every_report(case, bank_a, bank_b):
    response = resolve(bank_a, case["dispute"]["id"], "deleted")
    assert response.status_code == 200, response.content
    stored = Record.objects.get(pk=case["record_id"])
    assert stored.withdrawn_at is not None and stored.withdraw_reason
    assert bank_a.client.get(f"/api/v1/records/{case['record_id']}").json()["withdrawn"] is True
    assert inquire(bank_b)["records"] == []
    withdrawal = AuditEvent.objects.get(action="record.withdraw")
    assert (withdrawal.object_id, withdrawal.details["dispute"]) == (case["record_id"], case["dispute"]["id"])
    assert stored.versions.count() == 1  # history stays


def test_upheld_keeps_the_record_as_it_was(case, bank_a, bank_b):
    response = resolve(bank_a, case["dispute"]["id"], "upheld", note=None)
    assert response.status_code == 200, response.content
    assert (response.json()["outcome"], response.json()["note"]) == ("upheld", None)
    stored = Record.objects.get(pk=case["record_id"])
    assert (stored.withdrawn_at, stored.version) == (None, 1)
    line = inquire(bank_b)["records"][0]
    assert (line["disputed"], line["amount_overdue"]) == (False, "1500.50")


def test_resolving_twice_is_a_conflict(case, bank_a):
    assert resolve(bank_a, case["dispute"]["id"], "upheld").status_code == 200
    again = resolve(bank_a, case["dispute"]["id"], "deleted")
    assert again.status_code == 409
    assert again.json()["code"] == "conflict"
    stored = Dispute.objects.get(pk=case["dispute"]["id"])
    assert stored.outcome == "upheld"
    assert Record.objects.get(pk=case["record_id"]).withdrawn_at is None


def test_an_unknown_outcome_is_422(case, bank_a):
    response = resolve(bank_a, case["dispute"]["id"], "ignored")
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "outcome"


# --- the deadline ------------------------------------------------------------------------------


def test_an_overdue_unanswered_dispute_suppresses_the_record_until_answered(case, bank_a, bank_b):
    assert len(inquire(bank_b)["records"]) == 1  # open but not yet due: shown, flagged
    Dispute.objects.filter(pk=case["dispute"]["id"]).update(due_at=timezone.now() - timedelta(seconds=1))
    suppressed = inquire(bank_b)
    assert suppressed["records"] == []
    assert suppressed["summary"]["open_delinquencies"] == 0
    # The furnisher still sees its record, flagged, and may answer late.
    assert bank_a.client.get(f"/api/v1/records/{case['record_id']}").json()["disputed"] is True
    response = resolve(bank_a, case["dispute"]["id"], "upheld")
    assert response.status_code == 200
    assert len(inquire(bank_b)["records"]) == 1
    event = AuditEvent.objects.get(action="dispute.resolve", outcome="ok")
    assert event.details["overdue"] is True


def test_the_deadline_passes_with_the_clock_not_the_calendar(case, bank_b, settings, monkeypatch):
    later = timezone.now() + timedelta(days=settings.EXCHANGE_DISPUTE_DAYS, minutes=1)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert inquire(bank_b)["records"] == []


# --- isolation ---------------------------------------------------------------------------------


def test_a_third_member_can_neither_see_nor_answer_the_dispute(case, bank_c):
    dispute_id = case["dispute"]["id"]
    assert bank_c.client.get("/api/v1/disputes").json()["results"] == []
    read = bank_c.client.get(f"/api/v1/disputes/{dispute_id}")
    assert (read.status_code, read.json()["code"]) == (404, "not_found")
    answer = resolve(bank_c, dispute_id, "deleted")
    assert answer.status_code == 404
    assert Dispute.objects.get(pk=dispute_id).status == "open"
    assert AuditEvent.objects.filter(member_code="BANKC", outcome="denied", action="dispute.resolve").exists()


def test_the_filer_cannot_answer_its_own_dispute(case, bank_b):
    assert resolve(bank_b, case["dispute"]["id"], "deleted").status_code == 404
    assert Record.objects.get(pk=case["record_id"]).withdrawn_at is None


def test_the_filer_never_learns_the_furnisher(case, bank_a, bank_b):
    dispute_id = case["dispute"]["id"]
    answers = [file(bank_b, case["inquiry_id"])]  # the refused duplicate too
    answers.append(bank_b.client.get("/api/v1/disputes"))
    answers.append(bank_b.client.get(f"/api/v1/disputes/{dispute_id}"))
    answers.append(bank_b.client.get("/api/v1/inquiries"))
    submit(bank_a, record(REFERENCE, 1, amount_overdue="0"))
    assert resolve(bank_a, dispute_id, "corrected").status_code == 200
    answers.append(bank_b.client.get(f"/api/v1/disputes/{dispute_id}"))
    answers.append(bank_b.client.get("/api/v1/disputes?status=resolved"))
    text = repr(case["dispute"]) + "".join(a.content.decode() for a in answers)
    for secret in ("BANKA", "Bank A", str(bank_a.member.pk), case["record_id"], REFERENCE):
        assert secret not in text


# --- staff and audit ---------------------------------------------------------------------------


def test_staff_can_open_a_dispute_for_the_furnisher_to_answer(bank_a):
    record_id = submit(bank_a, record(REFERENCE, 1))[0]["id"]
    dispute = dispute_open_by_staff(record=Record.objects.get(pk=record_id), reason=REASON, actor="staff:alice")
    assert (dispute.filed_by, dispute.filed_by_staff, dispute.inquiry) == (None, "staff:alice", None)
    [item] = bank_a.client.get("/api/v1/disputes?status=open").json()["results"]
    assert (item["id"], item["record_id"]) == (str(dispute.pk), record_id)
    event = AuditEvent.objects.get(action="dispute.open")
    assert (event.actor, event.member_code, event.details["by_staff"]) == ("staff:alice", "BANKA", True)


def test_reasons_and_notes_never_reach_the_audit_log(case, bank_a):
    resolve(bank_a, case["dispute"]["id"], "upheld")
    events = repr(list(AuditEvent.objects.values()))
    assert "repaid this loan" not in events
    assert "ledger" not in events
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"dispute.open", "dispute.resolve"} <= actions
