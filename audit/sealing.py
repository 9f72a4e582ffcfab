"""Sealing audit events into the hash chain, and signing checkpoints of it: the one place that
gives events their chain position, `prev_hash` and `hash`.

Two ways in. Most writers only insert events (audit.services.audit_write); after commit,
`seal_soon()` gives the committed, unsealed events (in id order, at sealing time) the next chain
positions under a non-blocking lock: one sealer at a time, the others return at once and leave
their events to it. `seal_pending()` is the blocking backstop (the `seal_audit` command and the
worker call it) and ends with a signed checkpoint of the newest event. Writers of many events at
once (the record writer) call `insert_chained` through audit.services.insert_sealed instead: their
events go in already sealed, in the writer's transaction, under the same lock held to its commit.

Where the sealing runs after a commit: `seal_soon()` on the committing thread by default (tests,
commands, runserver), or, once `start_background_sealer()` was called in the process
(gunicorn.conf.py does it in every worker), one sealer thread of the process that the commit only
wakes, so that a request does not wait for the sealing of its events. That thread runs one pass
per wake-up after a short coalescing wait, and wakes itself again while there may be work left
to it (`_background_pass`; docs/audit.md). Tests wait for it with `wait_for_pass` and
`wait_until_idle` rather than sleeping.

A lower id that commits after a higher id was sealed simply gets a later position: positions
are given in sealing order, never taken from the id, and verification follows `seq`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction
from django.utils import timezone

from audit.chain import GENESIS, NotCanonical, canonical_details, iso_utc, link_hash, row_fields, sealed_hash
from audit.models import AuditEvent, Checkpoint
from audit.signing import sign_checkpoint
from audit.triggers import IMMUTABLE_COLUMNS
from core.copy import copy_lines, copy_text
from core.prepared import PreparedQuery

logger = logging.getLogger(__name__)

# pg advisory lock key for "the audit sealer" (ASCII "auditsea" would not fit; any fixed bigint does).
ADVISORY_LOCK_KEY = 0x61756469745345
BATCH_SIZE = 1000
# The hot path seals at most this many batches per call; a larger backlog is left to the next
# commit or the backstop, so one unlucky request never carries a long sealing run.
HOT_PATH_MAX_BATCHES = 10
CHECKPOINT_INTERVAL = timedelta(seconds=1)
# How long the sealer thread waits after a wake-up before sealing (start_background_sealer).
COALESCE_SECONDS = 0.2

# One sealer per process at a time: other threads of the process return without a database round trip.
_process_lock = threading.Lock()
_last_checkpoint_monotonic = 0.0


@dataclass
class SealResult:
    sealed: int = 0
    checkpoint: Checkpoint | None = None
    last_seq: int = 0
    busy: bool = False  # another sealer held the lock (only when not waiting)


def seal_soon() -> None:
    """After-commit hook: seal what is committed, if no other sealer is at it. Never raises."""
    try:
        budget = BATCH_SIZE * HOT_PATH_MAX_BATCHES
        for _round in range(100):  # a bound on rounds in case others keep sealing what we saw
            if budget <= 0 or not _process_lock.acquire(blocking=False):
                return
            try:
                result = _seal(wait=False, checkpoint="interval", max_batches=-(-budget // BATCH_SIZE))
            finally:
                _process_lock.release()
            budget -= result.sealed
            if result.busy:
                return
            # An event that committed while we held the lock found it busy and left it to us:
            # look once more now the lock is free (whoever takes it next does the same).
            if not _any_unsealed():
                return
    except Exception:  # sealing must never fail the request: the backstop seals later
        logger.exception("audit sealing after commit failed; `seal_audit` will seal the events")


def seal_after_commit() -> None:
    """What `audit_write` runs after a commit: wake the process's sealer thread if one runs,
    else seal on this thread. Never raises."""
    if _sealer is not None and _sealer.is_alive() and _sealer_pid == os.getpid():
        _wakeup.set()
        return
    seal_soon()


# The per-process sealer thread (start_background_sealer); a forked child starts its own.
_wakeup = threading.Event()
_stopping = threading.Event()
_sealer: threading.Thread | None = None
_sealer_pid = 0


def start_background_sealer() -> None:
    """Seal after commit on a thread of this process instead of the committing request's thread.

    Each wake-up, after a short coalescing wait, runs one pass over everything committed so far,
    so under load one pass seals the events of many requests (`_sealer_loop`). Events of a process
    that dies before its sealer ran are sealed by the backstop (run_worker, seal_audit), as any
    event left behind is.
    """
    global _sealer, _sealer_pid
    if _sealer is not None and _sealer.is_alive() and _sealer_pid == os.getpid():
        return
    _stopping.clear()
    _wakeup.clear()
    with _pass_done:
        _state.update(passes=0, parked=False)
    _sealer = threading.Thread(target=_sealer_loop, name="audit-sealer", daemon=True)
    _sealer_pid = os.getpid()
    _sealer.start()


def stop_background_sealer(timeout: float = 10.0) -> None:
    """Stop the sealer thread after its current pass (tests, worker shutdown)."""
    global _sealer
    thread = _sealer
    if thread is None:
        return
    _stopping.set()
    _wakeup.set()
    thread.join(timeout)
    _sealer = None


def _sealer_loop() -> None:
    from django.db import close_old_connections

    while not _stopping.is_set():
        with _pass_done:
            _state["parked"] = True
            _pass_done.notify_all()
        _wakeup.wait()
        with _pass_done:
            _state["parked"] = False
        # Let the commits of the next few milliseconds join this pass: under load one pass then
        # seals many requests' events for the same handful of statements.
        _stopping.wait(COALESCE_SECONDS)
        _wakeup.clear()
        if _stopping.is_set():
            break
        if _background_pass():
            # Events that committed meanwhile (in any process) may have been left to this pass.
            # Look again after the next coalescing wait, not at once: looking at once, under
            # load, meant passes of a few events each, back to back (docs/audit.md, "Throughput").
            _wakeup.set()
        # This thread's connection lives across passes; drop it if broken or past CONN_MAX_AGE.
        close_old_connections()
        with _pass_done:
            _state["passes"] += 1
            _pass_done.notify_all()
    connection.close()


# What the sealer thread has done, for tests to wait on instead of sleeping: passes completed, and
# whether it waits for a wake-up with none pending (`parked`).
_pass_done = threading.Condition()
_state = {"passes": 0, "parked": False}


def sealer_passes() -> int:
    """Passes the sealer thread has completed since it started."""
    with _pass_done:
        return _state["passes"]


def wait_for_pass(after: int, timeout: float = 10.0) -> bool:
    """Wait until the sealer thread has completed more than `after` passes; False on timeout."""
    with _pass_done:
        return _pass_done.wait_for(lambda: _state["passes"] > after, timeout)


def wait_until_idle(timeout: float = 10.0) -> bool:
    """Wait until the sealer thread waits for a wake-up with none pending: it has nothing left to
    look at until the next commit. False on timeout (e.g. it keeps waking itself)."""
    with _pass_done:
        return _pass_done.wait_for(lambda: _state["parked"] and not _wakeup.is_set(), timeout)


# Consecutive failed passes of the sealer thread: the next try waits 1, 2, 4 ... up to 30 seconds.
_failures = 0
MAX_RETRY_SECONDS = 30.0


def _background_pass() -> bool:
    """One pass of the sealer thread. True if the thread should look again after its next
    coalescing wait: the pass sealed something, found another sealer holding the lock, or left
    committed events unsealed (a committing thread that found this pass's lock busy left its
    events to us), or it failed (retried with a growing pause). Never raises."""
    global _failures
    try:
        with _process_lock:
            result = _seal(wait=False, checkpoint="interval", max_batches=HOT_PATH_MAX_BATCHES)
            again = result.busy or result.sealed > 0 or _any_unsealed()
    except Exception:  # the thread must survive: it retries, and the backstop seals meanwhile
        _failures += 1
        pause = min(MAX_RETRY_SECONDS, 2.0 ** (_failures - 1))
        logger.exception("audit sealing after commit failed; retrying in %.0f s (`seal_audit` also seals)", pause)
        _stopping.wait(pause)
        return True
    _failures = 0
    return again


def seal_pending(*, checkpoint: bool = True) -> SealResult:
    """Seal every committed, unsealed event, waiting for any running sealer; then (by default)
    make sure the newest sealed event has a signed checkpoint. For `seal_audit` and the worker."""
    with _process_lock:
        return _seal(wait=True, checkpoint="newest" if checkpoint else "none", max_batches=None)


def pending_count() -> int:
    return AuditEvent.objects.filter(seq__isnull=True).count()


def _seal(*, wait: bool, checkpoint: str, max_batches: int | None) -> SealResult:
    result = SealResult()
    batches = 0
    while True:
        with transaction.atomic():
            if not _lock(wait=wait):
                result.busy = True
                return result
            sealed, last_seq, last_hash = _seal_batch()
            result.sealed += sealed
            result.last_seq = last_seq
            batches += 1
            done = sealed < BATCH_SIZE or (max_batches is not None and batches >= max_batches)
            if checkpoint == "interval" and sealed:
                result.checkpoint = _checkpoint_if_due(last_seq, last_hash) or result.checkpoint
            elif checkpoint == "newest" and done and last_seq:
                result.checkpoint = _checkpoint_newest(last_seq, last_hash)
        if done:
            return result


def _lock(*, wait: bool) -> bool:
    if connection.vendor != "postgresql":
        # SQLite: the process lock is held by the caller, and the transaction (BEGIN IMMEDIATE,
        # see settings) holds the database's write lock, which serialises sealers across processes.
        return True
    function = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [ADVISORY_LOCK_KEY])
        row = cursor.fetchone()
    return wait or bool(row[0])


# The sealer's reads, compiled once per database (core/prepared.py): a pass under load seals a
# few events, so building these querysets each time cost more than running them.
_NEWEST_SEALED = PreparedQuery(
    lambda: AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash")[:1]
)
_UNSEALED = PreparedQuery(
    lambda: AuditEvent.objects.filter(seq__isnull=True).order_by("id").values_list(*IMMUTABLE_COLUMNS)[:BATCH_SIZE]
)


def _rows(query: PreparedQuery) -> list[list]:
    sql, params = query.bind()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return query.convert(cursor.fetchall())


def _any_unsealed() -> bool:
    table = connection.ops.quote_name(AuditEvent._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {table} WHERE seq IS NULL LIMIT 1")  # noqa: S608 - fixed name
        return cursor.fetchone() is not None


def newest_sealed() -> tuple[int, str] | None:
    """(seq, hash) of the chain's newest sealed event, or None for an empty chain."""
    rows = _rows(_NEWEST_SEALED)
    return (rows[0][0], rows[0][1]) if rows else None


