"""Migration 0005: the audit table's indexes are the lean set the readers and the sealer need, the
chain's position stays unique once set, and the append-only triggers survived (a table rebuild on
SQLite would have dropped them)."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction

from audit import sealing, triggers
from audit.models import AuditEvent
from tests.audit.conftest import make_events, run_sql

T = AuditEvent._meta.db_table

EXPECTED_PG_INDEXES = {
    "audit_auditevent_pkey",
    "audit_unsealed_id_idx",
    "audit_occurred_at_idx",
    "audit_member_time_idx",
    "audit_subject_idx",
    "audit_seq_unique",
    "audit_denied_time_idx",  # refusals by time, for the compliance alerts (0007)
}
# Indexes the earlier migrations made that 0005 drops (on SQLite, those that existed there).
DROPPED = {
    "audit_auditevent_action_2131bb77",
    "audit_auditevent_member_code_1afdb414",
    "audit_auditevent_occurred_at_1f007848",
    "audit_auditevent_subject_token_d6180718",
}

on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite only")


def rows(sql: str, params: list | None = None) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def pg_indexes() -> dict[str, str]:
    return dict(rows("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [T]))


def normalized(sql: str) -> str:
    return " ".join(sql.replace('"', "").split())


# --- PostgreSQL -----------------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_on_postgresql_the_audit_table_has_exactly_the_lean_indexes():
    indexes = pg_indexes()
    assert set(indexes) == EXPECTED_PG_INDEXES, sorted(indexes)
    assert not [name for name in indexes if name.endswith("_like")]
    assert not [definition for definition in indexes.values() if "pattern_ops" in definition]
    assert not DROPPED & set(indexes)


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_on_postgresql_each_index_covers_the_expected_columns():
    indexes = {name: normalized(definition) for name, definition in pg_indexes().items()}
    assert indexes["audit_auditevent_pkey"].startswith("CREATE UNIQUE INDEX")
    assert indexes["audit_auditevent_pkey"].endswith(f"ON public.{T} USING btree (id)")
    assert indexes["audit_occurred_at_idx"].endswith("USING btree (occurred_at)")
    assert indexes["audit_member_time_idx"].endswith("USING btree (member_code, occurred_at)")
    assert indexes["audit_subject_idx"].endswith("USING btree (subject_token)")
    assert indexes["audit_unsealed_id_idx"].endswith("USING btree (id) WHERE (seq IS NULL)")
    for name in ("audit_occurred_at_idx", "audit_member_time_idx", "audit_subject_idx", "audit_unsealed_id_idx"):
        assert not indexes[name].startswith("CREATE UNIQUE"), name


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_on_postgresql_seq_is_unique_only_where_it_is_set():
    definition = normalized(pg_indexes()["audit_seq_unique"])
    assert definition.startswith("CREATE UNIQUE INDEX audit_seq_unique")
    assert definition.endswith("USING btree (seq) WHERE (seq IS NOT NULL)")
    # No other unique constraint on seq is left (the old seq_key of the inline UNIQUE is gone).
    constraints = rows("SELECT conname, contype FROM pg_constraint WHERE conrelid = %s::regclass ORDER BY conname", [T])
    assert ("audit_auditevent_seq_key", "u") not in constraints
    assert [name for name, kind in constraints if kind == "u"] == []
    assert ("audit_auditevent_pkey", "p") in constraints
    assert ("audit_sealed_all_or_nothing", "c") in constraints


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_on_postgresql_the_append_only_triggers_are_still_there():
    names = {name for (name,) in rows("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass", [T])}
    assert {"audit_event_no_update", "audit_event_no_truncate"} <= names


# --- both databases -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_two_sealed_events_cannot_share_a_seq(lifted):
    # Triggers lifted (inside the test's transaction, undone afterwards) so that the UPDATE reaches
    # the unique index: the index must refuse it by itself.
    make_events(2)
    assert sealing.seal_pending().sealed == 2
    first, second = AuditEvent.objects.filter(seq__isnull=False).order_by("seq")
    with pytest.raises(IntegrityError), transaction.atomic():
        run_sql(f"UPDATE {T} SET seq = %s WHERE id = %s", [first.seq, second.id])
    second.refresh_from_db()
    assert second.seq == first.seq + 1


@pytest.mark.django_db
def test_many_unsealed_events_may_all_have_no_seq():
    make_events(3)
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 3


@pytest.mark.django_db
def test_the_append_only_triggers_still_refuse_changes_after_the_migrations():
    make_events(1)
    sealing.seal_pending()
    event = AuditEvent.objects.get()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        run_sql(f"UPDATE {T} SET action = 'forged' WHERE id = %s", [event.id])
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        run_sql(f"DELETE FROM {T} WHERE id = %s", [event.id])
    event.refresh_from_db()
    assert event.action == "record.submit"


# --- SQLite ---------------------------------------------------------------------------------------


def sqlite_objects(kind: str, table: str) -> dict[str, str | None]:
    return dict(rows("SELECT name, sql FROM sqlite_master WHERE type = %s AND tbl_name = %s", [kind, table]))


@on_sqlite
@pytest.mark.django_db
def test_on_sqlite_the_append_only_triggers_survive_the_migrations():
    event_triggers = sqlite_objects("trigger", T)
    assert set(event_triggers) == {"audit_event_no_update", "audit_event_no_delete"}
    checkpoint_triggers = sqlite_objects("trigger", triggers.CHECKPOINT_TABLE)
    assert set(checkpoint_triggers) == {"audit_checkpoint_no_update", "audit_checkpoint_no_delete"}


@on_sqlite
@pytest.mark.django_db
def test_on_sqlite_the_new_indexes_replace_the_old_ones():
    indexes = sqlite_objects("index", T)
    named = {name for name, sql in indexes.items() if sql is not None}  # autoindexes have no SQL
    assert named == EXPECTED_PG_INDEXES - {"audit_auditevent_pkey"}, sorted(named)
    assert not DROPPED & set(indexes)
    assert normalized(indexes["audit_seq_unique"]).startswith("CREATE UNIQUE INDEX audit_seq_unique")
    assert normalized(indexes["audit_seq_unique"]).endswith("(seq) WHERE seq IS NOT NULL")
    assert normalized(indexes["audit_unsealed_id_idx"]).endswith("(id) WHERE seq IS NULL")
