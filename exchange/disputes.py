"""Disputes: a borrower's objection to one line of a report, answered by the furnishing member.

The filer names an inquiry of its own and a line; the exchange finds the record through
`Inquiry.line_records` and never tells the filer whose record it is. Every step is audited in
the transaction of the change; every refusal is audited on its own before the error is raised.
Reasons and notes are encrypted by the model and never copied into an audit event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from rest_framework import status

from audit.actions import Action
from audit.services import audit_write
from core.problems import ApiError, Forbidden, Invalid, NotFound
from exchange.models import Dispute, DisputeOutcome, DisputeStatus, Inquiry, Record
from exchange.records import withdraw_locked
from exchange.services import Caller, audit_denied, not_found, parse_id
from members.limits import Quota, quota_take
from members.models import Scope

MAX_TEXT = 2000


class Conflict(ApiError):
    def __init__(self, detail: str):
        super().__init__(status.HTTP_409_CONFLICT, "conflict", detail)


def _invalid(field: str, message: str) -> Invalid:
    return Invalid([{"index": None, "field": field, "message": message}], detail=f"{field} {message}.")


def due_at_for(opened_at) -> Any:
    return opened_at + timedelta(days=settings.EXCHANGE_DISPUTE_DAYS)


# --- who sees what ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Roles:
    """What a key may see: the disputes it must answer (submit scope), those it filed (query scope)."""

    furnisher: bool
    filer: bool

    @classmethod
    def of(cls, scopes: list[str] | tuple[str, ...]) -> Roles:
        return cls(furnisher=Scope.SUBMIT in scopes, filer=Scope.QUERY in scopes)


def disputes_visible(*, caller: Caller, roles: Roles) -> QuerySet[Dispute]:
    """The caller's disputes, annotated with `furnisher_id` so that views know which side it is on."""
    where = Q(pk__in=[])
    if roles.furnisher:
        where |= Q(record__member=caller.member)
    if roles.filer:
        where |= Q(filed_by=caller.member)
    return Dispute.objects.filter(where).annotate(furnisher_id=F("record__member_id"))


def is_furnisher_view(dispute: Dispute, *, caller: Caller, roles: Roles) -> bool:
    """Whether the caller sees this dispute as the member that must answer it (and its record_id)."""
    return roles.furnisher and dispute.furnisher_id == caller.member.pk


def dispute_get(*, caller: Caller, roles: Roles, dispute_id: Any, action: str = Action.DISPUTE_READ) -> Dispute:
    """One dispute the caller filed or must answer; anything else is 'not found'.

    A dispute the member must answer, asked for with a key without the submit scope (and not
    filed by the member), is a 403 scope_required: it is the member's own, so nothing leaks.
    """
    dispute_uuid = parse_id(dispute_id)
    if dispute_uuid is None:
        raise not_found(caller, action, object_type="dispute", pk=None)
    dispute = disputes_visible(caller=caller, roles=roles).filter(pk=dispute_uuid).first()
    if dispute is not None:
        return dispute
    own = (
        Dispute.objects.filter(pk=dispute_uuid)
        .filter(Q(record__member=caller.member) | Q(filed_by=caller.member))
        .annotate(furnisher_id=F("record__member_id"))
        .first()
    )
    if own is not None:
        needed = Scope.SUBMIT if own.furnisher_id == caller.member.pk else Scope.QUERY
        audit_denied(caller, action, "scope_required", object_type="dispute", object_id=str(dispute_uuid))
        raise Forbidden("scope_required", f"This dispute is reached with an API key with the '{needed}' scope.")
    raise not_found(caller, action, object_type="dispute", pk=dispute_uuid)


# --- opening ---------------------------------------------------------------------------------