def _seal_batch() -> tuple[int, int, str]:
    """Seal up to BATCH_SIZE committed events; returns (count, newest seq, newest hash)."""
    seq, prev = newest_sealed() or (0, GENESIS)
    rows = []
    for values in _rows(_UNSEALED):
        event = dict(zip(IMMUTABLE_COLUMNS, values, strict=True))
        seq += 1
        try:
            fields = row_fields(event)
            fields["seq"] = seq
            digest = link_hash(prev, fields)
        except NotCanonical as exc:
            raise NotCanonical(f"audit event id {event['id']} cannot be sealed: {exc}") from exc
        rows.append((event["id"], seq, prev, digest))
        prev = digest
    if rows:
        _write_seals(rows)
    return len(rows), seq, prev


def _write_seals(rows: list[tuple[int, int, str, str]]) -> None:
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # Four array parameters: the same statement text whatever the batch size, so psycopg
            # parses it once and PostgreSQL runs it prepared.
            cursor.execute(
                f"UPDATE {table} AS e SET seq = v.seq, prev_hash = v.prev_hash, hash = v.hash "  # noqa: S608 - fixed names
                "FROM unnest(%s::bigint[], %s::bigint[], %s::varchar[], %s::varchar[]) AS v(id, seq, prev_hash, hash) "
                "WHERE e.id = v.id AND e.seq IS NULL",
                [list(column) for column in zip(*rows, strict=True)],
            )
        else:
            cursor.executemany(
                f"UPDATE {table} SET seq = %s, prev_hash = %s, hash = %s WHERE id = %s AND seq IS NULL",  # noqa: S608
                [(seq, prev, digest, event_id) for event_id, seq, prev, digest in rows],
            )
        updated = cursor.rowcount
    if updated != len(rows):
        # Someone else sealed some of them (a sealer that ignored the lock): give up this batch.
        raise RuntimeError(f"audit sealing expected to seal {len(rows)} events, sealed {updated}")


