"""Sealing: positions in sealing order without gaps, set once, after commit, never failing a request."""

from __future__ import annotations

import base64
import itertools
import logging
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from audit import sealing
from audit.chain import GENESIS, event_hash
from audit.models import AuditEvent, Checkpoint
from audit.services import audit_write
from audit.signing import checkpoint_signature_valid, public_key_b64
from audit.triggers import IMMUTABLE_COLUMNS
from audit.verify import verify_chain
from tests.audit.conftest import make_events, run_sql

TEST_PUBLIC_KEY = base64.b64encode(
    Ed25519PrivateKey.from_private_bytes(b"a" * 32)
    .public_key()
    .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
).decode()


def chain() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(seq__isnull=False).order_by("seq"))


@pytest.mark.django_db
def test_it_gives_committed_events_positions_1_to_n_in_id_order_with_linked_hashes():
    make_events(2345)  # more than two batches
    result = sealing.seal_pending()
    assert result.sealed == 2345
    events = chain()
    assert [e.seq for e in events] == list(range(1, 2346))
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert events[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    for event in events:
        assert event.hash == event_hash(event, event.prev_hash)
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()


@pytest.mark.django_db
def test_sealing_twice_seals_nothing_new_and_continues_the_chain():
    make_events(3)
    sealing.seal_pending()
    first = chain()
    assert sealing.seal_pending().sealed == 0
    make_events(2)
    assert sealing.seal_pending().sealed == 2
    events = chain()
    assert [(e.id, e.hash) for e in events[:3]] == [(e.id, e.hash) for e in first]
    assert events[3].prev_hash == first[-1].hash
    assert verify_chain().ok


@pytest.mark.django_db
def test_a_lower_id_committed_after_a_higher_one_was_sealed_gets_the_next_position():
    high = audit_write(action="test.late", actor="test")
    sealing.seal_pending()
    # An id handed out earlier by a transaction that committed later.
    low = AuditEvent.objects.create(id=high.id - 1 if high.id > 1 else high.id + 1000, **_fields())
    assert sealing.seal_pending().sealed == 1
    low.refresh_from_db()
    high.refresh_from_db()
    assert low.seq == high.seq + 1
    assert low.prev_hash == high.hash
    assert verify_chain().ok


def _fields() -> dict:
    return {"occurred_at": timezone.now(), "actor": "test", "action": "test.late"}


@pytest.mark.django_db
def test_the_seal_is_set_once_the_triggers_refuse_a_second_one():
    make_events(2)
    sealing.seal_pending()
    event = chain()[0]
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(hash="f" * 64)
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        Checkpoint.objects.update(seq=1)
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        Checkpoint.objects.all().delete()
    event.refresh_from_db()
    assert event.hash != "f" * 64


@pytest.mark.django_db
def test_an_unsealed_event_cannot_be_sealed_with_other_fields_changed():
    event = audit_write(action="test.x", actor="test")
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        run_sql(
            f"UPDATE {AuditEvent._meta.db_table} SET seq = 1, prev_hash = %s, hash = %s, actor = 'forged' "
            "WHERE id = %s",
            [GENESIS, "a" * 64, event.id],
        )


# A value other than the stored one for each column the seal must leave alone (SQL, per column).
CHANGED = {
    "id": "id + 1000000",
    "occurred_at": "occurred_at + interval '1 microsecond'" if connection.vendor == "postgresql" else "'2000-01-01'",
    "actor": "'forged'",
    "member_code": "'FORGED'",
    "action": "'forged'",
    "object_type": "'forged'",
    "object_id": "'forged'",
    "subject_token": "'forged'",
    "outcome": "'denied'",
    "request_id": "'forged'",
    "details": "'{\"forged\": 1}'",
}


@pytest.mark.django_db
@pytest.mark.parametrize("column", sorted(CHANGED))
def test_a_seal_that_changes_any_other_column_is_refused(column):
    assert set(CHANGED) == set(IMMUTABLE_COLUMNS)
    event = audit_write(action="test.x", actor="test", details={"kept": 1})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        run_sql(
            f"UPDATE {AuditEvent._meta.db_table} SET seq = 1, prev_hash = %s, hash = %s, "
            f"{column} = {CHANGED[column]} WHERE id = %s",
            [GENESIS, "a" * 64, event.id],
        )
    # The same seal with nothing else changed goes through.
    run_sql(
        f"UPDATE {AuditEvent._meta.db_table} SET seq = 1, prev_hash = %s, hash = %s WHERE id = %s",
        [GENESIS, "a" * 64, event.id],
    )
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.seq, stored.actor, stored.details) == (1, "test", {"kept": 1})


@pytest.mark.django_db
def test_a_sealed_event_cannot_be_unsealed_or_resealed():
    make_events(1)
    sealing.seal_pending()
    event = chain()[0]
    table = AuditEvent._meta.db_table
    for sql in (
        f"UPDATE {table} SET seq = NULL, prev_hash = NULL, hash = NULL WHERE id = %s",
        f"UPDATE {table} SET seq = seq + 1 WHERE id = %s",
        f"UPDATE {table} SET prev_hash = hash WHERE id = %s",
    ):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            run_sql(sql, [event.id])
    assert chain()[0].hash == event.hash


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_on_postgresql_the_seal_is_told_apart_in_the_update_triggers_when_clause():
    # The PL/pgSQL guard is called only for what it refuses, not once per sealed event.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
            [AuditEvent._meta.db_table],
        )
        definitions = dict(cursor.fetchall())
    assert set(definitions) == {"audit_event_no_update", "audit_event_no_delete", "audit_event_no_truncate"}
    assert "BEFORE UPDATE ON" in definitions["audit_event_no_update"]
    assert "WHEN (" in definitions["audit_event_no_update"]
    assert "BEFORE DELETE ON" in definitions["audit_event_no_delete"]


