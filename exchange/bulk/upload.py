"""Storing a bulk file: an upload streamed to the storage dir (or an operator's file inspected in
place), checked to be text, then registered as a submission and handed to the worker.
"""

from __future__ import annotations

import codecs
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import F, Sum
from django.utils import timezone

from audit.actions import Action
from audit.services import audit_write
from core.streams import Hashed, hash_blocks
from core.tokens import keyed_digest
from exchange.bulk.rows import SNIFF_BYTES, FileRejected, raw_columns_check, sniff_text
from exchange.bulk.worker import file_path, lease, storage_dir, submission_enqueue
from exchange.models import Submission, SubmissionFormat, SubmissionStatus
from members.models import Member

READ_BLOCK = 1 << 20  # bytes read from an upload or a file at a time
MEDIA_TYPES = {"text/csv": SubmissionFormat.CSV, "application/x-ndjson": SubmissionFormat.JSONL}
EXTENSIONS = {".csv": SubmissionFormat.CSV, ".jsonl": SubmissionFormat.JSONL, ".ndjson": SubmissionFormat.JSONL}


DIGEST_PURPOSE = "submission-file"  # the keyed digest's derived key (core.tokens)


class UploadTooLarge(Exception):
    pass


class QueueFull(Exception):
    """The member's files waiting to be processed would exceed EXCHANGE_MAX_QUEUED_BYTES."""

    def __init__(self, queued: int, limit: int):
        super().__init__(f"{queued} bytes queued; at most {limit}")
        self.queued = queued
        self.limit = limit


@dataclass
class StoredFile:
    path: Path
    sha256: str  # of the content, in memory only: stored and audited only as file_digest()
    size: int
    data_rows: int  # an upper-bound estimate: physical lines, less the CSV header


def file_digest(member: Member, stored: StoredFile) -> str:
    """The keyed digest that finds the member's earlier submission of the same file."""
    return keyed_digest(DIGEST_PURPOSE, str(member.pk), stored.sha256)


def queued_bytes(member: Member) -> int:
    """Bytes of the member's files not yet processed (queued, or the rest of one processing)."""
    unfinished = Submission.objects.filter(
        member=member, status__in=[SubmissionStatus.QUEUED, SubmissionStatus.PROCESSING]
    )
    return unfinished.aggregate(left=Sum(F("size") - F("next_offset")))["left"] or 0


def queue_check(member: Member | None, size: int) -> None:
    """Raise QueueFull if `size` more bytes would exceed the member's EXCHANGE_MAX_QUEUED_BYTES
    (0: no limit), so one member cannot fill the disk and the worker's queue for everyone.
    Without a member, whether `size` alone exceeds it (checked before an upload is read)."""
    limit = settings.EXCHANGE_MAX_QUEUED_BYTES
    if limit:
        queued = queued_bytes(member) if member is not None else 0
        if queued + size > limit:
            raise QueueFull(queued, limit)


def _estimate_rows(fmt: str, newlines: int, size: int, last: bytes) -> int:
    lines = newlines + (1 if size and last != b"\n" else 0)
    return max(0, lines - (1 if fmt == SubmissionFormat.CSV else 0))