def _sign(seq: int, digest: str) -> Checkpoint:
    global _last_checkpoint_monotonic
    signed_at = timezone.now()
    public_key, signature = sign_checkpoint(seq=seq, hash=digest, signed_at=signed_at)
    checkpoint = Checkpoint.objects.create(
        seq=seq, hash=digest, signed_at=signed_at, public_key=public_key, signature=signature
    )
    _last_checkpoint_monotonic = time.monotonic()
    return checkpoint


def _checkpoint_if_due(seq: int, digest: str) -> Checkpoint | None:
    """At most about one checkpoint a second under load (per process without asking the database)."""
    if time.monotonic() - _last_checkpoint_monotonic < CHECKPOINT_INTERVAL.total_seconds():
        return None
    newest = Checkpoint.objects.order_by("-id").values_list("signed_at", flat=True).first()
    if newest is not None and timezone.now() - newest < CHECKPOINT_INTERVAL:
        return None
    try:
        return _sign(seq, digest)
    except ImproperlyConfigured:
        logger.exception("audit checkpoint not signed: the signing key is missing or malformed")
        return None


def _checkpoint_newest(seq: int, digest: str) -> Checkpoint:
    newest = Checkpoint.objects.order_by("-seq", "-id").first()
    if newest is not None and newest.seq == seq and newest.hash == digest:
        return newest
    return _sign(seq, digest)