def _clean_text(value: Any, field: str, *, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _invalid(field, "is required")
        return None
    if not isinstance(value, str):
        raise _invalid(field, "must be a string")
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise _invalid(field, f"must be at most {MAX_TEXT} characters")
    return value


def _create(*, record: Record, reason: str, now, **filed) -> Dispute:
    return Dispute.objects.create(
        record=record,
        subject_token=record.subject_token,
        reason=reason,
        opened_at=now,
        due_at=due_at_for(now),
        **filed,
    )


def dispute_open(*, caller: Caller, inquiry_id: Any, line: Any, reason: Any) -> Dispute:
    """`POST /disputes`: dispute line `line` of an inquiry the caller made.

    Another member's inquiry is 'not found'; a line outside the report, a record since
    withdrawn or purged, or an open dispute the caller already filed on that line is refused.
    """
    inquiry_uuid = parse_id(inquiry_id)
    inquiry = (
        Inquiry.objects.filter(pk=inquiry_uuid, member=caller.member)
        .only("id", "subject_token", "line_records")
        .first()
        if inquiry_uuid
        else None
    )
    if inquiry is None:
        malformed = {"malformed_id": True} if inquiry_uuid is None else {}
        audit_denied(
            caller,
            Action.DISPUTE_OPEN,
            "inquiry_not_found",
            object_type="inquiry",
            object_id=str(inquiry_uuid or ""),
            **malformed,
        )
        raise NotFound("No such inquiry of yours.")
    token = inquiry.subject_token
    lines = inquiry.line_records or []
    if isinstance(line, bool) or not isinstance(line, int) or not 0 <= line < len(lines):
        audit_denied(
            caller,
            Action.DISPUTE_OPEN,
            "line_out_of_range",
            subject_token=token,
            object_type="inquiry",
            object_id=inquiry.pk,
            lines=len(lines),
        )
        if not lines:
            raise _invalid("line", "does not exist: this report has no lines")
        raise _invalid("line", f"must be a line number of this report, 0 to {len(lines) - 1}")
    reason = _clean_text(reason, "reason", required=True)
    quota_take(caller.member, Quota.DISPUTES, action=Action.DISPUTE_OPEN)  # 429 past the 24-hour quota
    with transaction.atomic():
        record = Record.objects.select_for_update().filter(pk=lines[line]).first()
        refusal = _open_refusal(caller, record, inquiry, line)
        if refusal is None:
            dispute = _create(
                record=record, reason=reason, now=timezone.now(), inquiry=inquiry, line=line, filed_by=caller.member
            )
            audit_write(
                action=Action.DISPUTE_OPEN,
                actor=caller.actor,
                member_code=caller.member.code,
                object_type="dispute",
                object_id=dispute.pk,
                subject_token=token,
                details={"inquiry": str(inquiry.pk), "line": line, "due_at": dispute.due_at.isoformat()},
            )
            return dispute
    why, error = refusal
    audit_denied(
        caller, Action.DISPUTE_OPEN, why, subject_token=token, object_type="inquiry", object_id=inquiry.pk, line=line
    )
    raise error


def _open_refusal(caller: Caller, record: Record | None, inquiry: Inquiry, line: int) -> tuple[str, ApiError] | None:
    if record is None:
        return "record_purged", _invalid("line", "refers to a record the exchange no longer holds")
    if record.withdrawn_at is not None:
        return "record_withdrawn", _invalid("line", "refers to a record since withdrawn from every report")
    existing = Dispute.objects.filter(record=record, filed_by=caller.member, status=DisputeStatus.OPEN).first()
    if existing is not None:
        return "already_open", Conflict(f"You already have an open dispute on this line: {existing.pk}.")
    return None


@transaction.atomic
def dispute_open_by_staff(*, record: Record, reason: str, actor: str) -> Dispute:
    """The admin console's way in (a borrower who came to the exchange directly).

    `actor` is the audit actor, "staff:<username>"; it is kept as `filed_by_staff`.
    Raises `core.problems.Invalid` for an empty reason or a withdrawn record.
    """
    reason = _clean_text(reason, "reason", required=True)
    record = Record.objects.select_for_update().select_related("member").get(pk=record.pk)
    if record.withdrawn_at is not None:
        raise _invalid("record", "is withdrawn: it appears in no report")
    dispute = _create(record=record, reason=reason, now=timezone.now(), filed_by_staff=actor[:150])
    audit_write(
        action=Action.DISPUTE_OPEN,
        actor=actor,
        member_code=record.member.code,
        object_type="dispute",
        object_id=dispute.pk,
        subject_token=record.subject_token,
        details={"record": str(record.pk), "by_staff": True, "due_at": dispute.due_at.isoformat()},
    )
    return dispute


# --- answering -------------------------------------------------------------------------------


def dispute_resolve(*, caller: Caller, roles: Roles, dispute_id: Any, outcome: str, note: Any = None) -> Dispute:
    """`POST /disputes/{id}/resolve`, by the furnisher only (anyone else: 'not found').

    `corrected` needs a version of the record submitted after the dispute opened; `deleted`
    withdraws the record as `record_withdraw` does; `upheld` leaves it. A dispute answered
    already is a 409 `conflict` (the first answer stands; retrying is visibly refused).
    """
    action = Action.DISPUTE_RESOLVE
    dispute_uuid = parse_id(dispute_id)
    found = (
        Dispute.objects.filter(pk=dispute_uuid, record__member=caller.member).only("id").first()
        if dispute_uuid and roles.furnisher
        else None
    )
    if found is None:
        raise not_found(caller, action, object_type="dispute", pk=dispute_uuid)
    if outcome not in DisputeOutcome.values:
        raise _invalid("outcome", f"must be one of {', '.join(DisputeOutcome.values)}")
    note = _clean_text(note, "note", required=False)
    with transaction.atomic():
        dispute = Dispute.objects.select_for_update().get(pk=found.pk)
        record = Record.objects.select_for_update().get(pk=dispute.record_id)
        refusal = _resolve_refusal(dispute, record, outcome)
        if refusal is None:
            now = timezone.now()
            overdue = dispute.due_at <= now
            if outcome == DisputeOutcome.DELETED:
                _withdraw(caller, record, dispute)
            dispute.status = DisputeStatus.RESOLVED
            dispute.outcome = outcome
            dispute.note = note
            dispute.resolved_at = now
            dispute.save(update_fields=["status", "outcome", "note", "resolved_at"])
            audit_write(
                action=action,
                actor=caller.actor,
                member_code=caller.member.code,
                object_type="dispute",
                object_id=dispute.pk,
                subject_token=dispute.subject_token,
                details={"outcome": outcome, "record": str(record.pk), "version": record.version, "overdue": overdue},
            )
            dispute.furnisher_id = record.member_id
            return dispute
    why, error = refusal
    audit_denied(
        caller,
        action,
        why,
        subject_token=dispute.subject_token,
        object_type="dispute",
        object_id=dispute.pk,
        outcome=outcome,
    )
    raise error


def _resolve_refusal(dispute: Dispute, record: Record, outcome: str) -> tuple[str, ApiError] | None:
    if dispute.status != DisputeStatus.OPEN:
        return "already_resolved", Conflict(
            f"This dispute was resolved already ({dispute.outcome}, {dispute.resolved_at.isoformat()}); "
            "a resolution is final."
        )
    if outcome == DisputeOutcome.CORRECTED and not record.versions.filter(created_at__gt=dispute.opened_at).exists():
        return "no_new_version", _invalid(
            "outcome",
            "is 'corrected' but no new version of the record was submitted after the dispute opened; "
            "submit the corrected record (same member_reference) first",
        )
    return None


def _withdraw(caller: Caller, record: Record, dispute: Dispute) -> None:
    """The same withdrawal as the API's, audited the same way, naming the dispute."""
    withdraw_locked(
        caller=caller, record=record, reason=f"dispute {dispute.pk} resolved as deleted", dispute=str(dispute.pk)
    )
