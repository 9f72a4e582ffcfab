"""Tampering by someone with write access to the database: each attack lifts the append-only
triggers the way such a person would (raw SQL), and `verify_audit` names the first bad event."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command, execute_from_command_line
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from audit.chain import GENESIS, event_hash
from audit.models import AuditEvent, Checkpoint
from audit.sealing import seal_pending
from audit.signing import checkpoint_message, public_key_b64
from audit.verify import Kind, verify_chain
from tests.audit.conftest import make_events, run_sql

T = AuditEvent._meta.db_table
C = Checkpoint._meta.db_table


@pytest.fixture
def history(db) -> dict[int, AuditEvent]:
    """Twelve sealed events with signed checkpoints at seq 4, 8 and 12, keyed by seq."""
    for _ in range(3):
        make_events(4)
        seal_pending()
    events = {e.seq: e for e in AuditEvent.objects.filter(seq__isnull=False)}
    assert sorted(events) == list(range(1, 13))
    assert list(Checkpoint.objects.values_list("seq", flat=True)) == [4, 8, 12]
    report = verify_chain()
    assert report.ok, report.summary()
    assert report.summary() == "OK 12 events (3 checkpoints, newest at seq 12)"
    return events


def failure() -> str:
    report = verify_chain()
    assert not report.ok, "tampering went unnoticed"
    with pytest.raises(CommandError) as info:
        call_command("verify_audit")
    assert str(info.value) == report.summary()
    return report.summary()


def truncate(table: str) -> None:
    run_sql(f"TRUNCATE {table}" if connection.vendor == "postgresql" else f"DELETE FROM {table}")


def shift_seqs(from_seq: int, by: int) -> None:
    """Renumber events at and after from_seq without tripping the unique index midway."""
    run_sql(f"UPDATE {T} SET seq = seq + 1000000 WHERE seq >= %s", [from_seq])
    run_sql(f"UPDATE {T} SET seq = seq - 1000000 + %s WHERE seq >= 1000000", [by])


def copy_of(event: AuditEvent, **changes) -> AuditEvent:
    fields = {f.attname: getattr(event, f.attname) for f in AuditEvent._meta.concrete_fields}
    fields.update(changes)
    return AuditEvent(**fields)


def rebuild(events: list[AuditEvent]) -> list[AuditEvent]:
    """Truncate the table and write a self-consistent chain of the given events (no key needed)."""
    truncate(T)
    prev, rebuilt = GENESIS, []
    for seq, event in enumerate(events, start=1):
        copy = copy_of(event, seq=seq, prev_hash=prev)
        copy.hash = prev = event_hash(copy, copy.prev_hash)
        rebuilt.append(copy)
    AuditEvent.objects.bulk_create(rebuilt)
    return rebuilt


def test_the_untouched_chain_verifies_and_the_command_says_ok(history, capsys):
    call_command("verify_audit")
    assert capsys.readouterr().out.strip() == "OK 12 events (3 checkpoints, newest at seq 12)"


def test_the_command_exits_non_zero_on_a_bad_chain(history, lifted, capsys, monkeypatch):
    run_sql(f"UPDATE {T} SET outcome = 'denied' WHERE seq = 3")
    # run_from_argv closes every connection at the end, which would end the test's transaction.
    monkeypatch.setattr("django.db.connections.close_all", lambda: None)
    with pytest.raises(SystemExit) as exit_info:
        execute_from_command_line(["manage.py", "verify_audit"])
    assert exit_info.value.code != 0
    assert f"seq 3 (id {history[3].id}): hash mismatch" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("column", "value"),
    [("action", "record.withdraw"), ("member_code", "BANKB"), ("details", '{"index": 999}'), ("actor", "x")],
)
def test_a_changed_field_is_named_as_a_hash_mismatch(history, lifted, column, value):
    run_sql(f"UPDATE {T} SET {column} = %s WHERE seq = 7", [value])
    assert failure() == f"FAIL seq 7 (id {history[7].id}): hash mismatch: the event's content was changed"


def test_a_timestamp_moved_by_one_microsecond_is_a_hash_mismatch(history, lifted):
    event = history[9]
    AuditEvent.objects.filter(pk=event.pk).update(occurred_at=event.occurred_at + timezone.timedelta(microseconds=1))
    assert f"seq 9 (id {event.id}): hash mismatch" in failure()


def test_a_deleted_event_leaves_a_gap(history, lifted):
    run_sql(f"DELETE FROM {T} WHERE seq = 5")
    assert failure() == (
        f"FAIL seq 5: missing: the next event is seq 6 (id {history[6].id}): events were deleted or the chain reordered"
    )


def test_a_deletion_hidden_by_renumbering_breaks_the_link(history, lifted):
    run_sql(f"DELETE FROM {T} WHERE seq = 5")
    shift_seqs(6, -1)
    assert failure().startswith(f"FAIL seq 5 (id {history[6].id}): prev_hash mismatch")


def test_a_forged_event_inserted_mid_chain_is_found(history, lifted):
    shift_seqs(5, +1)
    forged = copy_of(
        history[5], id=history[12].id + 100, seq=5, prev_hash=history[4].hash, action="consent.revoke", object_id="f"
    )
    forged.hash = event_hash(forged, forged.prev_hash)  # a perfectly computed link of its own
    forged.save(force_insert=True)
    message = failure()
    assert message.startswith(f"FAIL seq 6 (id {history[5].id}): prev_hash mismatch")
    assert "deleted, inserted or reordered" in message


def test_two_swapped_events_are_found(history, lifted):
    run_sql(f"UPDATE {T} SET seq = -4 WHERE seq = 4")
    run_sql(f"UPDATE {T} SET seq = 4 WHERE seq = 8")
    run_sql(f"UPDATE {T} SET seq = 8 WHERE seq = -4")
    assert failure().startswith(f"FAIL seq 4 (id {history[8].id}): prev_hash mismatch")


def test_two_events_swapped_with_their_chain_columns_are_found(history, lifted):
    # The attacker moves the rows' contents but leaves each position's links in place.
    move = f"UPDATE {T} SET seq = %s, prev_hash = %s, hash = %s WHERE seq = %s"
    run_sql(move, [-4, history[4].prev_hash, history[4].hash, 8])
    run_sql(move, [8, history[8].prev_hash, history[8].hash, 4])
    run_sql(f"UPDATE {T} SET seq = 4 WHERE seq = -4")
    assert failure() == f"FAIL seq 4 (id {history[8].id}): hash mismatch: the event's content was changed"


def test_cutting_off_the_newest_events_is_found(history, lifted):
    run_sql(f"DELETE FROM {T} WHERE seq > 9")
    message = failure()
    assert message.startswith("FAIL seq 10: missing: the checkpoint at seq 12 is beyond the last event (seq 9)")
    assert "cut off" in message
    assert verify_chain().problem.kind == Kind.TAIL


def test_cutting_off_the_tail_and_writing_on_is_found(history, lifted):
    run_sql(f"DELETE FROM {T} WHERE seq > 9")
    make_events(5)
    seal_pending(checkpoint=False)  # new events take the freed positions 10, 11, 12, ...
    event_12 = AuditEvent.objects.get(seq=12)
    message = failure()
    assert message.startswith(f"FAIL seq 12 (id {event_12.id}): checkpoint ")
    assert "signed a different hash" in message


def test_a_rebuilt_chain_without_one_event_contradicts_the_signed_checkpoints(history, lifted):
    kept = [history[seq] for seq in range(1, 13) if seq != 6]
    rebuilt = rebuild([*kept, copy_of(history[12], id=None, action="inquiry.create")])
    message = failure()
    assert message.startswith(f"FAIL seq 8 (id {rebuilt[7].id}): checkpoint ")  # the first checkpoint after seq 6
    assert "signed a different hash" in message


def test_a_rebuilt_chain_with_its_checkpoints_removed_has_none_signed(history, lifted):
    rebuild([history[seq] for seq in range(1, 13) if seq != 6])
    truncate(C)
    assert failure() == (
        "FAIL seq 1 (id None): the chain of 11 events has no signed checkpoint: "
        "it cannot be told apart from a rebuilt one (run seal_audit to sign one)"
    )


@pytest.mark.parametrize("claimed_key", ["attacker's own", "the exchange's"])
def test_a_rebuilt_chain_with_checkpoints_signed_by_another_key_is_found(history, lifted, claimed_key):
    import base64

    from cryptography.hazmat.primitives import serialization

    rebuilt = rebuild([history[seq] for seq in range(1, 13) if seq != 6])
    truncate(C)
    attacker = Ed25519PrivateKey.generate()
    attacker_public = base64.b64encode(
        attacker.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ).decode()
    newest, signed_at = rebuilt[-1], timezone.now()
    signature = attacker.sign(checkpoint_message(seq=newest.seq, hash=newest.hash, signed_at=signed_at))
    Checkpoint.objects.create(
        seq=newest.seq,
        hash=newest.hash,
        signed_at=signed_at,
        public_key=attacker_public if claimed_key == "attacker's own" else public_key_b64(),
        signature=base64.b64encode(signature).decode(),
    )
    message = failure()
    assert message.startswith(f"FAIL seq 11 (id {newest.id}): checkpoint ")
    assert "checkpoint signature invalid" in message


def test_a_moved_checkpoint_no_longer_verifies(history, lifted):
    run_sql(f"UPDATE {C} SET seq = 7, hash = %s WHERE seq = 8", [history[7].hash])
    message = failure()
    assert message.startswith(f"FAIL seq 7 (id {history[7].id}): checkpoint ")
    assert "checkpoint signature invalid" in message


def test_an_event_put_back_to_unsealed_leaves_a_gap(history, lifted):
    run_sql(f"UPDATE {T} SET seq = NULL, prev_hash = NULL, hash = NULL WHERE seq = 2")
    assert failure().startswith(f"FAIL seq 2: missing: the next event is seq 3 (id {history[3].id})")


def test_an_honest_but_unsealed_tail_is_only_noted(history):
    make_events(2)
    report = verify_chain()
    assert report.ok
    assert report.summary() == (
        "OK 12 events (3 checkpoints, newest at seq 12; 2 events not sealed yet (run seal_audit))"
    )