def upload_store(read: Callable[[int], bytes], *, fmt: str, limit: int) -> StoredFile:
    """Stream a body into a new file under the storage dir, hashing and counting lines on the way.

    Raises UploadTooLarge past `limit` bytes and FileRejected for an empty or non-text body; the
    partial file is deleted in every case of failure.
    """
    directory = storage_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".upload-{uuid.uuid4().hex}.part"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            hashed = hash_blocks(
                read,
                block_size=READ_BLOCK,
                limit=limit,
                too_large=UploadTooLarge,
                head_bytes=SNIFF_BYTES,
                sink=out.write,
            )
        head, size = hashed.head, hashed.size
        _check_head(head, size)
        if fmt == SubmissionFormat.CSV:
            raw_columns_check(path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return _stored(path, hashed, fmt)


def file_inspect(path: Path, *, fmt: str) -> StoredFile:
    """Hash and count an operator's file in place (import_records), checking it is text as an
    upload is (FileRejected: empty, NUL bytes, not UTF-8)."""
    with open(path, "rb") as source:
        hashed = hash_blocks(source.read, block_size=READ_BLOCK, head_bytes=SNIFF_BYTES)
    _check_head(hashed.head, hashed.size)
    if fmt == SubmissionFormat.CSV:
        raw_columns_check(path)
    return _stored(path, hashed, fmt)


def _stored(path: Path, hashed: Hashed, fmt: str) -> StoredFile:
    return StoredFile(path, hashed.sha256, hashed.size, _estimate_rows(fmt, hashed.newlines, hashed.size, hashed.last))


def _check_head(head: bytes, size: int) -> None:
    if size == 0:
        raise FileRejected("The body is empty: send a CSV file with a header row, or JSON Lines.")
    problem = sniff_text(head, complete=size <= len(head))
    if problem:
        raise FileRejected(problem)


def format_for_path(path: Path) -> str:
    """The format of an operator's file: by extension, else by its first non-blank character."""
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt:
        return fmt
    with open(path, "rb") as source:
        head = source.read(4096).lstrip(codecs.BOM_UTF8 + b" \t\r\n")
    return SubmissionFormat.JSONL if head.startswith(b"{") else SubmissionFormat.CSV


# --- creating a submission ------------------------------------------------------------------------


def submission_create(
    *,
    member: Member,
    actor: str,
    fmt: str,
    stored: StoredFile,
    owned: bool = True,
    enqueue: bool = True,
    limit_queue: bool = True,
) -> tuple[Submission, bool]:
    """Register a stored file as a submission, or return the member's earlier submission of the
    same file (same keyed digest): resubmitting is safe, its rows are never stored twice.

    An owned upload is renamed to `<id>.<format>` in the storage dir; a duplicate's copy is deleted.
    Returns (submission, created). Audited as `submission.create`. Raises QueueFull (nothing
    registered, the copy deleted) past the member's EXCHANGE_MAX_QUEUED_BYTES, unless
    `limit_queue` is False (import_records: the operator's file is processed at once, not queued).
    """
    digest = file_digest(member, stored)
    submission_id = uuid.uuid4()
    now = timezone.now()
    if owned:
        final = stored.path.with_name(f"{submission_id}.{fmt}")
        os.replace(stored.path, final)
        file_name = final.name
    else:
        final = None
        file_name = str(stored.path.resolve())
    try:
        with transaction.atomic():
            # The member's row is the lock that makes the queued-bytes check hold under
            # concurrent uploads.
            Member.objects.select_for_update().filter(pk=member.pk).first()
            existing = Submission.objects.select_for_update().filter(member=member, file_digest=digest).first()
            created = existing is None
            requeued = False
            if limit_queue and (created or existing.status == SubmissionStatus.FAILED):
                queue_check(member, stored.size)
            if created:
                submission = Submission.objects.create(
                    id=submission_id,
                    member=member,
                    actor=actor[:120],
                    format=fmt,
                    file_digest=digest,
                    size=stored.size,
                    file_name=file_name,
                    file_owned=owned,
                    total=stored.data_rows,
                    created_at=now,
                    # No worker has it yet: the recovery sweep re-enqueues it if none claims it by then.
                    lease_expires_at=now + lease(),
                )
            else:
                submission = existing
                if submission.status == SubmissionStatus.FAILED:
                    # Failed as a whole (e.g. its file was lost): the same file may be tried again,
                    # resuming from what was stored (a failure never leaves a row half-stored).
                    _requeue_failed(submission, file_name=file_name, owned=owned, now=now)
                    requeued = True
                    final = None  # the new copy is the submission's file now
            audit_write(
                action=Action.SUBMISSION_CREATE,
                actor=actor,
                member_code=member.code,
                object_type="submission",
                object_id=submission.pk,
                details={"format": fmt, "size": stored.size, "duplicate": not created},
            )
            if enqueue and (created or requeued):
                transaction.on_commit(lambda: submission_enqueue(submission.pk))
    except BaseException:
        if final is not None:
            final.unlink(missing_ok=True)
        raise
    if not created and final is not None:
        final.unlink(missing_ok=True)
    return submission, created


def _requeue_failed(submission: Submission, *, file_name: str, owned: bool, now: datetime) -> None:
    old, old_owned = file_path(submission), submission.file_owned
    submission.status = SubmissionStatus.QUEUED
    submission.error = ""
    submission.error_code = ""
    submission.attempts = 0
    submission.finished_at = None
    submission.file_name = file_name
    submission.file_owned = owned
    submission.lease_owner = ""
    submission.lease_expires_at = now + lease()
    submission.save(
        update_fields=[
            "status",
            "error",
            "error_code",
            "attempts",
            "finished_at",
            "file_name",
            "file_owned",
            "lease_owner",
            "lease_expires_at",
        ]
    )
    # Only a file the exchange stored itself is deleted, never an operator's own (import_records).
    if old != file_path(submission) and old_owned:
        transaction.on_commit(lambda: old.unlink(missing_ok=True))
