"""Compliance alerts: rules over each member's behaviour, evaluated by `compliance_alerts` and on
schedule by `run_worker`, stored so the console lists them without recomputing, and e-mailed to the
compliance group.

Every rule is an aggregate query over an indexed time range (inquiries by `created_at`, refusals
by the partial index of denied audit events, disputes by `opened_at`, evidence requests by status),
grouped by member and clock hour (disputes: by member over the 24 hours ending at the run); Python
only walks the aggregated rows. Re-evaluating a window updates its alert (the count may grow) and
never raises it twice.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, IntegerField, Max, Min, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, TruncHour
from django.utils import timezone

from audit.actions import Action
from audit.models import AuditEvent, Outcome
from audit.services import audit_write
from exchange.models import (
    AlertKind,
    AlertStatus,
    ComplianceAlert,
    Dispute,
    EvidenceRequest,
    EvidenceStatus,
    Inquiry,
    InquiryHour,
    RolledUpHour,
)
from members.models import Member
from members.roles import COMPLIANCE

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
BASELINE = timedelta(days=7)
BASELINE_HOURS = 7 * 24
EVIDENCE_REUSED = "consent_evidence_reused"
QUOTA_EXCEEDED = "quota_exceeded"


@dataclass
class Finding:
    member_id: object
    kind: str
    window_start: datetime
    window_end: datetime
    count: int
    threshold: int
    first_at: datetime
    last_at: datetime
    detail: str
    baseline: int | None = None


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _span(start: datetime) -> str:
    return f"{start:%Y-%m-%d %H:%M}-{start + HOUR:%H:%M} UTC"


# --- inquiry_volume: distinct subjects per hour against the member's own baseline ---------------


LIVE = HOUR  # the current and the previous clock hour are always counted from the inquiries


def _hourly_aggregate(start: datetime, until: datetime, *, inclusive: bool = True):
    """Per member and clock hour in the range: distinct subjects, first and last inquiry. One
    aggregate over the `created_at` range, read from the index inquiry_created_idx alone."""
    end = {"created_at__lte": until} if inclusive else {"created_at__lt": until}
    return (
        Inquiry.objects.filter(created_at__gte=start, **end)
        .annotate(hour=TruncHour("created_at"))
        .order_by()
        .values("member_id", "hour")
        .annotate(subjects=Count("subject_token", distinct=True), first=Min("created_at"), last=Max("created_at"))
    )


def _roll_up(start: datetime, final: datetime) -> list[dict]:
    """The hourly rows of [start, final), every hour of which has ended more than an hour ago:
    read from InquiryHour, the hours not rolled up yet counted once and stored."""
    done = set(RolledUpHour.objects.filter(hour__gte=start, hour__lt=final).values_list("hour", flat=True))
    rows = [
        {"member_id": m, "hour": h, "subjects": n, "first": f, "last": last}
        for m, h, n, f, last in InquiryHour.objects.filter(hour__gte=start, hour__lt=final).values_list(
            "member_id", "hour", "subjects", "first_at", "last_at"
        )
        if h in done
    ]
    missing = []
    hour = start
    while hour < final:
        if hour not in done:
            missing.append(hour)
        hour += HOUR
    if not missing:
        return rows
    wanted = set(missing)
    fresh = [row for row in _hourly_aggregate(missing[0], missing[-1] + HOUR, inclusive=False) if row["hour"] in wanted]
    with transaction.atomic():
        InquiryHour.objects.filter(hour__in=missing).delete()  # a half-written hour of a crashed run
        InquiryHour.objects.bulk_create(
            [
                InquiryHour(
                    member_id=r["member_id"],
                    hour=r["hour"],
                    subjects=r["subjects"],
                    first_at=r["first"],
                    last_at=r["last"],
                )
                for r in fresh
            ],
            ignore_conflicts=True,
        )
        RolledUpHour.objects.bulk_create([RolledUpHour(hour=h) for h in missing], ignore_conflicts=True)
    return rows + fresh


def hourly_subjects(start: datetime, until: datetime) -> dict[object, dict[datetime, dict]]:
    """Per member, per clock hour from `start`'s hour to `until`: distinct subjects, first and last
    inquiry. Hours that ended more than an hour ago come from the hourly roll-up (InquiryHour),
    counted once; the recent ones from the inquiries, every time."""
    start = _hour(start)
    final = max(start, min(_hour(timezone.now()) - LIVE, _hour(until)))
    hours: dict[object, dict[datetime, dict]] = defaultdict(dict)
    for row in [*_roll_up(start, final), *_hourly_aggregate(final, until)]:
        hours[row["member_id"]][row["hour"]] = row
    return hours


def baseline_median(hours: dict[datetime, dict], hour: datetime) -> float:
    """The member's median distinct subjects per hour over the 168 clock hours before `hour`, the
    hours without an inquiry counting as 0 (the aggregates hold only the hours with inquiries: the
    empty ones are added here, never queried)."""
    prior = [row["subjects"] for at, row in hours.items() if hour - BASELINE <= at < hour]
    return statistics.median(prior + [0] * (BASELINE_HOURS - len(prior)))


def volume_threshold(median: float) -> int:
    """The count an hour must exceed: max(floor, 3 x median), as a whole number."""
    return max(settings.EXCHANGE_ALERT_SUBJECTS_PER_HOUR, math.floor(3 * median))


def rule_inquiry_volume(start: datetime, until: datetime) -> list[Finding]:
    findings = []
    for member_id, hours in hourly_subjects(start - BASELINE, until).items():
        for hour, row in hours.items():
            if hour < start:
                continue
            median = baseline_median(hours, hour)
            threshold = volume_threshold(median)
            if row["subjects"] > threshold:
                findings.append(
                    Finding(
                        member_id,
                        AlertKind.INQUIRY_VOLUME,
                        hour,
                        hour + HOUR,
                        row["subjects"],
                        threshold,
                        row["first"],
                        row["last"],
                        f"{row['subjects']} distinct subjects in {_span(hour)}; threshold {threshold} "
                        f"(7-day median {median:g} per hour)",
                        baseline=round(median),
                    )
                )
    return findings


# --- refusals from the audit log (partial index audit_denied_time_idx) ----------------------------


def _denied(start: datetime, until: datetime):
    return AuditEvent.objects.filter(outcome=Outcome.DENIED, occurred_at__gte=start, occurred_at__lte=until).exclude(
        member_code=""
    )


def _hourly_refusals(queryset, *, weight=None):
    count = Sum(weight) if weight is not None else Count("id")
    return (
        queryset.annotate(hour=TruncHour("occurred_at"))
        .order_by()
        .values("member_code", "hour")
        .annotate(n=count, first=Min("occurred_at"), last=Max("occurred_at"))
    )


def _refusal_findings(rows, kind: str, threshold: int, what: str, members: dict[str, object]) -> list[Finding]:
    findings = []
    for row in rows:
        member_id = members.get(row["member_code"])
        if member_id is None or row["n"] <= threshold:
            continue
        findings.append(
            Finding(
                member_id,
                kind,
                row["hour"],
                row["hour"] + HOUR,
                row["n"],
                threshold,
                row["first"],
                row["last"],
                f"{row['n']} {what} in {_span(row['hour'])}" + (f"; threshold {threshold}" if threshold else ""),
            )
        )
    return findings


def rule_consent_denials(start: datetime, until: datetime, members: dict[str, object]) -> list[Finding]:
    rows = _hourly_refusals(
        _denied(start, until).filter(action=Action.INQUIRY_CREATE, details__why__startswith="consent_")
    )
    threshold = settings.EXCHANGE_ALERT_DENIALS_PER_HOUR
    return _refusal_findings(rows, AlertKind.CONSENT_DENIALS, threshold, "consent_required refusals", members)


def rule_evidence_reuse(start: datetime, until: datetime, members: dict[str, object]) -> list[Finding]:
    rows = _hourly_refusals(_denied(start, until).filter(action=Action.CONSENT_REGISTER, details__why=EVIDENCE_REUSED))
    return _refusal_findings(rows, AlertKind.EVIDENCE_REUSE, 0, "consents refused for reused evidence", members)


def rule_quota_exceeded(start: datetime, until: datetime, members: dict[str, object]) -> list[Finding]:
    # Quota refusals come in floods and are audited aggregated: exactly one event per member, code
    # and minute, written once the minute is over and carrying the minute's `count` of refusals
    # (members/limits.py). The rule sums the counts (an event without one counts 1).
    weight = Coalesce(Cast(KeyTextTransform("count", "details"), IntegerField()), 1)
    rows = _hourly_refusals(_denied(start, until).filter(details__why=QUOTA_EXCEEDED), weight=weight)
    return _refusal_findings(rows, AlertKind.QUOTA_EXCEEDED, 0, "quota refusals", members)


# --- evidence requests and disputes ------------------------------------------------------------


def rule_evidence_failed(start: datetime, until: datetime) -> list[Finding]:
    buckets: dict[tuple, dict] = {}
    for field, label, queryset in (
        ("answered_at", "mismatch", EvidenceRequest.objects.filter(status=EvidenceStatus.MISMATCH)),
        ("overdue_at", "overdue", EvidenceRequest.objects.filter(overdue_at__isnull=False)),
    ):
        rows = (
            queryset.filter(**{f"{field}__gte": start, f"{field}__lte": until})
            .annotate(hour=TruncHour(field))
            .order_by()
            .values("member_id", "hour")
            .annotate(n=Count("id"), first=Min(field), last=Max(field))
        )
        for row in rows:
            bucket = buckets.setdefault(
                (row["member_id"], row["hour"]), {"n": 0, "first": row["first"], "last": row["last"], "parts": []}
            )
            bucket["n"] += row["n"]
            bucket["first"], bucket["last"] = min(bucket["first"], row["first"]), max(bucket["last"], row["last"])
            bucket["parts"].append(f"{row['n']} {label}")
    return [
        Finding(
            member_id,
            AlertKind.EVIDENCE_FAILED,
            hour,
            hour + HOUR,
            b["n"],
            0,
            b["first"],
            b["last"],
            f"evidence requests failed in {_span(hour)}: {', '.join(b['parts'])}",
        )
        for (member_id, hour), b in buckets.items()
    ]


def rule_dispute_volume(start: datetime, until: datetime) -> list[Finding]:
    """Members that filed more disputes than the threshold within any 24 hours ending between
    `start` and `until`: one finding per flood, from its first dispute to its last, its count the
    most disputes seen in one 24 hours. Disputes an operator already saw (up to the last dispute of
    the member's newest closed alert of this kind) do not count again: a flood that goes on after
    its alert was closed raises a new alert once the new disputes alone pass the threshold."""
    threshold = settings.EXCHANGE_ALERT_DISPUTES_PER_DAY
    scanned = Dispute.objects.filter(opened_at__gt=start - DAY, opened_at__lte=until, filed_by__isnull=False)
    members = list(  # first the few members over the threshold in the whole span (one aggregate)
        scanned.order_by()
        .values("filed_by_id")
        .annotate(n=Count("id"))
        .filter(n__gt=threshold)
        .values_list("filed_by_id", flat=True)
    )
    if not members:
        return []
    seen = dict(
        ComplianceAlert.objects.filter(kind=AlertKind.DISPUTE_VOLUME, status=AlertStatus.CLOSED, member_id__in=members)
        .order_by()
        .values("member_id")
        .annotate(last=Max("last_at"))
        .values_list("member_id", "last")
    )
    times: dict[object, list[datetime]] = {}
    for member_id, opened_at in (
        scanned.filter(filed_by_id__in=members).order_by("opened_at").values_list("filed_by_id", "opened_at")
    ):
        if member_id not in seen or opened_at > seen[member_id]:
            times.setdefault(member_id, []).append(opened_at)
    return [
        Finding(
            member_id,
            AlertKind.DISPUTE_VOLUME,
            first,
            last,
            count,
            threshold,
            first,
            last,
            _disputes_detail(count, first, last, threshold),
        )
        for member_id, moments in times.items()
        for first, last, count in dispute_floods(moments, threshold, since=start)
    ]


def dispute_floods(moments: list[datetime], threshold: int, *, since: datetime) -> list[tuple[datetime, datetime, int]]:
    """(first, last, most in 24 hours) of each run of overlapping 24-hour windows holding more than
    `threshold` of the sorted `moments`, for the windows ending at or after `since`."""
    floods: list[list] = []
    left = 0
    for right, moment in enumerate(moments):
        while moments[left] <= moment - DAY:
            left += 1
        count = right - left + 1
        if count <= threshold or moment < since:
            continue
        if floods and moments[left] <= floods[-1][1]:  # overlaps the flood before: the same flood
            floods[-1][1], floods[-1][2] = moment, max(floods[-1][2], count)
        else:
            floods.append([moments[left], moment, count])
    return [(first, last, count) for first, last, count in floods]


def _disputes_detail(count: int, start: datetime, end: datetime, threshold: int) -> str:
    return (
        f"{count} disputes filed within 24 hours ({start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC); "
        f"threshold {threshold}"
    )


def _continue_dispute_alert(finding: Finding, ongoing: ComplianceAlert) -> None:
    """A dispute_volume flood found within 24 hours of an open alert's last dispute continues that
    alert: its window stretches to the flood's last dispute, its count is the most disputes seen in
    any of its 24 hours."""
    finding.window_start = ongoing.window_start
    finding.count = max(finding.count, ongoing.count)
    finding.first_at = min(finding.first_at, ongoing.first_at)
    finding.last_at = max(finding.last_at, ongoing.last_at)
    finding.window_end = max(finding.window_end, ongoing.window_end)
    finding.detail = _disputes_detail(finding.count, finding.window_start, finding.window_end, finding.threshold)


def findings_for(start: datetime, until: datetime) -> list[Finding]:
    """Every rule over the clock hours from `start`'s hour to `until` (disputes: every 24 hours
    ending in that span)."""
    start = _hour(start)
    members = dict(Member.objects.values_list("code", "id"))
    return [
        *rule_inquiry_volume(start, until),
        *rule_consent_denials(start, until, members),
        *rule_evidence_reuse(start, until, members),
        *rule_evidence_failed(start, until),
        *rule_dispute_volume(start, until),
        *rule_quota_exceeded(start, until, members),
    ]


# --- storing, auditing and e-mailing alerts ------------------------------------------------------


_UPDATED = ("count", "threshold", "baseline", "first_at", "last_at", "detail", "window_end", "updated_at")


def _raise(finding: Finding, *, actor: str, now: datetime) -> ComplianceAlert:
    alert = ComplianceAlert(
        member_id=finding.member_id,
        kind=finding.kind,
        window_start=finding.window_start,
        window_end=finding.window_end,
        count=finding.count,
        threshold=finding.threshold,
        baseline=finding.baseline,
        first_at=finding.first_at,
        last_at=finding.last_at,
        detail=finding.detail[:300],
        raised_at=now,
        updated_at=now,
    )
    with transaction.atomic():
        alert.save(force_insert=True)
        audit_write(
            action=Action.ALERT_RAISE,
            actor=actor,
            member_code=alert.member.code,
            object_type="compliance_alert",
            object_id=alert.pk,
            details={"kind": alert.kind, "count": alert.count, "window_start": alert.window_start.isoformat()},
        )
    return alert


def alerts_evaluate(
    *, actor: str, since: datetime | None = None, until: datetime | None = None, notify: bool = True
) -> tuple[list[ComplianceAlert], int]:
    """Run every rule over [since, until] (default: the last 24 hours); store each finding as an
    alert (a new one audited, an existing one of the same member, kind and window updated).
    Returns the alerts found and how many of them are new; e-mails the new ones."""
    until = until or timezone.now()
    since = since or until - DAY
    findings = findings_for(since, until)
    existing = {
        (a.member_id, a.kind, a.window_start): a
        for a in ComplianceAlert.objects.filter(window_start__gte=_day(_hour(since)), window_start__lte=until)
    }
    ongoing = {  # open dispute_volume alerts a flood found now may continue; the latest wins
        a.member_id: a
        for a in ComplianceAlert.objects.filter(
            kind=AlertKind.DISPUTE_VOLUME, status=AlertStatus.OPEN, window_end__gte=since - 2 * DAY
        ).order_by("window_end")
    }
    alerts, new = [], 0
    now = timezone.now()
    for finding in findings:
        going_on = ongoing.get(finding.member_id) if finding.kind == AlertKind.DISPUTE_VOLUME else None
        if going_on is not None and finding.window_start - DAY < going_on.window_end:  # within 24 hours of it
            _continue_dispute_alert(finding, going_on)
        else:
            going_on = None
        alert = existing.get((finding.member_id, finding.kind, finding.window_start)) or going_on
        if alert is None:
            try:
                alert = _raise(finding, actor=actor, now=now)
                new += 1
            except IntegrityError:  # raised meanwhile by another evaluation
                alert = ComplianceAlert.objects.get(
                    member_id=finding.member_id, kind=finding.kind, window_start=finding.window_start
                )
        elif (alert.count, alert.last_at, alert.threshold, alert.window_end) != (
            finding.count,
            finding.last_at,
            finding.threshold,
            finding.window_end,
        ):
            alert.count, alert.threshold, alert.baseline = finding.count, finding.threshold, finding.baseline
            alert.first_at, alert.last_at, alert.detail = finding.first_at, finding.last_at, finding.detail[:300]
            alert.window_end, alert.updated_at = finding.window_end, now
            alert.save(update_fields=_UPDATED)
        alerts.append(alert)
    if notify and new:
        alerts_notify()
    alerts.sort(key=lambda a: (a.window_start, a.kind, a.member_id))
    return alerts, new


def compliance_recipients() -> list[str]:
    """E-mail addresses of the active staff in the compliance officers' group."""
    users = get_user_model().objects.filter(groups__name=COMPLIANCE, is_active=True).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))


