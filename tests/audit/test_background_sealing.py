"""The per-process sealer thread (gunicorn.conf.py starts it): a commit wakes it, it seals."""

from __future__ import annotations

import pytest
from django.db import connections, transaction

from audit import sealing
from audit.models import AuditEvent
from audit.services import audit_write
from audit.verify import verify_chain


def _wait_until_sealed(count: int, timeout: float = 20.0) -> int:
    """The sealed events once the sealer thread has nothing left to look at (its hook, not a poll)."""
    sealing.wait_until_idle(timeout)
    return AuditEvent.objects.filter(seq__isnull=False).count()


@pytest.fixture
def sealer():
    sealing.start_background_sealer()
    yield
    sealing.stop_background_sealer()


# PostgreSQL only: SQLite's in-memory test database locks whole tables across connections.
@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_commit_wakes_the_sealer_thread_which_seals_the_events(sealer, monkeypatch):
    on_this_thread = []
    monkeypatch.setattr(sealing, "_seal", _recording(sealing._seal, on_this_thread))
    for n in range(5):
        with transaction.atomic():
            audit_write(action="test.write", actor="test", details={"n": n})
    assert _wait_until_sealed(5) == 5
    sealed_by = list(on_this_thread)
    # The thread signs at most one checkpoint a second (one may have been signed just before this
    # test): the backstop pins the newest event, then the whole chain must verify.
    assert sealing.seal_pending().sealed == 0
    assert verify_chain().ok
    # The committing thread only woke the sealer; the sealing ran on the sealer's thread.
    assert sealed_by and all(name == "audit-sealer" for name in sealed_by)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_events_left_while_another_sealer_held_the_lock_are_sealed_without_another_commit(sealer):
    # Another process's sealer holds the lock when this process's event commits: the thread finds
    # it busy and must look again by itself once the lock is free, with no further commit to wake it.
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [sealing.ADVISORY_LOCK_KEY])
        passes = sealing.sealer_passes()
        with transaction.atomic():
            audit_write(action="test.left", actor="test")
        assert sealing.wait_for_pass(passes), "the sealer thread never tried"  # and found the lock busy
        assert AuditEvent.objects.filter(seq__isnull=False).count() == 0
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [sealing.ADVISORY_LOCK_KEY])
        assert _wait_until_sealed(1, timeout=5.0) == 1
    finally:
        other.close()
    # The thread signs at most one checkpoint a second (the test before may just have signed one):
    # the backstop pins the newest event, with nothing left to seal, then the chain must verify.
    assert sealing.seal_pending().sealed == 0
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_without_the_sealer_thread_the_committing_thread_seals():
    sealing.stop_background_sealer()
    with transaction.atomic():
        audit_write(action="test.write", actor="test")
    assert AuditEvent.objects.filter(seq__isnull=False).count() == 1


def _first_pass_replaced(monkeypatch, first) -> list:
    """The sealer thread's first pass runs `first()` instead of sealing; later passes seal. Returns
    the list of passes so far (one entry each)."""
    real_seal = sealing._seal
    passes: list = []

    def replaced(**kwargs):
        passes.append(1)
        return first() if len(passes) == 1 else real_seal(**kwargs)

    monkeypatch.setattr(sealing, "_seal", replaced)
    return passes


def _recording(function, calls: list):
    import threading

    def wrapper(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return function(*args, **kwargs)

    return wrapper


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_thread_goes_idle_when_nothing_is_left(sealer, monkeypatch):
    passes = []
    monkeypatch.setattr(sealing, "_seal", _recording(sealing._seal, passes))
    with transaction.atomic():
        audit_write(action="test.write", actor="test")
    # Idle: waiting for a wake-up with none pending, so it runs no pass until the next commit. A
    # thread that kept waking itself with nothing to seal would never get there.
    assert sealing.wait_until_idle(), "the sealer thread kept polling with nothing to seal"
    assert AuditEvent.objects.filter(seq__isnull=False).count() == 1
    settled = len(passes)
    assert settled <= 3


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_failed_pass_is_retried_without_another_commit(sealer, monkeypatch):
    def fail():
        raise RuntimeError("simulated failure of a sealing pass")

    passes = _first_pass_replaced(monkeypatch, fail)
    with transaction.atomic():
        audit_write(action="test.retry", actor="test")
    assert _wait_until_sealed(1, timeout=10.0) == 1  # the retry, about a second later
    assert len(passes) >= 2
    assert sealing._sealer is not None and sealing._sealer.is_alive()
    assert sealing._failures == 0


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_pass_that_saw_nothing_looks_again_while_committed_events_are_unsealed(sealer, monkeypatch):
    # A pass that read the unsealed events just before another commit (whose own sealer found this
    # pass's lock busy and left its events to it) seals nothing: the thread must still look again.
    passes = _first_pass_replaced(monkeypatch, sealing.SealResult)  # sealed nothing, lock was free
    with transaction.atomic():
        audit_write(action="test.missed", actor="test")
    assert _wait_until_sealed(1, timeout=5.0) == 1
    assert len(passes) >= 2
