"""Retention: `purge_expired` deletes exactly what has outlived its term, audited, and nothing twice."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pytest
from django.core.management import call_command, get_commands
from django.utils import timezone

from audit.models import AuditEvent
from exchange.disputes import dispute_open_by_staff
from exchange.models import (
    Consent,
    Dispute,
    IdempotencyKey,
    Inquiry,
    Record,
    RecordVersion,
    Submission,
    SubmissionError,
)
from exchange.retention import PurgeCounts, purge_expired, years_before
from tests.factories import consent, record, subject

pytestmark = pytest.mark.django_db

YEARS = 5


def submit(persona, *records):
    response = persona.client.post("/api/v1/records", {"records": list(records)}, format="json")
    assert response.status_code == 201, response.content
    return {r["member_reference"]: r["id"] for r in response.json()["results"]}


def ended(ref: str, n: int, status: str, settled_on: date) -> dict:
    start = settled_on - timedelta(days=400)
    return record(
        ref,
        n,
        status=status,
        settled_on=settled_on.isoformat(),
        opened_on=(start - timedelta(days=200)).isoformat(),
        delinquent_since=start.isoformat(),
        as_of=settled_on.isoformat(),
        notice_sent_on=start.isoformat(),
        payment_history="",
    )


def purge(*args) -> str:
    out = io.StringIO()
    call_command("purge_expired", *args, stdout=out)
    return out.getvalue()


def audit_rows() -> list[dict]:
    return list(AuditEvent.objects.order_by("id").values())


@pytest.fixture
def world(bank_a, bank_b, settings):
    """Rows on both sides of every retention line, at today's clock."""
    settings.EXCHANGE_RETENTION_YEARS = YEARS
    now = timezone.now()
    today = timezone.localdate(now)
    line = years_before(today, YEARS)
    ids = submit(
        bank_a,
        ended("OLD", 1, "settled", line - timedelta(days=1)),
        ended("WRITTEN-OFF", 2, "written_off", line - timedelta(days=800)),
        ended("RECENT", 3, "settled", line + timedelta(days=1)),
        record(
            "OPEN",
            4,
            opened_on="2012-01-01",
            delinquent_since="2013-01-01",
            as_of="2013-06-01",
            notice_sent_on="2013-01-15",
        ),
    )
    # Withdrawn records: one withdrawn longer ago than the term goes, a recent one stays.
    withdrawn = submit(bank_a, record("WITHDRAWN-OLD", 5), record("WITHDRAWN-NEW", 6))
    for ref in withdrawn.values():
        assert (
            bank_a.client.post(f"/api/v1/records/{ref}/withdraw", {"reason": "error"}, format="json").status_code == 200
        )
    Record.objects.filter(pk=withdrawn["WITHDRAWN-OLD"]).update(
        withdrawn_at=years_before(now, YEARS) - timedelta(days=1)
    )
    Record.objects.filter(pk=withdrawn["WITHDRAWN-NEW"]).update(
        withdrawn_at=years_before(now, YEARS) + timedelta(days=1)
    )
    # Finished bulk submissions: the old one goes with its row errors.
    submissions = []
    for n, finished in ((1, years_before(now, YEARS) - timedelta(days=1)), (2, now - timedelta(days=1))):
        submission = Submission.objects.create(
            member=bank_a.member,
            actor="test",
            format="csv",
            file_digest=f"{n:064x}",
            size=10,
            file_name="x",
            status="completed",
            finished_at=finished,
        )
        SubmissionError.objects.create(submission=submission, line=2, field="status", message="must be one of ...")
        submissions.append(submission.pk)
    # A second version of the old record: its whole history goes with it.
    submit(bank_a, ended("OLD", 1, "settled", line - timedelta(days=1)) | {"amount_overdue": "0"})
    old, recent = Record.objects.get(pk=ids["OLD"]), Record.objects.get(pk=ids["RECENT"])
    dispute_open_by_staff(record=old, reason="not mine", actor="staff:alice")
    kept_dispute = dispute_open_by_staff(record=recent, reason="not mine either", actor="staff:alice")

    def make_consent(n, granted, expires, revoked=None):
        body = consent(n)
        return Consent.objects.create(
            member=bank_b.member,
            subject_token=f"{n:064x}",
            id_type="CN_RIC",
            purpose=body["purpose"],
            channel="app",
            evidence_sha256=body["evidence_sha256"],
            granted_at=granted,
            expires_at=expires,
            revoked_at=revoked,
        )

    gone_consents = [
        make_consent(10, years_before(now, 6) - timedelta(days=30), years_before(now, 6)),
        make_consent(
            11,
            years_before(now, 5) - timedelta(days=100),
            years_before(now, 5) + timedelta(days=200),
            revoked=years_before(now, 5) - timedelta(days=1),
        ),
    ]
    kept_consents = [
        make_consent(12, years_before(now, 4) - timedelta(days=30), years_before(now, 4)),
        make_consent(13, now - timedelta(days=1), now + timedelta(days=30)),
    ]
    old_inquiry = Inquiry.objects.create(
        member=bank_b.member,
        subject_token=recent.subject_token,
        consent=gone_consents[0],
        purpose="credit_application",
        created_at=years_before(now, YEARS) - timedelta(days=1),
        line_records=[str(recent.pk)],
    )
    Dispute.objects.filter(pk=kept_dispute.pk).update(inquiry=old_inquiry, line=0)
    new_inquiry = Inquiry.objects.create(
        member=bank_b.member,
        subject_token=recent.subject_token,
        consent=kept_consents[1],
        purpose="credit_application",
        created_at=now - timedelta(days=2),
    )
    old_key = IdempotencyKey.objects.create(
        member=bank_a.member, key="k-old", fingerprint="f", locked_until=now, created_at=now - timedelta(hours=49)
    )
    new_key = IdempotencyKey.objects.create(
        member=bank_a.member, key="k-new", fingerprint="f", locked_until=now, created_at=now - timedelta(hours=47)
    )
    return {
        "gone_records": {ids["OLD"], ids["WRITTEN-OFF"], withdrawn["WITHDRAWN-OLD"]},
        "kept_records": {ids["RECENT"], ids["OPEN"], withdrawn["WITHDRAWN-NEW"]},
        "kept_submission": submissions[1],
        "kept_dispute": kept_dispute.pk,
        "gone_consents": {c.pk for c in gone_consents},
        "kept_consents": {c.pk for c in kept_consents},
        "gone_inquiry": old_inquiry.pk,
        "kept_inquiry": new_inquiry.pk,
        "gone_key": old_key.pk,
        "kept_key": new_key.pk,
    }