# --- events inserted already sealed ----------------------------------------------------------------

# The columns of a sealed event as `insert_chained` writes them by COPY: the id and chain position
# first, then the immutable columns in their order, then the two hashes.
_SEALED_COLUMNS = (IMMUTABLE_COLUMNS[0], "seq", *IMMUTABLE_COLUMNS[1:], "prev_hash", "hash")
if sorted(_SEALED_COLUMNS) != sorted(f.attname for f in AuditEvent._meta.concrete_fields):
    raise RuntimeError("audit.sealing: the COPY columns of AuditEvent do not match its fields")
# The text columns between occurred_at and details, in COPY order.
_TEXT_COLUMNS = IMMUTABLE_COLUMNS[2:-1]


def insert_chained(events: list[dict]) -> None:
    """Insert new events (dicts of the immutable columns but the id) already sealed into the chain,
    in the caller's transaction, which must be open: what the sealer would do right after the
    commit, without reading every event back and updating it (an UPDATE writes a second row
    version and every index of the table again).

    The sealer's lock is taken and held to the commit (PostgreSQL's advisory lock; on SQLite the
    transaction's write lock, BEGIN IMMEDIATE, excludes every other sealer); a rollback gives the
    positions back. COPY on PostgreSQL, the ORM's bulk_create elsewhere; every hash is
    `audit.chain.sealed_hash`, the bytes `link_hash` and the verifier hash."""
    if not events:
        return
    if connection.get_autocommit():
        raise RuntimeError("insert_chained runs in the caller's transaction")
    _lock(wait=True)
    seq, prev = newest_sealed() or (0, GENESIS)
    ids = _new_ids(len(events))
    if connection.vendor == "postgresql":
        with connection.cursor() as wrapper:
            copy_lines(wrapper.cursor, AuditEvent, _SEALED_COLUMNS, _copy_chained(ids, events, seq, prev))
    else:
        AuditEvent.objects.bulk_create(
            [
                AuditEvent(id=event_id, seq=position, prev_hash=before, hash=digest, **event)
                for event_id, event, position, before, digest, _texts in _chained(ids, events, seq, prev)
            ],
            batch_size=BATCH_SIZE,
        )
    # Events of other writers that found the lock taken while this transaction held it.
    transaction.on_commit(seal_after_commit)


def _new_ids(count: int) -> list[int]:
    table = AuditEvent._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, count]
            )
            return sorted(row[0] for row in cursor.fetchall())
        # Under the database's write lock (held since BEGIN IMMEDIATE): no other writer can take these.
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")  # noqa: S608
        first = cursor.fetchone()[0] + 1
    return list(range(first, first + count))


def _chained(ids: list[int], events: list[dict], seq: int, prev: str):
    """(id, event, seq, prev_hash, hash, (occurred_at, details) as canonical text) of each event,
    in chain order."""
    moment = texted = None
    for event_id, event in zip(ids, events, strict=True):
        seq += 1
        if event["occurred_at"] is not moment:  # the events of one write mostly share their time
            moment, texted = event["occurred_at"], iso_utc(event["occurred_at"])
        try:
            details = canonical_details(event["details"])
            digest = sealed_hash(prev, {**event, "id": event_id, "seq": seq, "occurred_at": texted}, details)
        except NotCanonical as exc:
            raise NotCanonical(f"audit event id {event_id} cannot be sealed: {exc}") from exc
        yield event_id, event, seq, prev, digest, (texted, details)
        prev = digest


def _copy_chained(ids: list[int], events: list[dict], seq: int, prev: str):
    # A generator: COPY sends each block as it fills, so the server stores one block while the
    # next one is hashed here.
    for event_id, event, position, before, digest, (occurred_at, details) in _chained(ids, events, seq, prev):
        texts = "\t".join([copy_text(event[name]) for name in _TEXT_COLUMNS])
        yield f"{event_id}\t{position}\t{occurred_at}\t{texts}\t{copy_text(details)}\t{before}\t{digest}\n"
