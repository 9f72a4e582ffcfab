"""Writing audit events. Every state change calls `audit_write` inside its own transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from audit.models import AuditEvent, Outcome
from core.context import current_request_id
from core.prepared import insert_one

# Keys that must never be stored in an event's details, whatever a caller passes.
_FORBIDDEN_DETAIL_KEYS = frozenset(
    {"id_number", "name", "phone", "member_reference", "reference", "api_key", "secret", "reason", "note"}
)


def _check_details(details: dict[str, Any]) -> dict[str, Any]:
    for key, value in details.items():
        if key in _FORBIDDEN_DETAIL_KEYS:
            raise ValueError(f"audit details may not carry {key!r}")
        if isinstance(value, float):
            raise ValueError("audit details may not carry floats (hashing needs exact values)")
        if isinstance(value, dict):
            _check_details(value)
    return details


def audit_write(
    *,
    action: str,
    actor: str,
    outcome: str = Outcome.OK,
    member_code: str = "",
    object_type: str = "",
    object_id: Any = "",
    subject_token: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Insert one event in the current transaction; it is sealed into the chain after commit."""
    event = AuditEvent(
        occurred_at=timezone.now(),
        actor=actor[:120],
        member_code=member_code,
        action=action,
        object_type=object_type,
        object_id=str(object_id) if object_id else "",
        subject_token=subject_token,
        outcome=outcome,
        request_id=current_request_id(),
        details=_check_details(details or {}),
    )
    insert_one(event)  # one INSERT ... RETURNING id, its SQL built once (core/prepared.py)
    transaction.on_commit(_seal_after_commit)
    return event


def audit_bulk_write(events: list[AuditEvent]) -> None:
    """Insert many prepared events at once (bulk paths), in the current transaction."""
    now = timezone.now()
    request_id = current_request_id()
    for event in events:
        event.occurred_at = event.occurred_at or now
        event.request_id = event.request_id or request_id
        _check_details(event.details or {})
    AuditEvent.objects.bulk_create(events, batch_size=1000)
    transaction.on_commit(_seal_after_commit)


def seal_on_commit() -> None:
    """Have the events inserted in this transaction sealed once it commits (for writers that
    insert events themselves, e.g. by COPY)."""
    transaction.on_commit(_seal_after_commit)


def _seal_after_commit() -> None:
    # Imported late: sealing is optional for the write path and must never break it.
    from audit import sealing

    sealing.seal_after_commit()
