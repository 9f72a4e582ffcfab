"""Many writers at once, some rolling back, sealing after each commit as in production: every
committed event ends up sealed exactly once, in one gap-free chain that verifies."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import OperationalError, connection, transaction

from audit import sealing
from audit.models import AuditEvent, Checkpoint
from audit.services import audit_write
from audit.verify import verify_chain

THREADS = 8
WRITES_PER_THREAD = 30


class RolledBack(Exception):
    pass


def _retrying(work):
    """SQLite's shared in-memory test database reports lock conflicts at once instead of waiting
    (shared-cache mode ignores the busy timeout): retry those there. PostgreSQL never needs it."""
    for _attempt in range(200):
        try:
            return work()
        except OperationalError as exc:
            if connection.vendor != "sqlite" or "locked" not in str(exc):
                raise
            time.sleep(0.002)
    raise AssertionError("gave up retrying a locked SQLite database")


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_with_rollbacks_are_all_sealed_exactly_once(caplog):
    committed: list[tuple[int, int]] = []  # (thread, write) of each committed event
    rolled_back: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(THREADS)
    lock = threading.Lock()

    def writer(number: int) -> None:
        try:
            start.wait()
            for i in range(WRITES_PER_THREAD):
                rollback = (i + number) % 4 == 0

                def one(i=i, rollback=rollback):
                    with transaction.atomic():
                        audit_write(
                            action="test.concurrent", actor=f"thread:{number}", details={"thread": number, "i": i}
                        )
                        if rollback:
                            raise RolledBack

                try:
                    _retrying(one)
                except RolledBack:
                    with lock:
                        rolled_back.append((number, i))
                else:
                    with lock:
                        committed.append((number, i))
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    with caplog.at_level(logging.ERROR, logger="audit.sealing"):
        threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    if connection.vendor == "postgresql":
        assert "audit sealing after commit failed" not in caplog.text
    # Most events were sealed by the writers' own after-commit hooks; the backstop takes the rest.
    sealed_by_writers = AuditEvent.objects.filter(seq__isnull=False).count()
    result = sealing.seal_pending()

    assert len(committed) == THREADS * WRITES_PER_THREAD * 3 // 4
    rows = list(AuditEvent.objects.order_by("seq").values_list("details", "seq"))
    stored = [(details["thread"], details["i"]) for details, _seq in rows]
    assert sorted(stored) == sorted(committed)  # every committed write once, no rolled-back one
    assert rolled_back and not set(rolled_back) & set(stored)
    assert [seq for _details, seq in rows] == list(range(1, len(committed) + 1))  # none missing, none doubled
    assert sealed_by_writers + result.sealed == len(committed)
    assert sealed_by_writers > 0
    if connection.vendor == "postgresql":
        # A hook that finds the lock busy leaves its events to the holder, who looks again after
        # letting go: none is left behind for the backstop.
        assert sealed_by_writers == len(committed)
    report = verify_chain()
    assert report.ok, report.summary()
    assert report.events == len(committed)
    assert Checkpoint.objects.order_by("-seq").first().seq == len(committed)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="SQLite lets one writer at a time: no overtaking")
def test_an_event_that_commits_late_with_a_lower_id_is_sealed_after_the_higher_ones():
    inserted, release, done = threading.Event(), threading.Event(), threading.Event()
    late: list[int] = []

    def slow_writer():
        try:
            with transaction.atomic():
                late.append(audit_write(action="test.slow", actor="slow").id)
                inserted.set()
                release.wait(10)
            done.set()
        finally:
            connection.close()

    thread = threading.Thread(target=slow_writer)
    thread.start()
    assert inserted.wait(10)
    fast = audit_write(action="test.fast", actor="fast")  # commits (and is sealed) first
    fast.refresh_from_db()
    assert fast.seq == 1 and fast.id > late[0]
    release.set()
    thread.join()
    assert done.is_set()
    sealing.seal_pending()
    slow = AuditEvent.objects.get(pk=late[0])
    assert slow.seq == 2 and slow.prev_hash == fast.hash
    assert verify_chain().ok
