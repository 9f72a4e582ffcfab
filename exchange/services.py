"""What every exchange service shares: the caller, the subject of a request, and audit helpers.

Services by domain: records.py (the one record writer), consents.py, inquiries.py, disputes.py,
retention.py. Each state change is one transaction that writes its audit event(s) beside the
change; each refusal is audited in its own transaction before the error is raised.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, TypeVar

from django.db import transaction
from django.db.models import Model, QuerySet

import audit.services
from audit.services import audit_write
from core.problems import NotFound
from exchange.validation import invalid, parse_subject
from members.models import Member


@dataclass(frozen=True, slots=True)
class Caller:
    """Who acts: the member, and the audit actor string (API key prefix, staff user or command)."""

    member: Member
    actor: str


def audit_denied(
    caller: Caller, action: str, why: str, *, subject_token: str = "", object_type="", object_id="", **details
):
    """Audit a member's refused action (audit.services.audit_denied, with the caller as actor)."""
    audit.services.audit_denied(
        action=action,
        actor=caller.actor,
        why=why,
        member_code=caller.member.code,
        object_type=object_type,
        object_id=object_id,
        subject_token=subject_token,
        **details,
    )


def parse_subject_or_invalid(raw: Any, *, caller: Caller | None = None, action: str = "") -> tuple[str, str]:
    """(id_type, token) of a request's subject, or a 422 naming the field (`raw_identifier_refused`
    for a raw ID on a blind-only exchange); the refusal is audited when a caller is given."""
    errors: list[tuple[str, str]] = []
    parsed = parse_subject(raw, errors)
    if errors or parsed is None:
        problem = invalid([{"index": None, "field": f or None, "message": m} for f, m in errors])
        if caller is not None:
            audit_denied(caller, action, problem.problem_code, errors=len(errors))
        raise problem
    id_type, token, _name = parsed
    return id_type, token


def audit_read(
    caller: Caller, action: str, *, object_type: str = "", object_id: Any = "", subject_token: str = "", **details
) -> None:
    """Reads are audited too (who looked at what), each in its own short transaction."""
    with transaction.atomic():
        audit_write(
            action=action,
            actor=caller.actor,
            member_code=caller.member.code,
            object_type=object_type,
            object_id=object_id,
            subject_token=subject_token,
            details=details,
        )


# --- one of the caller's objects, by the id in a path --------------------------------------------


def parse_id(raw: Any) -> uuid.UUID | None:
    """The UUID in a path, or None when it is not one."""
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        return None


def not_found(caller: Caller, action: str, *, object_type: str, pk: uuid.UUID | None, **details) -> NotFound:
    """Audit a 404 (refused as `not_found`) and return the error to raise. A malformed id is
    recorded only as malformed: the raw path text (anything at all) never reaches the log."""
    if pk is None:
        details["malformed_id"] = True
    audit_denied(caller, action, "not_found", object_type=object_type, object_id=str(pk or ""), **details)
    return NotFound()


M = TypeVar("M", bound=Model)


def owned_or_404(
    caller: Caller, queryset: QuerySet[M], raw_id: Any, *, action: str, object_type: str, owner: str = "member"
) -> M:
    """The object of `queryset` with this id that belongs to the caller (`owner` is the field naming
    its member); anything else, a malformed id or another member's object, is 404 `not_found`,
    audited as refused."""
    pk = parse_id(raw_id)
    found = queryset.filter(pk=pk, **{owner: caller.member}).first() if pk is not None else None
    if found is None:
        raise not_found(caller, action, object_type=object_type, pk=pk)
    return found
