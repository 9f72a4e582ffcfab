"""Inquiries: a borrower's multi-lender summary, under a matching active consent (and reciprocity)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from audit.actions import Action
from audit.services import insert_audited
from core.prepared import PreparedQuery, default_connection
from core.problems import Forbidden
from exchange.models import (
    OPEN_STATUSES,
    Consent,
    Inquiry,
    Record,
    RecordStatus,
    RecordVersion,
    reciprocity_cutoff,
)
from exchange.services import Caller, audit_denied, owned_or_404, parse_subject_or_invalid
from exchange.validation import format_money
from members.limits import Quota, quota_take
from members.models import Member

_CODE_DAYS = {"1": 30, "2": 60, "3": 90, "4": 120, "5": 150, "6": 180, "7": 180}


def _months_before(day: date, months: int) -> date:
    month_index = day.year * 12 + day.month - 1 - months
    year, month = divmod(month_index, 12)
    return date(year, month + 1, min(day.day, 28))


def build_report(rows: list[dict], *, member: Member, today: date) -> tuple[dict, list[dict], list[str]]:
    """Summary and lines of a report from the visible records (dicts from `.values()`)."""
    lines, line_records = [], []
    open_count, open_members = 0, set()
    worst, max_24m = 0, 0
    overdue: dict[str, int] = defaultdict(int)
    settled = written_off = disputed = 0
    last_since: date | None = None
    horizon = _months_before(today, 24)
    for number, row in enumerate(rows):
        status = row["status"]
        if status in OPEN_STATUSES:
            open_count += 1
            open_members.add(row["member_id"])
            worst = max(worst, row["days_past_due"])
            overdue[row["currency"]] += row["amount_overdue"]
        elif status == RecordStatus.SETTLED:
            settled += 1
        elif status == RecordStatus.WRITTEN_OFF:
            written_off += 1
        if row["as_of"] >= horizon:
            max_24m = max(
                max_24m, row["days_past_due"], *(_CODE_DAYS.get(code, 0) for code in row["payment_history"] or "0")
            )
        disputed += bool(row["disputed"])
        last_since = max(last_since, row["delinquent_since"]) if last_since else row["delinquent_since"]
        lines.append(
            {
                "line": number,
                "product": row["product"],
                "status": status,
                "days_past_due": row["days_past_due"],
                "currency": row["currency"],
                "amount_overdue": format_money(row["amount_overdue"]),
                "opened_on": row["opened_on"].isoformat(),
                "delinquent_since": row["delinquent_since"].isoformat(),
                "as_of": row["as_of"].isoformat(),
                "settled_on": row["settled_on"].isoformat() if row["settled_on"] else None,
                "disputed": bool(row["disputed"]),
                "reported_by_you": row["member_id"] == member.pk,
            }
        )
        line_records.append(str(row["id"]))
    summary = {
        "open_delinquencies": open_count,
        "institutions_with_open": len(open_members),
        "worst_days_past_due": worst,
        "total_amount_overdue": [
            {"currency": currency, "amount": format_money(cents)} for currency, cents in sorted(overdue.items())
        ],
        "settled_count": settled,
        "written_off_count": written_off,
        "max_days_past_due_24m": max_24m,
        "last_delinquent_since": last_since.isoformat() if last_since else None,
        "disputed_count": disputed,
    }
    return summary, lines, line_records


def inquiry_counts(*, member: Member, subject_token: str, now: datetime) -> dict:
    """Earlier inquiries on the subject by other members: the multi-lending signal."""
    counts = (
        Inquiry.objects.filter(subject_token=subject_token, created_at__gte=now - timedelta(days=90))
        .exclude(member=member)
        .aggregate(
            last_7_days=Count("id", filter=Q(created_at__gte=now - timedelta(days=7))),
            last_30_days=Count("id", filter=Q(created_at__gte=now - timedelta(days=30))),
            last_90_days=Count("id"),
            institutions_last_90_days=Count("member", distinct=True),
        )
    )
    return {
        key: counts[key] or 0 for key in ("last_7_days", "last_30_days", "last_90_days", "institutions_last_90_days")
    }


_LINE_FIELDS = (
    "id",
    "member_id",
    "product",
    "status",
    "days_past_due",
    "currency",
    "amount_overdue",
    "opened_on",
    "delinquent_since",
    "as_of",
    "settled_on",
    "payment_history",
    "disputed",
)
_COUNT_FIELDS = ("last_7_days", "last_30_days", "last_90_days", "institutions_last_90_days")


# The inquiry's reads, compiled once per database rather than per inquiry (core/prepared.py).
# The consent as its check needs it (Consent.refusal_for), nothing more.
_CONSENT_CHECKED = ("member_id", "subject_token", "purpose", "granted_at", "expires_at", "revoked_at")
_CONSENT_BY_ID = PreparedQuery(
    lambda pk: Consent.objects.only(*_CONSENT_CHECKED).filter(pk=pk).order_by(),
    pk=(uuid.UUID(int=1), Consent._meta.pk),
)
_VISIBLE_RECORDS = PreparedQuery(
    lambda token, now: Record.objects.visible_for_inquiry(token, now).values(*_LINE_FIELDS),
    token=("token-stand-in-" + "0" * 49, Record._meta.get_field("subject_token")),
    now=(datetime(1901, 2, 3, 4, 5, 6, 789012, tzinfo=UTC), Record._meta.get_field("updated_at")),
)


# The report query's columns by name: the records' (as `.values(*_LINE_FIELDS)` compiles them, in
# that order) then the counts.
_REPORT_COLUMNS = ", ".join([*(f"r.{name}" for name in _LINE_FIELDS), *(f"c.{name}" for name in _COUNT_FIELDS)])


def _report_rows(*, member: Member, subject_token: str, now: datetime) -> tuple[list[dict], dict]:
    """The subject's visible records (newest delinquency first) and the inquiry counts of
    `inquiry_counts`, read in one query: one round trip on the inquiry's hot path.

    The counts are one aggregate row, LEFT JOINed to the records so that a subject without
    records still gets its counts; the records part is the ORM's `visible_for_inquiry`.
    """
    connection = default_connection()
    records_sql, records_params = _VISIBLE_RECORDS.bind(token=subject_token, now=now)
    ops = connection.ops
    at = ops.adapt_datetimefield_value
    member_id = Member._meta.pk.get_db_prep_value(member.pk, connection)
    inquiries = ops.quote_name(Inquiry._meta.db_table)
    sql = (
        f"SELECT {_REPORT_COLUMNS} FROM ("  # noqa: S608 - fixed names
        "SELECT COUNT(CASE WHEN created_at >= %s THEN 1 END) AS last_7_days, "
        "COUNT(CASE WHEN created_at >= %s THEN 1 END) AS last_30_days, "
        "COUNT(*) AS last_90_days, COUNT(DISTINCT member_id) AS institutions_last_90_days "
        f"FROM {inquiries} WHERE subject_token = %s AND created_at >= %s AND member_id <> %s"
        f") c LEFT JOIN ({records_sql}) r ON 1 = 1 ORDER BY r.delinquent_since DESC, r.id"
    )
    params = [
        at(now - timedelta(days=7)),
        at(now - timedelta(days=30)),
        subject_token,
        at(now - timedelta(days=90)),
        member_id,
        *records_params,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        # The records' columns come first, in the order the ORM compiled them: its converters apply to them.
        found = _VISIBLE_RECORDS.convert(cursor.fetchall(), connection)
    # Each row is the records' fields (_LINE_FIELDS) then the counts (_COUNT_FIELDS), as selected.
    counts = {name: value or 0 for name, value in zip(_COUNT_FIELDS, found[0][len(_LINE_FIELDS) :], strict=True)}
    # A subject without records has one row: its counts, with NULL record columns.
    rows = [dict(zip(_LINE_FIELDS, row[: len(_LINE_FIELDS)], strict=True)) for row in found if row[0] is not None]
    return rows, counts


def _check_reciprocity(caller: Caller, token: str, now: datetime) -> None:
    cutoff = reciprocity_cutoff(now)
    if cutoff is None:
        return
    if not RecordVersion.objects.filter(member=caller.member, created_at__gte=cutoff).exists():
        days = settings.EXCHANGE_RECIPROCITY_DAYS
        audit_denied(caller, Action.INQUIRY_CREATE, "reciprocity_required", subject_token=token, days=days)
        raise Forbidden(
            "reciprocity_required",
            f"Members may query only if they furnished a record in the last {days} days.",
        )


def inquiry_create(*, caller: Caller, subject: Any, consent_id: Any, purpose: str) -> Inquiry:
    """Check consent (and reciprocity), build the report, store and audit the inquiry."""
    _id_type, token = parse_subject_or_invalid(subject, caller=caller, action=Action.INQUIRY_CREATE)
    now = timezone.now()
    _check_reciprocity(caller, token, now)
    consent = None
    try:
        consent = _CONSENT_BY_ID.first(pk=uuid.UUID(str(consent_id)))
    except ValueError:
        pass
    why = (
        consent.refusal_for(member=caller.member, subject_token=token, purpose=purpose, now=now)
        if consent
        else "not_found"
    )
    if why:
        audit_denied(caller, Action.INQUIRY_CREATE, f"consent_{why}", subject_token=token, purpose=purpose)
        raise Forbidden(
            "consent_required",
            "No active consent registered by you for this subject and purpose; register one first.",
        )
    quota_take(caller.member, Quota.INQUIRIES, action=Action.INQUIRY_CREATE)  # 429 past the 24-hour quota
    rows, counts = _report_rows(member=caller.member, subject_token=token, now=now)
    summary, lines, line_records = build_report(rows, member=caller.member, today=now.date())
    result = {
        "subject_found": bool(rows),
        "summary": summary,
        "records": lines,
        "inquiries": counts,
    }
    inquiry = Inquiry(
        member=caller.member,
        subject_token=token,
        consent=consent,
        purpose=purpose,
        created_at=now,
        result=result,
        line_records=line_records,
    )
    # The inquiry and its audit event: one statement, one round trip on PostgreSQL.
    insert_audited(
        inquiry,
        action=Action.INQUIRY_CREATE,
        actor=caller.actor,
        member_code=caller.member.code,
        object_type="inquiry",
        subject_token=token,
        details={"purpose": purpose, "consent": str(consent.pk), "lines": len(lines)},
    )
    return inquiry


def inquiry_get(*, caller: Caller, inquiry_id: Any) -> Inquiry:
    return owned_or_404(caller, Inquiry.objects.all(), inquiry_id, action=Action.INQUIRY_READ, object_type="inquiry")
