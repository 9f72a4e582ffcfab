"""Verifying the whole audit chain and its signed checkpoints, streaming in `seq` order.

The first problem found is returned, naming the event (seq and id) and what is wrong; memory
stays flat whatever the table's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from audit.chain import GENESIS, ROW_COLUMNS, NotCanonical, link_hash, row_fields
from audit.models import AuditEvent, Checkpoint
from audit.sealing import newest_sealed
from audit.signing import checkpoint_signature_valid, public_key_b64

CHUNK_SIZE = 2000


class Kind:
    HASH = "hash_mismatch"
    PREV_HASH = "prev_hash_mismatch"
    GAP = "seq_gap"
    DUPLICATE = "seq_duplicate"
    SIGNATURE = "checkpoint_signature_invalid"
    UNTRUSTED = "checkpoint_key_untrusted"
    CHECKPOINT = "checkpoint_mismatch"
    TAIL = "tail_cut_off"
    NO_CHECKPOINT = "no_checkpoint"


@dataclass
class Problem:
    kind: str
    message: str
    seq: int | None = None
    event_id: int | None = None


@dataclass
class Report:
    events: int = 0
    unsealed: int = 0
    checkpoints: int = 0
    last_seq: int = 0
    last_hash: str = GENESIS
    newest_checkpoint_seq: int | None = None
    problem: Problem | None = None
    trusted_keys: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def unsigned_tail(self) -> int:
        """Sealed events newer than the newest checkpoint (signed at the next checkpoint)."""
        return self.last_seq - (self.newest_checkpoint_seq or 0)

    def summary(self) -> str:
        if self.problem is not None:
            return f"FAIL {self.problem.message}"
        text = f"OK {self.events} events"
        notes = []
        if self.checkpoints:
            notes.append(f"{self.checkpoints} checkpoints, newest at seq {self.newest_checkpoint_seq}")
        if self.unsigned_tail:
            notes.append(f"{self.unsigned_tail} events after the newest checkpoint")
        if self.unsealed:
            notes.append(f"{self.unsealed} events not sealed yet (run seal_audit)")
        return text + (f" ({'; '.join(notes)})" if notes else "")


def _event_name(seq: int | None, event_id: int | None) -> str:
    return f"seq {seq} (id {event_id})"


def verify_chain(
    *,
    public_keys: Iterable[str] | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Recompute every link and check every checkpoint. `public_keys` are the trusted keys; by
    default the key of the configured signing key (pass retired keys to check old checkpoints)."""
    trusted = set(public_keys) if public_keys else {public_key_b64()}
    report = Report(trusted_keys=sorted(trusted))

    # Bounds taken in this order make one consistent picture without holding a transaction (a
    # long read on SQLite would block every writer): a checkpoint that existed before we looked
    # at the newest seq can only name an event at or below it, unless the tail was cut off.
    newest_checkpoint_id = Checkpoint.objects.order_by("-id").values_list("id", flat=True).first() or 0
    max_seq = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", flat=True).first() or 0
    report.unsealed = AuditEvent.objects.filter(seq__isnull=True).count()

    checkpoints = (
        Checkpoint.objects.filter(id__lte=newest_checkpoint_id).order_by("seq", "id").iterator(chunk_size=chunk_size)
    )
    checkpoint = next(checkpoints, None)
    events = AuditEvent.objects.filter(seq__isnull=False, seq__lte=max_seq).order_by("seq", "id").values(*ROW_COLUMNS)

    expected, prev = 1, GENESIS
    for event in events.iterator(chunk_size=chunk_size):
        problem = _check_event(event, expected, prev)
        if problem is None:
            while checkpoint is not None and checkpoint.seq <= event["seq"]:
                problem = _check_checkpoint(checkpoint, event, trusted)
                if problem is not None:
                    break
                report.checkpoints += 1
                report.newest_checkpoint_seq = checkpoint.seq
                checkpoint = next(checkpoints, None)
        if problem is not None:
            report.problem = problem
            return report
        prev, expected = event["hash"], expected + 1
        report.events += 1
        report.last_seq, report.last_hash = event["seq"], event["hash"]
        if progress is not None:
            progress(1)

    if checkpoint is not None:
        report.problem = Problem(
            Kind.TAIL,
            f"seq {expected}: missing: the checkpoint at seq {checkpoint.seq} is beyond the last event "
            f"(seq {report.last_seq}): the newest events were cut off",
            seq=expected,
        )
    elif report.events and not report.checkpoints:
        report.problem = Problem(
            Kind.NO_CHECKPOINT,
            f"{_event_name(1, None)}: the chain of {report.events} events has no signed checkpoint: "
            "it cannot be told apart from a rebuilt one (run seal_audit to sign one)",
            seq=1,
        )
    return report


