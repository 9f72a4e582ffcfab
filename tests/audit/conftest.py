"""Audit test helpers: quick event factories, and lifting the triggers the way an attacker with
database access would (raw SQL, inside the test's transaction so it is undone afterwards)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit import triggers
from audit.models import AuditEvent
from audit.services import audit_bulk_write


def make_events(
    count: int, *, member_code: str = "BANKA", action: str = "record.submit", simple: bool = False
) -> list[AuditEvent]:
    """Insert `count` unsealed events fast (bulk insert), as the bulk paths do."""
    start = timezone.now() - timedelta(days=1)
    events = [
        AuditEvent(
            occurred_at=start + timedelta(microseconds=7 * i),
            actor=f"member:{member_code}",
            member_code=member_code,
            action=action,
            object_type="record",
            object_id=f"00000000-0000-0000-0000-{i:012d}",
            subject_token=f"{i:064x}",
            details={"index": i}
            if simple
            else {"index": i, "versions": [1, 2], "note_ok": "ünïcode ✓", "nested": {"b": True, "a": None}},
        )
        for i in range(count)
    ]
    audit_bulk_write(events)
    return events


def insert_events_raw(count: int, *, member_code: str = "BANKA") -> None:
    """Many unsealed events at once through one executemany, for volume tests."""
    start = timezone.now() - timedelta(days=1)
    rows = [
        (start + timedelta(microseconds=i), f"member:{member_code}", member_code, "record.submit", "record",
         f"{i:012d}", f"{i:064x}", "ok", "", f'{{"index": {i}}}')
        for i in range(count)
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {triggers.TABLE} (occurred_at, actor, member_code, action, object_type, object_id, "
            "subject_token, outcome, request_id, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            rows,
        )


def run_sql(sql: str, params: list | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


@contextlib.contextmanager
def triggers_lifted():
    """What someone with the owner's rights can do: drop the append-only triggers."""
    for sql in triggers.statements(connection.vendor, install=False):
        run_sql(sql)
    try:
        yield
    finally:
        for sql in triggers.statements(connection.vendor, install=True):
            run_sql(sql)


@pytest.fixture
def lifted(db):
    with triggers_lifted():
        yield
