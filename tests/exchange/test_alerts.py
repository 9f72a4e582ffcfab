"""Compliance alerts: every rule firing and not firing, by the personas; alerts stored once per
window and updated, e-mailed to the compliance group once, printed by `compliance_alerts`, and
evaluated on schedule by run_worker (with an injected clock, no sleeping)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_bulk_write
from exchange.alerts import DAY, alert_close, alerts_evaluate, baseline_median, volume_picture
from exchange.evidence import evidence_mark_overdue, evidence_requests_open
from exchange.models import ComplianceAlert, Dispute, EvidenceRequest, Inquiry, InquiryHour, Record, RolledUpHour
from exchange.schedule import ComplianceRound, Every
from members import limits
from members.roles import AUDITOR, COMPLIANCE
from tests.factories import consent, record, subject

pytestmark = pytest.mark.django_db

ACTOR = "cli:test:compliance_alerts"


def _hour(moment):
    return moment.replace(minute=0, second=0, microsecond=0)


@pytest.fixture
def now():
    return timezone.now()


@pytest.fixture
def last_hour(now):
    """The last complete clock hour."""
    return _hour(now) - timedelta(hours=1)


def inquiries(member, hour, subjects: int, *, tag: str = "", repeat: int = 1) -> None:
    """`subjects` distinct subjects queried by the member within `hour`, each `repeat` times."""
    Inquiry.objects.bulk_create(
        Inquiry(
            member=member,
            subject_token=hashlib.sha256(f"{tag}{member.code}{hour}{n}".encode()).hexdigest(),
            purpose="credit_application",
            created_at=hour + timedelta(seconds=(n * 3571 + r * 17) % 3600),
        )
        for n in range(subjects)
        for r in range(repeat)
    )


def baseline(member, before, per_hour: int, *, hours_per_day: int = 8) -> None:
    """A steady 7-day history: `per_hour` distinct subjects in each of `hours_per_day` office hours."""
    for day in range(1, 8):
        for h in range(hours_per_day):
            inquiries(member, before - timedelta(days=day) + timedelta(hours=h), per_hour, tag=f"b{day}{h}")


def refusals(member_code, at, times: int, *, action: str, why: str, **details) -> None:
    audit_bulk_write(
        [
            AuditEvent(
                occurred_at=at + timedelta(seconds=n),
                actor=f"member:{member_code}",
                member_code=member_code,
                action=action,
                outcome="denied",
                details={"why": why, **details},
            )
            for n in range(times)
        ]
    )


def kinds(alerts) -> list[tuple[str, str]]:
    return sorted((a.member.code, a.kind) for a in alerts)


# --- inquiry_volume -----------------------------------------------------------------------------


def test_a_member_fishing_far_above_its_own_baseline_fires_inquiry_volume(bank_a, settings, last_hour):
    settings.EXCHANGE_ALERT_SUBJECTS_PER_HOUR = 20
    baseline(bank_a.member, last_hour, 5, hours_per_day=24)
    inquiries(bank_a.member, last_hour, 60, tag="fishing")
    alerts, new = alerts_evaluate(actor=ACTOR)
    [alert] = alerts
    assert new == 1 and alert.kind == "inquiry_volume" and alert.member == bank_a.member
    assert (alert.count, alert.threshold, alert.baseline) == (60, 20, 5)
    assert alert.window_start == last_hour and alert.window_end == last_hour + timedelta(hours=1)
    assert alert.first_at >= last_hour and alert.last_at < last_hour + timedelta(hours=1)


def test_a_busy_honest_member_with_a_steady_baseline_does_not_fire(bank_a, bank_b, settings, last_hour):
    settings.EXCHANGE_ALERT_SUBJECTS_PER_HOUR = 20
    # Well above the floor every hour, for a week: its own baseline sets its threshold (3 x 40).
    baseline(bank_a.member, last_hour, 40, hours_per_day=24)
    inquiries(bank_a.member, last_hour, 55, tag="busy day")
    # The same subjects asked again and again count once: distinct subjects, not inquiries.
    inquiries(bank_b.member, last_hour, 15, repeat=10)
    alerts, new = alerts_evaluate(actor=ACTOR)
    assert alerts == [] and new == 0


def test_the_baseline_median_counts_the_empty_hours_of_the_7_days_as_zero(bank_a, settings, last_hour):
    settings.EXCHANGE_ALERT_SUBJECTS_PER_HOUR = 20
    # Office hours only (8 of each day's 24): most of the 168 hours are empty, so the median hourly
    # count is 0 and the floor (20), not 3 x 20, is the threshold.
    baseline(bank_a.member, last_hour, 20)
    inquiries(bank_a.member, last_hour, 50, tag="busy day")
    [alert] = alerts_evaluate(actor=ACTOR)[0]
    assert (alert.kind, alert.count, alert.threshold, alert.baseline) == ("inquiry_volume", 50, 20, 0)


def test_the_baseline_median_is_over_all_168_hours():
    hour = _hour(timezone.now())
    active = {hour - timedelta(hours=n): {"subjects": 40} for n in range(1, 85)}  # 84 of 168 hours
    assert baseline_median(active, hour) == 20  # the two middle values: 0 and 40
    active[hour - timedelta(hours=85)] = {"subjects": 40}
    assert baseline_median(active, hour) == 40
    active[hour] = active[hour - timedelta(days=8)] = {"subjects": 1000}  # outside the 7 days before
    assert baseline_median(active, hour) == 40
    assert baseline_median({}, hour) == 0


def test_the_absolute_floor_holds_for_a_member_without_history(bank_a, settings, last_hour):
    settings.EXCHANGE_ALERT_SUBJECTS_PER_HOUR = 20
    inquiries(bank_a.member, last_hour, 20)
    assert alerts_evaluate(actor=ACTOR)[0] == []
    inquiries(bank_a.member, last_hour, 1, tag="one more")
    [alert] = alerts_evaluate(actor=ACTOR)[0]
    assert alert.count == 21 and alert.threshold == 20


# --- refusals ---------------------------------------------------------------------------------


def test_consent_denials_fire_above_the_hourly_threshold(bank_a, bank_b, settings, last_hour):
    settings.EXCHANGE_ALERT_DENIALS_PER_HOUR = 5
    refusals(bank_a.code, last_hour, 6, action="inquiry.create", why="consent_not_found")
    refusals(bank_b.code, last_hour, 5, action="inquiry.create", why="consent_expired")
    refusals(bank_b.code, last_hour, 9, action="inquiry.create", why="reciprocity_required")  # not a consent
    [alert] = alerts_evaluate(actor=ACTOR)[0]
    assert (alert.member, alert.kind, alert.count, alert.threshold) == (bank_a.member, "consent_denials", 6, 5)


def test_consent_denials_come_from_real_refused_inquiries(bank_a, settings):
    settings.EXCHANGE_ALERT_DENIALS_PER_HOUR = 2
    for n in range(3):
        body = {"subject": subject(n), "consent_id": "00000000-0000-0000-0000-000000000000", "purpose": "other"}
        body["purpose"] = "credit_application"
        assert bank_a.client.post("/api/v1/inquiries", body, format="json").status_code == 403
    assert kinds(alerts_evaluate(actor=ACTOR)[0]) == [(bank_a.code, "consent_denials")]


def test_any_evidence_reuse_refusal_fires(bank_a, bank_b):
    evidence = hashlib.sha256(b"one signature").hexdigest()
    assert (
        bank_a.client.post("/api/v1/consents", consent(1, evidence_sha256=evidence), format="json").status_code == 201
    )
    assert alerts_evaluate(actor=ACTOR)[0] == []
    assert (
        bank_a.client.post("/api/v1/consents", consent(2, evidence_sha256=evidence), format="json").status_code == 422
    )
    [alert] = alerts_evaluate(actor=ACTOR)[0]
    assert (alert.member, alert.kind, alert.count) == (bank_a.member, "evidence_reuse", 1)


def test_any_quota_refusal_fires_counting_the_aggregated_events(bank_a, bank_b, last_hour):
    refusals(bank_a.code, last_hour, 3, action="inquiry.create", why="quota_exceeded", count=40)
    refusals(bank_a.code, last_hour + timedelta(minutes=5), 1, action="dispute.open", why="quota_exceeded")
    refusals(bank_b.code, last_hour, 3, action="inquiry.create", why="throttled", count=99)
    [alert] = alerts_evaluate(actor=ACTOR)[0]
    assert (alert.member, alert.kind, alert.count) == (bank_a.member, "quota_exceeded", 121)


def test_the_quota_alert_counts_each_refusal_once_from_the_limits_own_events(bank_a, settings, monkeypatch):
    """Through members.limits: 3 refusals in one minute and 1 in the next are 4, not one more per
    minute with several (the minute is one event carrying its count)."""
    minute_start = timezone.now().timestamp() // 60 * 60
    moment = [minute_start]
    monkeypatch.setattr(limits, "clock", lambda: moment[0])
    settings.EXCHANGE_INQUIRY_QUOTA = 1
    limits.quota_take(bank_a.member, limits.Quota.INQUIRIES, action="inquiry.create")
    for offset in (1, 2, 3, 61):
        moment[0] = minute_start + offset
        with pytest.raises(limits.TooManyRequests):
            limits.quota_take(bank_a.member, limits.Quota.INQUIRIES, action="inquiry.create")
    moment[0] += 120
    limits.flood_events_write()
    refused = AuditEvent.objects.filter(outcome="denied", details__why="quota_exceeded")
    assert sorted(e.details["count"] for e in refused) == [1, 3]
    [alert] = alerts_evaluate(actor=ACTOR)[0]
    assert (alert.member, alert.kind, alert.count) == (bank_a.member, "quota_exceeded", 4)


# --- evidence requests and disputes --------------------------------------------------------------


def _requested(persona, n: int) -> EvidenceRequest:
    granted = persona.client.post("/api/v1/consents", consent(n), format="json").json()
    body = {"subject": subject(n), "consent_id": granted["id"], "purpose": "credit_application"}
    inquiry_id = persona.client.post("/api/v1/inquiries", body, format="json").json()["id"]
    return evidence_requests_open(member=persona.member, actor="staff:carl", inquiry_ids=[inquiry_id])[0]


def test_evidence_failed_fires_on_a_mismatch_or_an_overdue_request_not_on_a_verified_one(bank_a, bank_b):
    verified, mismatch = _requested(bank_a, 1), _requested(bank_a, 2)
    late = _requested(bank_b, 3)

    def send(request, body: bytes):
        url = f"/api/v1/evidence-requests/{request.pk}/evidence"
        return bank_a.client.generic("POST", url, body, content_type="application/pdf")

    assert send(verified, b"consent 1").json()["status"] == "verified"  # the factory's evidence is sha256("consent n")
    assert alerts_evaluate(actor=ACTOR)[0] == []
    assert send(mismatch, b"something else").json()["status"] == "mismatch"
    evidence_mark_overdue(actor="cli:worker", now=timezone.now() + timedelta(days=11))
    EvidenceRequest.objects.filter(pk=late.pk).update(overdue_at=timezone.now())
    alerts = alerts_evaluate(actor=ACTOR)[0]
    assert kinds(alerts) == [(bank_a.code, "evidence_failed"), (bank_b.code, "evidence_failed")]
    assert "1 mismatch" in next(a.detail for a in alerts if a.member == bank_a.member)


def _disputes(furnished, persona, count, at):
    for _ in range(count):
        Dispute.objects.create(
            record=furnished,
            subject_token=furnished.subject_token,
            filed_by=persona.member,
            reason="The borrower does not recognise this loan.",
            opened_at=at,
            due_at=at + timedelta(days=20),
        )


@pytest.fixture
def furnished(bank_b):
    response = bank_b.client.post("/api/v1/records", {"records": [record("B-1", 1)]}, format="json")
    return Record.objects.get(pk=response.json()["results"][0]["id"])


def test_dispute_volume_fires_above_the_daily_threshold(bank_a, bank_b, settings, furnished):
    settings.EXCHANGE_ALERT_DISPUTES_PER_DAY = 2
    recently = timezone.now() - timedelta(minutes=30)
    _disputes(furnished, bank_a, 2, recently)
    assert alerts_evaluate(actor=ACTOR)[0] == []
    _disputes(furnished, bank_a, 1, recently)
    _disputes(furnished, bank_b, 2, recently)
    [alert] = alerts_evaluate(actor=ACTOR)[0]
    assert (alert.member, alert.kind, alert.count, alert.threshold) == (bank_a.member, "dispute_volume", 3, 2)


def test_dispute_volume_counts_any_24_hours_across_midnight_not_a_calendar_day(bank_a, settings, furnished):
    settings.EXCHANGE_ALERT_DISPUTES_PER_DAY = 2
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    run = midnight + timedelta(hours=2)
    _disputes(furnished, bank_a, 2, midnight - timedelta(hours=3))  # the day before
    _disputes(furnished, bank_a, 1, midnight + timedelta(hours=1))
    [alert] = alerts_evaluate(actor=ACTOR, until=run)[0]
    assert (alert.kind, alert.count, alert.threshold) == ("dispute_volume", 3, 2)
    assert alert.window_start == midnight - timedelta(hours=3) and alert.window_end == midnight + timedelta(hours=1)


def test_dispute_volume_finds_any_24_hours_even_between_runs_and_in_the_past(bank_a, settings, furnished):
    settings.EXCHANGE_ALERT_DISPUTES_PER_DAY = 2
    noon = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=3)
    _disputes(furnished, bank_a, 2, noon + timedelta(seconds=1))
    _disputes(furnished, bank_a, 1, noon + DAY + timedelta(milliseconds=500))  # 23:59:59.5 after them
    assert alerts_evaluate(actor=ACTOR, until=noon + DAY)[0] == []  # the third not filed yet
    # A run 5 minutes later: the 24 hours that held all three ended between the two runs.
    [alert] = alerts_evaluate(actor=ACTOR, until=noon + DAY + timedelta(minutes=5))[0]
    assert (alert.count, alert.window_start) == (3, noon + timedelta(seconds=1))
    ComplianceAlert.objects.all().delete()
    # Days later, an evaluation over a span that holds them (a worker outage, `--since`) finds them too.
    later = noon + timedelta(days=2)
    [alert] = alerts_evaluate(actor=ACTOR, since=noon, until=later)[0]
    assert alert.count == 3


def test_a_flood_going_on_after_its_alert_was_closed_raises_a_new_one(bank_a, settings, furnished):
    settings.EXCHANGE_ALERT_DISPUTES_PER_DAY = 2
    start = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=4)
    _disputes(furnished, bank_a, 3, start)
    [first], new = alerts_evaluate(actor=ACTOR, until=start + timedelta(minutes=5))
    alert_close(alert=first, actor="staff:carl")
    _disputes(furnished, bank_a, 1, start + timedelta(hours=1))  # alone: under the threshold
    assert alerts_evaluate(actor=ACTOR, until=start + timedelta(hours=1, minutes=5))[1] == 0
    _disputes(furnished, bank_a, 2, start + timedelta(hours=2))  # 3 new ones within 24 hours
    [second], new = alerts_evaluate(actor=ACTOR, until=start + timedelta(hours=2, minutes=5))
    assert new == 1 and second.pk != first.pk and second.status == "open" and second.count == 3
    first.refresh_from_db()
    assert (first.status, first.count) == ("closed", 3)


def test_a_dispute_volume_alert_goes_on_while_its_24_hours_overlap_and_is_raised_once(bank_a, settings, furnished):
    settings.EXCHANGE_ALERT_DISPUTES_PER_DAY = 2
    run = timezone.now().replace(hour=12, minute=0, second=0, microsecond=0) - timedelta(days=3)
    _disputes(furnished, bank_a, 3, run - timedelta(hours=2))
    [first], new = alerts_evaluate(actor=ACTOR, until=run)
    assert new == 1
    _disputes(furnished, bank_a, 1, run + timedelta(minutes=2))
    [again], new = alerts_evaluate(actor=ACTOR, until=run + timedelta(minutes=5))
    assert new == 0 and again.pk == first.pk
    again.refresh_from_db()
    assert (again.count, again.window_start, again.window_end) == (
        4,
        run - timedelta(hours=2),
        run + timedelta(minutes=2),
    )
    # 23 hours later the first 3 have left the window: the count stays the most seen in 24 hours.
    _disputes(furnished, bank_a, 2, run + timedelta(hours=23))
    [later], new = alerts_evaluate(actor=ACTOR, until=run + timedelta(hours=23, minutes=5))
    assert new == 0 and later.pk == first.pk and ComplianceAlert.objects.get().count == 4
    # A day without disputes ends it: a new flood is a new alert.
    flood = run + timedelta(days=3)
    _disputes(furnished, bank_a, 3, flood)
    [other], new = alerts_evaluate(actor=ACTOR, until=flood + timedelta(minutes=1))
    assert new == 1 and other.pk != first.pk and other.count == 3
    assert AuditEvent.objects.filter(action="compliance_alert.raise").count() == 2


# --- storing, auditing, e-mailing --------------------------------------------------------------


def test_an_alert_is_raised_once_per_window_and_updated_as_it_grows(bank_a, last_hour):
    refusals(bank_a.code, last_hour, 1, action="inquiry.create", why="quota_exceeded", count=5)
    first, new = alerts_evaluate(actor=ACTOR)
    assert new == 1 and first[0].count == 5
    refusals(bank_a.code, last_hour + timedelta(minutes=30), 1, action="inquiry.create", why="quota_exceeded", count=7)
    again, new = alerts_evaluate(actor=ACTOR)
    assert new == 0 and [a.pk for a in again] == [first[0].pk]
    assert ComplianceAlert.objects.get().count == 12
    raised = AuditEvent.objects.filter(action="compliance_alert.raise")
    assert raised.count() == 1 and raised.get().member_code == bank_a.code


def test_new_alerts_are_emailed_once_to_the_compliance_group_only(bank_a, bank_b, last_hour):
    carl = User.objects.create_user("carl", "carl@exchange.example", "x", is_staff=True)
    carl.groups.add(Group.objects.get(name=COMPLIANCE))
    quiet = User.objects.create_user("nomail", "", "x", is_staff=True)
    quiet.groups.add(Group.objects.get(name=COMPLIANCE))
    audrey = User.objects.create_user("audrey", "audrey@exchange.example", "x", is_staff=True)
    audrey.groups.add(Group.objects.get(name=AUDITOR))
    refusals(bank_a.code, last_hour, 1, action="inquiry.create", why="quota_exceeded")
    refusals(bank_b.code, last_hour, 1, action="consent.register", why="consent_evidence_reused")
    alerts_evaluate(actor=ACTOR)
    [message] = mail.outbox
    assert message.to == ["carl@exchange.example"]
    assert "2 new compliance alerts" in message.subject
    assert f"{bank_a.code} quota_exceeded" in message.body and f"{bank_b.code} evidence_reuse" in message.body
    assert "/admin/exchange/compliancealert/" in message.body
    alerts_evaluate(actor=ACTOR)
    assert len(mail.outbox) == 1  # nothing new, nothing sent
    assert ComplianceAlert.objects.filter(emailed_at__isnull=True).count() == 0


def test_alerts_wait_for_a_recipient_rather_than_being_lost(bank_a, last_hour):
    refusals(bank_a.code, last_hour, 1, action="inquiry.create", why="quota_exceeded")
    alerts_evaluate(actor=ACTOR)
    assert mail.outbox == [] and ComplianceAlert.objects.get().emailed_at is None
    carl = User.objects.create_user("carl", "carl@exchange.example", "x", is_staff=True)
    carl.groups.add(Group.objects.get(name=COMPLIANCE))
    refusals(bank_a.code, last_hour + timedelta(hours=1), 1, action="inquiry.create", why="quota_exceeded")
    alerts_evaluate(actor=ACTOR)
    assert len(mail.outbox) == 1 and "2 new compliance alerts" in mail.outbox[0].subject


def test_compliance_alerts_prints_each_alert_as_json_and_is_audited(bank_a, last_hour):
    refusals(bank_a.code, last_hour, 2, action="inquiry.create", why="quota_exceeded", count=3)
    out = StringIO()
    call_command("compliance_alerts", "--json", stdout=out)
    [line] = out.getvalue().splitlines()
    row = json.loads(line)
    assert set(row) == {"member", "kind", "count", "first_at", "last_at", "detail"}
    assert (row["member"], row["kind"], row["count"]) == (bank_a.code, "quota_exceeded", 6)
    event = AuditEvent.objects.get(action="compliance_alert.evaluate")
    assert event.details["alerts"] == 1 and event.actor.startswith("cli:")
    out = StringIO()
    since = (last_hour + timedelta(hours=1)).isoformat()
    call_command("compliance_alerts", "--since", since, stdout=out)
    assert out.getvalue().strip().endswith(f"0 alerts (0 new) since {since}")


def test_the_dashboard_picture_sets_each_member_against_its_own_baseline(bank_a, settings, now):
    settings.EXCHANGE_ALERT_SUBJECTS_PER_HOUR = 20
    baseline(bank_a.member, _hour(now) - timedelta(days=1), 10, hours_per_day=24)  # quiet in the last 24 hours
    inquiries(bank_a.member, _hour(now) - timedelta(hours=2), 25, tag="recent")
    [picture] = volume_picture(now)
    assert picture.code == bank_a.code and picture.median == 10 and picture.threshold == 30
    assert picture.peak == 25 and len(picture.subjects) == 24


# --- the schedule (run_worker) -------------------------------------------------------------------


def test_every_runs_when_first_ticked_then_once_per_interval():
    clock = [1000.0]
    runs = []
    every = Every(300, lambda: runs.append(clock[0]), clock=lambda: clock[0])
    assert every.tick() and runs == [1000.0]
    clock[0] += 299
    assert not every.tick()
    clock[0] += 1
    assert every.tick() and len(runs) == 2


def test_a_failing_job_is_logged_and_tried_again_next_interval(caplog):
    clock = [0.0]
    calls = []

    def job():
        calls.append(1)
        raise RuntimeError("database away")

    every = Every(60, job, clock=lambda: clock[0])
    assert every.tick()
    clock[0] = 61
    assert every.tick() and len(calls) == 2


def test_the_compliance_round_marks_overdue_requests_and_raises_their_alerts(bank_a):
    request = _requested(bank_a, 1)
    later = request.due_at + timedelta(minutes=5)
    round_ = ComplianceRound("cli:worker", now=lambda: later)
    round_()
    assert EvidenceRequest.objects.get(pk=request.pk).status == "overdue"
    [alert] = ComplianceAlert.objects.all()
    assert alert.kind == "evidence_failed" and alert.member == bank_a.member
    assert round_.since == later


def test_run_worker_does_a_compliance_round_on_its_schedule(bank_a, monkeypatch):
    ticks = []

    class FakeSchedule:
        def tick(self):
            ticks.append(1)
            return True

    from exchange.management.commands import run_worker

    monkeypatch.setattr(run_worker, "compliance_schedule", lambda actor: FakeSchedule())
    monkeypatch.setattr(run_worker, "_database_backend", lambda: False)
    call_command("run_worker", "--once", stdout=StringIO())
    assert ticks == [1]


def test_past_hours_are_counted_once_then_read_from_the_hourly_roll_up(bank_a, settings, last_hour):
    settings.EXCHANGE_ALERT_SUBJECTS_PER_HOUR = 20
    baseline(bank_a.member, last_hour, 40, hours_per_day=24)
    inquiries(bank_a.member, last_hour, 55, tag="busy day")
    assert alerts_evaluate(actor=ACTOR)[0] == []
    assert InquiryHour.objects.filter(member=bank_a.member, subjects=40).count() == 7 * 24
    assert RolledUpHour.objects.count() >= 7 * 24  # empty hours too: they are not counted again
    # The baseline now comes from the roll-up: without it the threshold would fall to the floor.
    Inquiry.objects.filter(created_at__lt=last_hour - timedelta(hours=1)).delete()
    assert alerts_evaluate(actor=ACTOR)[0] == []