def _check_event(event: dict, expected: int, prev: str) -> Problem | None:
    seq, event_id = event["seq"], event["id"]
    name = _event_name(seq, event_id)
    if seq > expected:
        return Problem(
            Kind.GAP,
            f"seq {expected}: missing: the next event is {name}: events were deleted or the chain reordered",
            seq=expected,
            event_id=event_id,
        )
    if seq < expected:
        return Problem(
            Kind.DUPLICATE, f"{name}: seq {seq} appears twice: an event was inserted", seq=seq, event_id=event_id
        )
    if event["prev_hash"] != prev:
        return Problem(
            Kind.PREV_HASH,
            f"{name}: prev_hash mismatch: it does not link to seq {expected - 1}: "
            "an event was deleted, inserted or reordered",
            seq=seq,
            event_id=event_id,
        )
    try:
        digest = link_hash(prev, row_fields(event))
    except NotCanonical as exc:
        digest = f"(not canonical: {exc})"
    if digest != event["hash"]:
        return Problem(Kind.HASH, f"{name}: hash mismatch: the event's content was changed", seq=seq, event_id=event_id)
    return None


def _check_checkpoint(checkpoint: Checkpoint, event: dict, trusted: set[str]) -> Problem | None:
    label = f"checkpoint {checkpoint.id} at seq {checkpoint.seq}"
    if checkpoint.seq < event["seq"]:  # only a position below 1 can be skipped past
        return Problem(Kind.CHECKPOINT, f"{label} names no event", seq=checkpoint.seq, event_id=None)
    name = _event_name(event["seq"], event["id"])
    if checkpoint.public_key not in trusted:
        return Problem(
            Kind.UNTRUSTED,
            f"{name}: {label}: checkpoint signature invalid: signed by an untrusted key {checkpoint.public_key}",
            seq=event["seq"],
            event_id=event["id"],
        )
    if not checkpoint_signature_valid(
        public_key=checkpoint.public_key,
        seq=checkpoint.seq,
        hash=checkpoint.hash,
        signed_at=checkpoint.signed_at,
        signature=checkpoint.signature,
    ):
        return Problem(
            Kind.SIGNATURE,
            f"{name}: {label}: checkpoint signature invalid",
            seq=event["seq"],
            event_id=event["id"],
        )
    if checkpoint.hash != event["hash"]:
        return Problem(
            Kind.CHECKPOINT,
            f"{name}: {label} signed a different hash: the history up to here is not the one that was signed",
            seq=event["seq"],
            event_id=event["id"],
        )
    return None


@dataclass
class Status:
    """A cheap look at the chain's head for dashboards; `verify_chain` is the full check."""

    last_seq: int
    last_hash: str | None
    unsealed: int
    checkpoint: Checkpoint | None
    checkpoint_valid: bool | None  # signature by the configured key and hash of the event at its seq
    events_after_checkpoint: int


def chain_status() -> Status:
    last_seq, last_hash = newest_sealed() or (0, None)
    checkpoint = Checkpoint.objects.order_by("-seq", "-id").first()
    valid = None
    if checkpoint is not None:
        at = AuditEvent.objects.filter(seq=checkpoint.seq).values_list("hash", flat=True).first()
        valid = (
            checkpoint.public_key == public_key_b64()
            and at == checkpoint.hash
            and checkpoint_signature_valid(
                public_key=checkpoint.public_key,
                seq=checkpoint.seq,
                hash=checkpoint.hash,
                signed_at=checkpoint.signed_at,
                signature=checkpoint.signature,
            )
        )
    return Status(
        last_seq=last_seq,
        last_hash=last_hash,
        unsealed=AuditEvent.objects.filter(seq__isnull=True).count(),
        checkpoint=checkpoint,
        checkpoint_valid=valid,
        events_after_checkpoint=last_seq - (checkpoint.seq if checkpoint else 0),
    )
