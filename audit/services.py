"""Writing audit events. Every state change calls `audit_write` inside its own transaction."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from audit import sealing
from audit.models import AuditEvent, Outcome
from audit.triggers import IMMUTABLE_COLUMNS
from core.context import current_request_id, note_denial
from core.prepared import default_connection, insert_one, insert_params, insert_statement, mark_saved

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


# An event's columns as inserted, in statement order: the immutable ones but the id (given by the
# database). Its chain columns (seq, prev_hash, hash) stay NULL until the sealer sets them.
_INSERTED = tuple(name for name in IMMUTABLE_COLUMNS if name != "id")
assert _INSERTED[0] == "occurred_at" and _INSERTED[-1] == "details"  # the two adapted values (_params)


def _fields(
    *,
    action: str,
    actor: str,
    outcome: str,
    member_code: str,
    object_type: str,
    object_id: Any,
    subject_token: str,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    """The new event's values (`_INSERTED`), checked."""
    return {
        "occurred_at": timezone.now(),
        "actor": actor[:120],
        "member_code": member_code,
        "action": action,
        "object_type": object_type,
        "object_id": str(object_id) if object_id else "",
        "subject_token": subject_token,
        "outcome": outcome,
        "request_id": current_request_id(),
        "details": _check_details(details or {}),
    }


def _event_insert_sql() -> str:
    """`INSERT INTO audit (the inserted columns) VALUES (...) RETURNING id`, built once per database
    (`core/prepared.insert_statement`)."""
    return insert_statement(AuditEvent, _INSERTED)[0]


def _params(fields: dict[str, Any]) -> list:
    """The values as the model's fields would send them (the same adapters the ORM calls for a
    DateTimeField and a JSONField), without the ORM's per-field work: this runs on every request."""
    ops = default_connection().ops
    return [
        ops.adapt_datetimefield_value(fields["occurred_at"]),
        *(fields[name] for name in _INSERTED[1:-1]),
        ops.adapt_json_value(fields["details"], None),
    ]


def _insert_event(fields: dict[str, Any]) -> int:
    """Insert one event in the current transaction; its id. Sealed once the transaction commits."""
    with connection.cursor() as cursor:
        cursor.execute(_event_insert_sql(), _params(fields))
        event_id = cursor.fetchone()[0]
    transaction.on_commit(_seal_after_commit)
    return event_id


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
    fields = _fields(
        action=action,
        actor=actor,
        outcome=outcome,
        member_code=member_code,
        object_type=object_type,
        object_id=object_id,
        subject_token=subject_token,
        details=details,
    )
    event_id = _insert_event(fields)
    if outcome == Outcome.DENIED:
        note_denial()
    return mark_saved(AuditEvent(id=event_id, **fields))


def insert_audited(
    instance: Model,
    *,
    action: str,
    actor: str,
    member_code: str = "",
    object_type: str = "",
    subject_token: str = "",
    details: dict[str, Any] | None = None,
) -> int:
    """Insert `instance` (a model whose primary key is set before saving) and its audit event,
    both or neither: the event names the instance by its primary key. Returns the event's id.

    On PostgreSQL outside a transaction the two rows go in one statement (`WITH o AS (INSERT ...)
    INSERT INTO audit ...`), which PostgreSQL runs as one transaction: one round trip instead of
    BEGIN, two INSERTs and COMMIT on the hot path (docs/performance.md). Elsewhere (SQLite, or
    inside an enclosing transaction) it is the two inserts in one atomic block.
    """
    model_sql, model_fields, model_auto = insert_statement(type(instance))
    if model_auto is not None or instance.pk is None:
        raise ValueError("insert_audited needs a model whose primary key is set before saving")
    fields = _fields(
        action=action,
        actor=actor,
        outcome=Outcome.OK,
        member_code=member_code,
        object_type=object_type,
        object_id=instance.pk,
        subject_token=subject_token,
        details=details,
    )
    connection = default_connection()
    if connection.vendor != "postgresql" or not connection.get_autocommit():  # False in any atomic block
        with transaction.atomic():
            insert_one(instance)
            return _insert_event(fields)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH o AS ({model_sql}) {_event_insert_sql()}", insert_params(instance, model_fields) + _params(fields)
        )
        event_id = cursor.fetchone()[0]
    mark_saved(instance)
    _seal_after_commit()  # autocommit: the statement has committed
    return event_id


def insert_sealed(events: list[dict[str, Any]]) -> None:
    """Insert many events at once, already sealed into the chain, in the current transaction (the
    record writer's: one per record version). Each event is a dict of `audit_write`'s arguments
    (action, actor, member_code, object_type, object_id, subject_token, details; outcome defaults
    to ok); all get the same time and request id. The chain itself is audit.sealing's."""
    now = timezone.now()
    base = {
        "occurred_at": now,
        "member_code": "",
        "object_type": "",
        "object_id": "",
        "subject_token": "",
        "outcome": Outcome.OK.value,
        "request_id": current_request_id(),
        "details": {},
    }
    rows = []
    for event in events:
        row = {**base, **event}
        row["actor"] = row["actor"][:120]
        row["object_id"] = str(row["object_id"]) if row["object_id"] else ""
        _check_details(row["details"])
        rows.append(row)
    sealing.insert_chained(rows)


def audit_bulk_write(events: list[AuditEvent]) -> None:
    """Insert many prepared events at once, unsealed, in the current transaction: they are sealed
    after the commit, as `audit_write`'s are."""
    now = timezone.now()
    request_id = current_request_id()
    for event in events:
        event.occurred_at = event.occurred_at or now
        event.request_id = event.request_id or request_id
        _check_details(event.details or {})
    AuditEvent.objects.bulk_create(events, batch_size=1000)
    transaction.on_commit(_seal_after_commit)


def _seal_after_commit() -> None:
    sealing.seal_after_commit()  # looked up at call time, so a test may replace it


def audit_denied(
    *,
    action: str,
    actor: str,
    why: str,
    member_code: str = "",
    object_type: str = "",
    object_id: Any = "",
    subject_token: str = "",
    **details: Any,
) -> AuditEvent:
    """A refused attempt, on record in its own transaction: the refusal stays in the log whatever
    the caller does next (typically raise)."""
    with transaction.atomic():
        return audit_write(
            action=action,
            actor=actor,
            outcome=Outcome.DENIED,
            member_code=member_code,
            object_type=object_type,
            object_id=object_id,
            subject_token=subject_token,
            details={"why": why, **details},
        )
