"""PostgreSQL deployment: the application connects as a role that does not own the audit tables,
so it can append and seal, but can neither rewrite history nor lift the triggers that guard it."""

from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from audit.chain import GENESIS, iso_utc, link_hash
from audit.triggers import CHECKPOINT_TABLE, TABLE

pytestmark = [
    pytest.mark.postgres_only,
    pytest.mark.skipif(
        connection.vendor != "postgresql" or not os.environ.get("EXCHANGE_TEST_PG_PORT"),
        reason="needs the throwaway PostgreSQL of scripts/test.sh (roles exchange and exchange_app)",
    ),
]

APP_ROLE = "exchange_app"


def pg_dsn(*, owner: bool = False) -> dict:
    """Connection arguments for the test database (pytest-django's test_ database)."""
    db = settings.DATABASES["default"]
    return {
        "host": db.get("HOST") or "127.0.0.1",
        "port": int(os.environ.get("EXCHANGE_TEST_PG_PORT") or db.get("PORT") or 5432),
        "dbname": db["NAME"],
        "user": db["USER"] if owner else APP_ROLE,
        "password": db["PASSWORD"] if owner else APP_ROLE,
        "connect_timeout": 5,
    }


@pytest.fixture
def app_conn(transactional_db):
    import psycopg

    # As the tables' owner (the migrations role), give the app role its rights.
    call_command("audit_grant_app_role", APP_ROLE)
    with psycopg.connect(**pg_dsn(), autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == APP_ROLE
        yield conn


def refused(conn, sql: str, params=None) -> str:
    import psycopg

    with pytest.raises(psycopg.Error) as info:
        conn.execute(sql, params)
    return str(info.value)


def insert_event(conn, action: str) -> int:
    return conn.execute(
        f"INSERT INTO {TABLE} (occurred_at, actor, member_code, action, object_type, object_id, subject_token, "
        "outcome, request_id, details) VALUES (%s, 'app', '', %s, '', '', '', 'ok', '', '{}') RETURNING id",
        [timezone.now(), action],
    ).fetchone()[0]


def seal_one(conn, event_id: int) -> tuple[int, str]:
    """The one-time seal, done as the sealer does it: compute the link, set the three columns."""
    row = conn.execute(
        f"SELECT id, occurred_at, actor, member_code, action, object_type, object_id, subject_token, outcome, "
        f"request_id, details FROM {TABLE} WHERE id = %s",
        [event_id],
    ).fetchone()
    last = conn.execute(f"SELECT seq, hash FROM {TABLE} WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    names = ("id", "occurred_at", "actor", "member_code", "action", "object_type", "object_id", "subject_token")
    fields = dict(zip((*names, "outcome", "request_id", "details"), row, strict=True))
    fields["occurred_at"] = iso_utc(fields["occurred_at"])
    digest = link_hash(prev, {**fields, "seq": seq})
    conn.execute(f"UPDATE {TABLE} SET seq = %s, prev_hash = %s, hash = %s WHERE id = %s", [seq, prev, digest, event_id])
    return seq, digest


def test_the_app_role_can_append_and_seal_once(app_conn):
    event_id = insert_event(app_conn, "test.app_insert")
    seq, digest = seal_one(app_conn, event_id)
    assert app_conn.execute(f"SELECT seq, hash FROM {TABLE} WHERE id = %s", [event_id]).fetchone() == (seq, digest)
    app_conn.execute(
        f"INSERT INTO {CHECKPOINT_TABLE} (seq, hash, signed_at, public_key, signature) VALUES (%s, %s, now(), '', '')",
        [seq, digest],
    )


def test_the_app_role_cannot_change_remove_or_unguard_history(app_conn):
    event_id = insert_event(app_conn, "test.app_insert")
    seal_one(app_conn, event_id)

    assert "append-only: UPDATE refused" in refused(
        app_conn, f"UPDATE {TABLE} SET hash = %s WHERE id = %s", ["0" * 64, event_id]
    )
    assert "append-only: UPDATE refused" in refused(
        app_conn, f"UPDATE {TABLE} SET seq = NULL, prev_hash = NULL, hash = NULL WHERE id = %s", [event_id]
    )
    assert "permission denied" in refused(app_conn, f"UPDATE {TABLE} SET action = 'forged' WHERE id = %s", [event_id])
    assert "permission denied" in refused(app_conn, f"DELETE FROM {TABLE} WHERE id = %s", [event_id])
    assert "permission denied" in refused(app_conn, f"TRUNCATE {TABLE}")
    assert "must be owner" in refused(app_conn, f"ALTER TABLE {TABLE} DISABLE TRIGGER audit_event_no_update")
    assert "must be owner" in refused(app_conn, f"ALTER TABLE {TABLE} DISABLE TRIGGER ALL")
    assert "must be owner" in refused(app_conn, f"DROP TRIGGER audit_event_no_update ON {TABLE}")
    assert "must be owner" in refused(app_conn, "DROP FUNCTION audit_event_guard()")
    assert "permission denied" in refused(app_conn, "SET session_replication_role = replica")
    assert "permission denied" in refused(app_conn, f"DELETE FROM {CHECKPOINT_TABLE}")
    assert "permission denied" in refused(app_conn, f"UPDATE {CHECKPOINT_TABLE} SET seq = 0")
    assert "must be owner" in refused(app_conn, f"ALTER TABLE {CHECKPOINT_TABLE} DISABLE TRIGGER ALL")
    assert app_conn.execute(f"SELECT action FROM {TABLE} WHERE id = %s", [event_id]).fetchone() == ("test.app_insert",)


def test_even_a_role_wrongly_granted_delete_and_truncate_is_stopped_by_the_triggers(app_conn):
    with connection.cursor() as cursor:  # the owner makes the mistake
        cursor.execute(f'GRANT UPDATE, DELETE, TRUNCATE ON {TABLE}, {CHECKPOINT_TABLE} TO "{APP_ROLE}"')
    event_id = insert_event(app_conn, "test.app_insert")
    seq, digest = seal_one(app_conn, event_id)
    app_conn.execute(
        f"INSERT INTO {CHECKPOINT_TABLE} (seq, hash, signed_at, public_key, signature) VALUES (%s, %s, now(), '', '')",
        [seq, digest],
    )
    assert "append-only: DELETE refused" in refused(app_conn, f"DELETE FROM {TABLE} WHERE id = %s", [event_id])
    assert "append-only: TRUNCATE refused" in refused(app_conn, f"TRUNCATE {TABLE}")
    app_conn.execute("SET exchange.audit_maintenance = 'on'")  # the owner's escape hatch is not the app's
    assert "append-only: TRUNCATE refused" in refused(app_conn, f"TRUNCATE {TABLE}")
    assert "append-only: UPDATE refused" in refused(
        app_conn, f"UPDATE {TABLE} SET action = 'forged' WHERE id = %s", [event_id]
    )
    assert "append-only: DELETE refused" in refused(app_conn, f"DELETE FROM {CHECKPOINT_TABLE}")
    assert "append-only: UPDATE refused" in refused(app_conn, f"UPDATE {CHECKPOINT_TABLE} SET seq = 0")
    assert "append-only: TRUNCATE refused" in refused(app_conn, f"TRUNCATE {CHECKPOINT_TABLE}")
    assert "must be owner" in refused(app_conn, f"ALTER TABLE {TABLE} DISABLE TRIGGER ALL")