def assert_purged(world) -> None:
    assert {str(pk) for pk in Record.objects.values_list("pk", flat=True)} == world["kept_records"]
    assert not RecordVersion.objects.filter(record_id__in=world["gone_records"]).exists()
    assert RecordVersion.objects.count() == 3
    assert list(Submission.objects.values_list("pk", flat=True)) == [world["kept_submission"]]
    assert SubmissionError.objects.count() == 1
    assert list(Dispute.objects.values_list("pk", flat=True)) == [world["kept_dispute"]]
    assert Dispute.objects.get().inquiry_id is None  # its inquiry went; the dispute stays
    consents = set(Consent.objects.values_list("pk", flat=True))
    assert world["kept_consents"] <= consents and not world["gone_consents"] & consents
    assert list(Inquiry.objects.values_list("pk", flat=True)) == [world["kept_inquiry"]]
    assert list(IdempotencyKey.objects.values_list("pk", flat=True)) == [world["kept_key"]]


EXPECTED = {
    "records": 3,
    "record_versions": 4,
    "disputes": 1,
    "inquiries": 1,
    "consents": 2,
    "submissions": 1,
    "submission_errors": 1,
    "idempotency_keys": 1,
}


def test_exactly_the_expired_rows_go_and_the_rest_stay(world):
    out = purge()
    assert_purged(world)
    for kind, count in EXPECTED.items():
        assert f"deleted {count} {kind.replace('_', ' ')}\n" in out


def test_a_second_run_deletes_nothing(world):
    purge()
    before = (Record.objects.count(), Consent.objects.count(), Inquiry.objects.count(), Dispute.objects.count())
    out = purge()
    assert (Record.objects.count(), Consent.objects.count(), Inquiry.objects.count(), Dispute.objects.count()) == before
    assert all(f"deleted 0 {kind.replace('_', ' ')}" in out for kind in EXPECTED)


def test_a_dry_run_counts_and_deletes_nothing(world):
    before = (Record.objects.count(), RecordVersion.objects.count(), Consent.objects.count(), Inquiry.objects.count())
    out = purge("--dry-run")
    after = (Record.objects.count(), RecordVersion.objects.count(), Consent.objects.count(), Inquiry.objects.count())
    assert after == before
    for kind, count in EXPECTED.items():
        assert f"would delete {count} {kind.replace('_', ' ')}\n" in out
    assert "nothing was deleted" in out
    event = AuditEvent.objects.get(action="retention.purge")
    assert event.details["dry_run"] is True


def test_small_batches_delete_the_same_rows(world):
    counts = purge_expired(actor="test", batch_size=1)
    assert counts == PurgeCounts(**EXPECTED)
    assert_purged(world)


def test_the_purge_is_audited_with_counts_only_and_leaves_the_audit_log_untouched(world):
    history = audit_rows()
    assert history
    purge()
    after = audit_rows()
    assert after[: len(history)] == history
    [event] = after[len(history) :]
    assert (event["action"], event["outcome"], event["actor"].startswith("cli:")) == ("retention.purge", "ok", True)
    assert event["subject_token"] == ""
    assert event["details"] == {"dry_run": False, "retention_years": YEARS, **EXPECTED}
    assert all(isinstance(value, int) for value in event["details"].values())


@pytest.mark.skipif("verify_audit" not in get_commands(), reason="verify_audit is not built yet")
def test_the_audit_chain_still_verifies_after_a_purge(world):
    call_command("seal_audit", stdout=io.StringIO())
    purge()
    call_command("seal_audit", stdout=io.StringIO())
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().startswith("OK")


def test_with_the_clock_moved_past_the_term_todays_ended_data_goes(bank_a, bank_b, settings, monkeypatch):
    settings.EXCHANGE_RETENTION_YEARS = YEARS
    today = timezone.localdate()
    ids = submit(
        bank_a,
        ended("SETTLED-TODAY", 1, "settled", today - timedelta(days=1)),
        record("STILL-OPEN", 2),
    )
    granted = bank_b.client.post("/api/v1/consents", consent(1), format="json").json()
    body = {"subject": subject(1), "consent_id": granted["id"], "purpose": "credit_application"}
    assert bank_b.client.post("/api/v1/inquiries", body, format="json").status_code == 200
    assert purge_expired(actor="test") == PurgeCounts()

    later = timezone.now() + timedelta(days=365 * YEARS + 120)
    monkeypatch.setattr(timezone, "now", lambda: later)
    counts = purge_expired(actor="test")
    assert (counts.records, counts.record_versions, counts.inquiries, counts.consents) == (1, 1, 1, 1)
    assert list(Record.objects.values_list("pk", flat=True)) == [Record.objects.get(pk=ids["STILL-OPEN"]).pk]
    assert not Consent.objects.exists() and not Inquiry.objects.exists()