def alert_path(alert: ComplianceAlert) -> str:
    return f"/admin/exchange/compliancealert/{alert.pk}/change/"


def alerts_notify() -> int:
    """E-mail the open alerts not yet sent to the compliance group, in one message; how many were
    sent. A failure is logged and the alerts stay unsent, for the next evaluation to retry."""
    pending = list(
        ComplianceAlert.objects.filter(emailed_at__isnull=True, status=AlertStatus.OPEN)
        .select_related("member")
        .order_by("window_start", "kind")
    )
    recipients = compliance_recipients()
    if not pending or not recipients:
        if pending:
            logger.warning("%d compliance alerts not e-mailed: no compliance officer has an address", len(pending))
        return 0
    base = settings.EXCHANGE_CONSOLE_URL.rstrip("/")
    lines = [
        f"{len(pending)} new compliance alert{'s' if len(pending) != 1 else ''} on the exchange:",
        "",
        *(
            f"- {a.member.code} {a.kind}: {a.detail}\n  {base}{alert_path(a)}"
            for a in pending  # member codes, counts and windows only: never a borrower
        ),
        "",
        "Review them in the console (Compliance alerts); docs/compliance.md says what to do for each kind.",
    ]
    subject = f"[exchange] {len(pending)} new compliance alert{'s' if len(pending) != 1 else ''}"
    try:
        send_mail(subject, "\n".join(lines), None, recipients)
    except Exception:
        logger.exception("could not e-mail %d compliance alerts; the next evaluation retries", len(pending))
        return 0
    ComplianceAlert.objects.filter(pk__in=[a.pk for a in pending]).update(emailed_at=timezone.now())
    return len(pending)


