"""Bulk files cannot be turned against the exchange (issue #18): a file of garbage stops at
EXCHANGE_MAX_ROW_ERRORS + 1 rejected rows, one member's queue is bounded in bytes, a suspended
member's queued file is not processed, and no plain hash of a file is kept or shown."""

from __future__ import annotations

import hashlib

import pytest

from audit.models import AuditEvent
from exchange.models import Record, Submission, SubmissionError
from members import limits
from members.services import member_set_status
from tests.exchange.test_submissions import csv_file, csv_row, process, upload
from tests.members.test_limits import Clock

pytestmark = pytest.mark.django_db


def test_a_file_of_garbage_stops_at_the_error_limit_keeping_what_was_committed(bank_a, settings):
    settings.EXCHANGE_MAX_ROW_ERRORS = 10
    settings.EXCHANGE_BULK_CHUNK_ROWS = 5
    good = [csv_row(f"L-{i}", i) for i in range(5)]  # the first chunk: stored
    body = csv_file(*good, *[","] * 1000)
    response = upload(bank_a, body)
    submission = process(response.json()["id"])
    assert (submission.status, submission.error_code) == ("failed", "too_many_errors")
    assert submission.rejected == 11 and submission.accepted == 5
    assert Record.objects.filter(member=bank_a.member).count() == 5
    assert SubmissionError.objects.filter(submission=submission).count() == 10
    assert "line 17" in submission.error  # header 1, good rows 2-6, bad rows from 7: the 11th is line 17
    shown = bank_a.client.get(f"/api/v1/submissions/{submission.pk}").json()
    assert (shown["status"], shown["error_code"], shown["rejected"]) == ("failed", "too_many_errors", 11)
    event = AuditEvent.objects.get(action="submission.fail", object_id=str(submission.pk))
    assert event.details["error_code"] == "too_many_errors"


def test_the_limit_counts_rows_not_error_messages(bank_a, settings):
    settings.EXCHANGE_MAX_ROW_ERRORS = 3
    # Three rows with several errors each stay under the limit of three rejected rows.
    bad = [csv_row(f"L-{i}", i, principal="x", amount_overdue="y", days_past_due="z") for i in range(3)]
    submission = process(upload(bank_a, csv_file(*bad, csv_row("OK", 9))).json()["id"])
    assert (submission.status, submission.rejected, submission.accepted) == ("completed", 3, 1)
    assert SubmissionError.objects.filter(submission=submission).count() == 9


def test_a_queued_file_of_a_member_suspended_before_it_is_processed_fails(bank_a):
    response = upload(bank_a, csv_file(csv_row("L-1", 1)))
    member_set_status(member=bank_a.member, status="suspended", actor="test")
    submission = process(response.json()["id"])
    assert (submission.status, submission.error_code) == ("failed", "member_suspended")
    assert not Record.objects.filter(member=bank_a.member).exists()


def test_a_member_suspended_while_its_file_is_processed_stops_at_the_next_chunk(bank_a, settings, monkeypatch):
    from exchange.bulk import worker

    settings.EXCHANGE_BULK_CHUNK_ROWS = 2
    response = upload(bank_a, csv_file(*[csv_row(f"L-{i}", i) for i in range(6)]))
    calls = {"n": 0}
    active = worker._member_active

    def suspended_after_first_chunk(member_id):
        calls["n"] += 1
        return active(member_id) and calls["n"] <= 2  # the claim's check and the first chunk's

    monkeypatch.setattr(worker, "_member_active", suspended_after_first_chunk)
    submission = process(response.json()["id"])
    assert (submission.status, submission.error_code, submission.accepted) == ("failed", "member_suspended", 2)
    assert Record.objects.filter(member=bank_a.member).count() == 2


def test_one_members_queue_is_bounded_in_bytes_and_others_are_not_affected(bank_a, bank_b, settings, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(limits, "clock", clock)
    first = csv_file(csv_row("L-1", 1))
    settings.EXCHANGE_MAX_QUEUED_BYTES = len(first) + 10
    assert upload(bank_a, first).status_code == 202
    response = upload(bank_a, csv_file(csv_row("L-2", 2)))
    assert response.status_code == 429
    assert (response.json()["code"], response["Retry-After"]) == ("quota_exceeded", "60")
    assert Submission.objects.filter(member=bank_a.member).count() == 1
    clock.now += 60 + limits.FLOOD_GRACE_SECONDS  # audited aggregated, as every quota refusal
    assert limits.flood_events_write() == 1
    assert AuditEvent.objects.filter(action="submission.create", outcome="denied", member_code=bank_a.code).exists()
    # Resending the queued file is a duplicate, not more bytes; another member has its own queue.
    assert upload(bank_a, first).json()["duplicate"] is True
    assert upload(bank_b, csv_file(csv_row("L-2", 2))).status_code == 202


def test_an_announced_size_over_the_limit_is_refused_before_the_body_is_read(bank_a, settings):
    settings.EXCHANGE_MAX_QUEUED_BYTES = 100
    body = csv_file(*[csv_row(f"L-{i}", i) for i in range(5)])
    assert upload(bank_a, body).status_code == 429
    assert not Submission.objects.exists()


def test_once_processed_the_queue_frees_up(bank_a, settings):
    first = csv_file(csv_row("L-1", 1))
    settings.EXCHANGE_MAX_QUEUED_BYTES = len(first) + 10
    process(upload(bank_a, first).json()["id"])
    assert upload(bank_a, csv_file(csv_row("L-2", 2))).status_code == 202


def test_no_plain_hash_of_a_file_is_stored_audited_or_shown(bank_a, bank_b):
    body = csv_file(csv_row("L-1", 1))
    plain = hashlib.sha256(body).hexdigest()
    response = upload(bank_a, body)
    submission = Submission.objects.get(pk=response.json()["id"])
    assert submission.file_digest != plain and len(submission.file_digest) == 64
    shown = bank_a.client.get(f"/api/v1/submissions/{submission.pk}").json()
    assert "sha256" not in shown and plain not in str(shown)
    for event in AuditEvent.objects.all():
        assert plain not in str(event.details)
    # Still found again by its digest; another member's copy of the same file is not linked.
    assert upload(bank_a, body).json() == {"id": str(submission.pk), "status": "queued", "duplicate": True}
    other = Submission.objects.get(pk=upload(bank_b, body).json()["id"])
    assert other.file_digest != submission.file_digest
