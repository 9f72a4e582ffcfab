"""The audit sequencer (run_worker runs it): one process seals for all, after-commit sealing defers to it."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection, connections, transaction

from audit import sealing
from audit.models import AuditEvent
from audit.services import audit_write
from audit.verify import verify_chain
from exchange.management.commands import run_worker
from tests.audit.conftest import insert_events_raw


def on_postgresql(test):
    """PostgreSQL only (the sequencer's lock is an advisory lock), committing for real."""
    test = pytest.mark.django_db(transaction=True)(test)
    test = pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL only")(test)
    return pytest.mark.postgres_only(test)


def sealed_count() -> int:
    return AuditEvent.objects.filter(seq__isnull=False).count()


def wait_for(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def write(n: int = 0) -> None:
    with transaction.atomic():
        audit_write(action="test.write", actor="test", details={"n": n})


def recording_passes(monkeypatch) -> list[tuple[str, int]]:
    """(thread name, events sealed) of every sealing pass from now on."""
    passes: list[tuple[str, int]] = []
    real = sealing._seal

    def wrapper(**kwargs):
        result = real(**kwargs)
        passes.append((threading.current_thread().name, result.sealed))
        return result

    monkeypatch.setattr(sealing, "_seal", wrapper)
    return passes


class Sequencer:
    """run_sequencer on a named thread, as run_worker runs it."""

    def __init__(self, name: str = "audit-sequencer", interval: float = 0.05):
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=sealing.run_sequencer, args=(self.stop,), kwargs={"interval": interval}, name=name, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture
def other_sequencer():
    """Another process's sequencer: a second connection holding the sequencer's lock."""
    other = connections.create_connection("default")
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_lock(%s)", [sealing.SEQUENCER_LOCK_KEY])
    yield other
    other.close()


def sequencer_lock_holders() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND mode = 'ExclusiveLock' "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            [sealing.SEQUENCER_LOCK_KEY],
        )
        return cursor.fetchone()[0]


@on_postgresql
def test_after_commit_sealing_defers_to_a_running_sequencer(other_sequencer, monkeypatch):
    passes = recording_passes(monkeypatch)
    write()
    # The committing thread looked (one pass), found the sequencer's lock held, and sealed nothing.
    assert passes == [("MainThread", 0)]
    assert sealed_count() == 0
    with transaction.atomic():
        assert sealing._lock(wait=False) is None
    # The backstop does not defer: it seals whatever runs.
    assert sealing.seal_pending().sealed == 1


@on_postgresql
def test_the_sealer_thread_does_not_look_again_while_a_sequencer_runs(other_sequencer):
    write()
    # One pass of a web worker's sealer thread: nothing sealed, and no second look asked for.
    assert sealing._background_pass() is False
    assert sealed_count() == 0


@on_postgresql
def test_the_sequencer_seals_committed_events_by_itself(monkeypatch):
    passes = recording_passes(monkeypatch)
    sequencer = Sequencer()
    try:
        assert wait_for(lambda: sequencer_lock_holders() == 1)
        for n in range(5):
            write(n)
        assert wait_for(lambda: sealed_count() == 5)
    finally:
        sequencer.close()
    sealers = {name for name, sealed in passes if sealed}
    assert sealers == {"audit-sequencer"}, passes
    # Stopping it released its lock with its connection.
    assert sequencer_lock_holders() == 0
    # It signs at most one checkpoint a second: the backstop pins the newest, then the chain verifies.
    assert sealing.seal_pending().sealed == 0
    assert verify_chain().ok


@on_postgresql
def test_once_the_sequencer_stops_after_commit_sealing_seals_again(monkeypatch):
    sequencer = Sequencer()
    assert wait_for(lambda: sequencer_lock_holders() == 1)
    sequencer.close()
    passes = recording_passes(monkeypatch)
    write()
    assert passes == [("MainThread", 1)]
    assert sealed_count() == 1


@on_postgresql
def test_a_second_sequencer_stands_by_and_takes_over_when_the_first_stops(monkeypatch):
    monkeypatch.setattr(sealing, "SEQUENCER_STANDBY_SECONDS", 0.1)
    passes = recording_passes(monkeypatch)
    first = Sequencer("first")
    assert wait_for(lambda: sequencer_lock_holders() == 1)
    second = Sequencer("second")
    try:
        write(1)
        assert wait_for(lambda: sealed_count() == 1)
        time.sleep(0.3)  # the second one has tried to take over, and stood by
        assert sequencer_lock_holders() == 1
        assert {name for name, sealed in passes if sealed} == {"first"}
        first.close()
        assert wait_for(lambda: sequencer_lock_holders() == 1)
        passes.clear()
        write(2)
        assert wait_for(lambda: sealed_count() == 2)
    finally:
        first.close()
        second.close()
    assert {name for name, sealed in passes if sealed} == {"second"}, passes
    assert sealing.seal_pending().sealed == 0
    assert verify_chain().ok


@on_postgresql
def test_a_failed_sequencer_pass_drops_its_lock_and_is_retried(monkeypatch, caplog):
    real = sealing._seal
    failures = []

    def failing_once(**kwargs):
        if not failures:
            failures.append(threading.current_thread().name)
            raise RuntimeError("database went away")
        return real(**kwargs)

    insert_events_raw(1)  # committed, unsealed (no after-commit sealing)
    monkeypatch.setattr(sealing, "_seal", failing_once)
    sequencer = Sequencer()
    try:
        # After the failure it let go of its lock (with its connection) while it waits to retry...
        assert wait_for(lambda: failures and sequencer_lock_holders() == 0, timeout=5)
        # ... then takes it again and seals.
        assert wait_for(lambda: sealed_count() == 1)
        assert sequencer_lock_holders() == 1
    finally:
        sequencer.close()
    assert failures == ["audit-sequencer"]
    assert "audit sequencer pass failed" in caplog.text


@on_postgresql
def test_run_worker_is_the_sequencer_until_it_stops(monkeypatch):
    seen = {}

    def rounds(self, *, once, interval, verbosity):
        seen["holders"] = wait_for(lambda: sequencer_lock_holders() == 1) and sequencer_lock_holders()
        seen["thread"] = any(thread.name == "audit-sequencer" for thread in threading.enumerate())

    monkeypatch.setattr(run_worker.Command, "_rounds", rounds)
    call_command("run_worker")
    assert seen == {"holders": 1, "thread": True}
    assert sequencer_lock_holders() == 0
    assert not any(thread.name == "audit-sequencer" for thread in threading.enumerate())


@pytest.mark.django_db(transaction=True)  # db_worker closes the connection it ran on
def test_run_worker_once_runs_no_sequencer(monkeypatch):
    started = []
    monkeypatch.setattr(sealing, "run_sequencer", lambda stop, **kwargs: started.append(stop))
    call_command("run_worker", "--once")
    assert started == []


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite only")
@pytest.mark.django_db(transaction=True)
def test_on_sqlite_there_is_no_sequencer_and_after_commit_sealing_goes_on():
    stop = threading.Event()
    sealing.run_sequencer(stop)  # returns at once
    write()
    assert sealed_count() == 1