@pytest.mark.django_db
def test_seal_audit_seals_and_ends_with_a_signed_checkpoint_of_the_newest(capsys):
    make_events(5)
    call_command("seal_audit")
    out = capsys.readouterr().out
    assert "sealed 5 events" in out and "checkpoint at seq 5" in out and "0 events still unsealed" in out
    checkpoint = Checkpoint.objects.get()
    newest = chain()[-1]
    assert (checkpoint.seq, checkpoint.hash) == (5, newest.hash)
    assert checkpoint.public_key == TEST_PUBLIC_KEY == public_key_b64()
    assert checkpoint_signature_valid(
        public_key=checkpoint.public_key,
        seq=checkpoint.seq,
        hash=checkpoint.hash,
        signed_at=checkpoint.signed_at,
        signature=checkpoint.signature,
    )
    assert not checkpoint_signature_valid(
        public_key=checkpoint.public_key,
        seq=checkpoint.seq + 1,
        hash=checkpoint.hash,
        signed_at=checkpoint.signed_at,
        signature=checkpoint.signature,
    )
    # Nothing new: the newest event already has its checkpoint.
    call_command("seal_audit")
    assert "sealed 0 events" in capsys.readouterr().out
    assert Checkpoint.objects.count() == 1


@pytest.mark.django_db
def test_audit_public_key_prints_the_signing_keys_public_half(capsys):
    call_command("audit_public_key")
    assert capsys.readouterr().out.strip() == TEST_PUBLIC_KEY


@pytest.mark.django_db
def test_the_signing_key_is_read_at_call_time(settings):
    other = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    settings.EXCHANGE_AUDIT_SIGNING_KEY = base64.b64encode(other).decode()
    assert public_key_b64() != TEST_PUBLIC_KEY


@pytest.mark.django_db
def test_seal_soon_signs_at_most_about_once_a_second(monkeypatch):
    monkeypatch.setattr(sealing, "_last_checkpoint_monotonic", 0.0)
    make_events(3)
    sealing.seal_soon()
    make_events(3)
    sealing.seal_soon()
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 0
    assert list(Checkpoint.objects.values_list("seq", flat=True)) == [3]  # the second came too soon
    monkeypatch.setattr(sealing, "CHECKPOINT_INTERVAL", timedelta(0))
    monkeypatch.setattr(sealing, "_last_checkpoint_monotonic", 0.0)
    make_events(1)
    sealing.seal_soon()
    assert list(Checkpoint.objects.values_list("seq", flat=True)) == [3, 7]


@pytest.mark.django_db
def test_seal_soon_never_raises_it_logs_and_leaves_the_events_to_the_backstop(monkeypatch, caplog):
    def broken():
        raise DatabaseError("connection lost")

    monkeypatch.setattr(sealing, "_seal_batch", broken)
    make_events(2)
    with caplog.at_level(logging.ERROR, logger="audit.sealing"):
        sealing.seal_soon()
    assert "audit sealing after commit failed" in caplog.text
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 2


@pytest.mark.django_db
def test_seal_soon_returns_at_once_while_another_sealer_runs():
    make_events(2)
    with sealing._process_lock:
        sealing.seal_soon()
    assert AuditEvent.objects.filter(seq__isnull=True).count() == 2


@pytest.mark.django_db(transaction=True)
def test_events_are_sealed_right_after_their_transaction_commits(monkeypatch):
    monkeypatch.setattr(sealing, "_last_checkpoint_monotonic", 0.0)
    with transaction.atomic():
        event = audit_write(action="test.commit", actor="test")
        assert AuditEvent.objects.get(pk=event.pk).seq is None  # not inside the transaction
    event.refresh_from_db()
    assert event.seq == 1 and event.hash is not None
    assert Checkpoint.objects.filter(seq=1).exists()

    with pytest.raises(RuntimeError), transaction.atomic():
        audit_write(action="test.rollback", actor="test")
        raise RuntimeError("rolled back")
    assert AuditEvent.objects.count() == 1
    audit_write(action="test.after", actor="test")
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True)) == [1, 2]
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="advisory locks are PostgreSQL's")
def test_on_postgresql_seal_soon_skips_when_another_process_holds_the_advisory_lock():
    import psycopg

    from tests.audit.test_pg_app_role import pg_dsn

    with psycopg.connect(**pg_dsn(owner=True), autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", [sealing.ADVISORY_LOCK_KEY])
        event = audit_write(action="test.busy", actor="test")
        event.refresh_from_db()
        assert event.seq is None
        other.execute("SELECT pg_advisory_unlock(%s)", [sealing.ADVISORY_LOCK_KEY])
    sealing.seal_soon()
    event.refresh_from_db()
    assert event.seq == 1
    assert connection.vendor == "postgresql"