def alert_close(*, alert: ComplianceAlert, actor: str) -> ComplianceAlert:
    """Compliance staff have reviewed the alert."""
    with transaction.atomic():
        alert = ComplianceAlert.objects.select_for_update().select_related("member").get(pk=alert.pk)
        if alert.status == AlertStatus.OPEN:
            alert.status, alert.closed_at, alert.closed_by = AlertStatus.CLOSED, timezone.now(), actor
            alert.save(update_fields=["status", "closed_at", "closed_by"])
        audit_write(
            action=Action.ALERT_CLOSE,
            actor=actor,
            member_code=alert.member.code,
            object_type="compliance_alert",
            object_id=alert.pk,
            details={"kind": alert.kind},
        )
    return alert


# --- the dashboard's picture ---------------------------------------------------------------------


@dataclass
class MemberVolume:
    code: str
    hours: list[datetime]
    subjects: list[int]
    median: float
    threshold: int

    @property
    def peak(self) -> int:
        return max(self.subjects, default=0)


def volume_picture(now: datetime | None = None, *, top: int = 6, hours: int = 24) -> list[MemberVolume]:
    """The members closest to their inquiry_volume threshold over the last `hours` clock hours:
    distinct subjects per hour beside the 7-day median and threshold as of now."""
    now = now or timezone.now()
    current = _hour(now)
    labels = [current - HOUR * n for n in range(hours - 1, -1, -1)]
    codes = dict(Member.objects.values_list("id", "code"))
    pictures = []
    for member_id, rows in hourly_subjects(labels[0] - BASELINE, now).items():
        median = baseline_median(rows, current)
        subjects = [rows[hour]["subjects"] if hour in rows else 0 for hour in labels]
        if any(subjects):
            pictures.append(MemberVolume(codes.get(member_id, "?"), labels, subjects, median, volume_threshold(median)))
    pictures.sort(key=lambda p: (-p.peak / max(p.threshold, 1), p.code))
    return pictures[:top]
