"""What every exchange service shares: the caller, the subject of a request, and audit helpers.

Services by domain: records.py (the one record writer), consents.py, inquiries.py, disputes.py,
retention.py. Each state change is one transaction that writes its audit event(s) beside the
change; each refusal is audited in its own transaction before the error is raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

import audit.services
from audit.services import audit_write
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
