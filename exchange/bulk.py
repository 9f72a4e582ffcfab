"""Bulk files of records (CSV or JSON Lines): stored as uploaded, then processed in chunks.

Every row goes through `exchange.validation.parse_record`, the JSON API's one validation path.
The valid rows of a chunk, their versions, their audit events, the chunk's row errors and the
submission's progress (byte offset, counts) are written in one transaction: a killed worker
resumes at the last committed offset and never stores a row twice. On PostgreSQL the rows go in
with COPY (ids and ciphertexts computed here, bound to their row as core.crypto does); on other
databases with the ORM's bulk_create.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import IntegrityError, connection, models, transaction
from django.db.models import F, Q
from django.utils import timezone

from audit import sealing
from audit.chain import GENESIS, iso_utc, link_hash
from audit.models import AuditEvent, Outcome
from audit.services import audit_bulk_write, audit_write
from audit.triggers import IMMUTABLE_COLUMNS
from core.context import current_request_id
from core.crypto import encrypt, field_aad
from exchange.models import (
    Record,
    RecordVersion,
    Submission,
    SubmissionError,
    SubmissionFormat,
    SubmissionStatus,
)
from exchange.services import reference_index
from exchange.validation import RECORD_FIELDS, SUBJECT_FIELDS, ParsedRecord, RecordErrors, latest_today, parse_record
from members.models import Member

logger = logging.getLogger(__name__)

READ_BLOCK = 1 << 20  # bytes read from an upload or a file at a time
MAX_LINE_BYTES = 1 << 20  # a longer physical line is reported, never held whole
SNIFF_BYTES = 1 << 16  # the head of a file checked for being UTF-8 text
MAX_ATTEMPTS = 5  # claims of one submission before it is failed (a crash loop, not bad rows)
LOOKUP_BATCH = 900  # parameters per IN (...) lookup, under SQLite's limit
_UTF8_BOM = codecs.BOM_UTF8

# A CSV row is a record with its subject flattened into four columns.
CSV_COLUMNS = (RECORD_FIELDS - {"subject"}) | SUBJECT_FIELDS
CSV_REQUIRED = (
    "member_reference",
    "id_type",
    "id_number",
    "product",
    "principal",
    "amount_overdue",
    "days_past_due",
    "status",
    "opened_on",
    "delinquent_since",
    "as_of",
    "notice_sent_on",
)
MEDIA_TYPES = {"text/csv": SubmissionFormat.CSV, "application/x-ndjson": SubmissionFormat.JSONL}
EXTENSIONS = {".csv": SubmissionFormat.CSV, ".jsonl": SubmissionFormat.JSONL, ".ndjson": SubmissionFormat.JSONL}


class FileRejected(Exception):
    """The whole file cannot be processed (not text, no or a wrong header). The message is shown
    to the member: it never quotes the file's content."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UploadTooLarge(Exception):
    pass


class LeaseLost(Exception):
    """Another worker took the submission over (this one's lease had lapsed): stop, store nothing."""


# --- storing an upload ---------------------------------------------------------------------------


def storage_dir() -> Path:
    return Path(settings.EXCHANGE_SUBMISSIONS_DIR)


def sniff_text(head: bytes, *, complete: bool) -> str | None:
    """Why `head` (the first bytes of a file) is not UTF-8 text, or None when it is."""
    if b"\x00" in head:
        return "The file is not text (it holds NUL bytes): send CSV or JSON Lines encoded in UTF-8."
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the head is fine.
        if complete or exc.start < len(head) - 3:
            return "The file is not UTF-8 text: send CSV or JSON Lines encoded in UTF-8."
    return None


@dataclass
class StoredFile:
    path: Path
    sha256: str
    size: int
    data_rows: int  # an upper-bound estimate: physical lines, less the CSV header


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
    digest = hashlib.sha256()
    size = newlines = 0
    head = b""
    last = b""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            while True:
                block = read(READ_BLOCK)
                if not block:
                    break
                size += len(block)
                if size > limit:
                    raise UploadTooLarge()
                if len(head) < SNIFF_BYTES:
                    head += block[: SNIFF_BYTES - len(head)]
                digest.update(block)
                newlines += block.count(b"\n")
                last = block[-1:]
                out.write(block)
        _check_head(head, size)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return StoredFile(path, digest.hexdigest(), size, _estimate_rows(fmt, newlines, size, last))


def file_inspect(path: Path, *, fmt: str) -> StoredFile:
    """Hash and count an operator's file in place (import_records), checking it is text."""
    digest = hashlib.sha256()
    size = newlines = 0
    head = last = b""
    with open(path, "rb") as source:
        while block := source.read(READ_BLOCK):
            if len(head) < SNIFF_BYTES:
                head += block[: SNIFF_BYTES - len(head)]
            size += len(block)
            digest.update(block)
            newlines += block.count(b"\n")
            last = block[-1:]
    return StoredFile(path, digest.hexdigest(), size, _estimate_rows(fmt, newlines, size, last))


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
        head = source.read(4096).lstrip(_UTF8_BOM + b" \t\r\n")
    return SubmissionFormat.JSONL if head.startswith(b"{") else SubmissionFormat.CSV


# --- creating a submission ------------------------------------------------------------------------


def submission_create(
    *, member: Member, actor: str, fmt: str, stored: StoredFile, owned: bool = True, enqueue: bool = True
) -> tuple[Submission, bool]:
    """Register a stored file as a submission, or return the member's earlier submission of the
    same file (same SHA-256): resubmitting is safe, its rows are never stored twice.

    An owned upload is renamed to `<id>.<format>` in the storage dir; a duplicate's copy is deleted.
    Returns (submission, created). Audited as `submission.create`.
    """
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
            existing = Submission.objects.select_for_update().filter(member=member, sha256=stored.sha256).first()
            created = existing is None
            requeued = False
            if created:
                submission = Submission.objects.create(
                    id=submission_id,
                    member=member,
                    actor=actor[:120],
                    format=fmt,
                    sha256=stored.sha256,
                    size=stored.size,
                    file_name=file_name,
                    file_owned=owned,
                    total=stored.data_rows,
                    created_at=now,
                    # No worker has it yet: the recovery sweep re-enqueues it if none claims it by then.
                    lease_expires_at=now + _lease(),
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
                action="submission.create",
                actor=actor,
                member_code=member.code,
                object_type="submission",
                object_id=submission.pk,
                details={"format": fmt, "size": stored.size, "sha256": stored.sha256, "duplicate": not created},
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
    old = _file_path(submission)
    submission.status = SubmissionStatus.QUEUED
    submission.error = ""
    submission.attempts = 0
    submission.finished_at = None
    submission.file_name = file_name
    submission.file_owned = owned
    submission.lease_owner = ""
    submission.lease_expires_at = now + _lease()
    submission.save(
        update_fields=[
            "status",
            "error",
            "attempts",
            "finished_at",
            "file_name",
            "file_owned",
            "lease_owner",
            "lease_expires_at",
        ]
    )
    if old != _file_path(submission) and submission.file_owned:
        transaction.on_commit(lambda: old.unlink(missing_ok=True))


def submission_enqueue(submission_id: Any) -> None:
    """Hand the submission to the task backend (after commit). A failure is only logged: the
    worker's recovery sweep enqueues any submission that no worker claimed in time."""
    from exchange.tasks import process_submission

    try:
        process_submission.enqueue(str(submission_id))
    except Exception:
        logger.exception("could not enqueue submission %s; the recovery sweep will", submission_id)


# --- reading rows --------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    line: int  # physical line where the row starts, 1-based
    raw: Any
    error: tuple[str, str] | None = None


class _Lines:
    """Decoded physical lines of a binary file from a byte offset, with the byte offset and the
    line count after each. A line that is too long or not UTF-8 is replaced by an empty line and
    named in `bad`, so the row it belongs to is reported instead of parsed."""

    __slots__ = ("bad", "file", "line", "pos")

    def __init__(self, file: IO[bytes], offset: int, line: int):
        file.seek(offset)
        self.file = file
        self.pos = offset
        self.line = line
        self.bad = ""

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self.file.readline(MAX_LINE_BYTES)
        if not raw:
            raise StopIteration
        start = self.pos
        self.pos += len(raw)
        self.line += 1
        if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while True:  # skip the rest of the line without holding it
                more = self.file.readline(MAX_LINE_BYTES)
                self.pos += len(more)
                if not more or more.endswith(b"\n"):
                    break
            self.bad = f"is longer than {MAX_LINE_BYTES // (1 << 20)} MiB"
            return "\n"
        if start == 0 and raw.startswith(_UTF8_BOM):
            raw = raw[len(_UTF8_BOM) :]
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad = "is not valid UTF-8 text"
            return "\n"


def _csv_header(lines: _Lines) -> list[str]:
    reader = csv.reader(lines, strict=True)
    try:
        cells = next(reader)
        while not any(cell.strip() for cell in cells):
            cells = next(reader)
    except StopIteration:
        raise FileRejected("The file has no header row: a CSV file starts with a row naming its columns.") from None
    except csv.Error:
        raise FileRejected("The header row is not valid CSV.") from None
    if lines.bad:
        raise FileRejected(f"The header row {lines.bad}.")
    columns = [cell.strip().lower() for cell in cells]
    for number, column in enumerate(columns, start=1):
        # Never quote the cell: a file without a header has a borrower's data in its first row.
        if column not in CSV_COLUMNS:
            raise FileRejected(
                f"Column {number} of the header row is not a record field; the header names the columns "
                f"({', '.join(sorted(CSV_COLUMNS))})."
            )
        if column in columns[: number - 1]:
            raise FileRejected(f"Column {number} of the header row repeats an earlier column.")
    missing = [column for column in CSV_REQUIRED if column not in columns]
    if missing:
        raise FileRejected(f"The header row lacks required columns: {', '.join(missing)}.")
    return columns


def _csv_rows(lines: _Lines, columns: list[str]) -> Iterator[Row]:
    reader = csv.reader(lines, strict=True)
    width = len(columns)
    while True:
        start = lines.line + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            # The csv module's messages name only the delimiter and quote characters.
            lines.bad = ""
            yield Row(start, None, ("", f"is not valid CSV ({exc})"))
            continue
        if lines.bad:
            yield Row(start, None, ("", lines.bad))
            lines.bad = ""
            continue
        if not cells or (len(cells) == 1 and width > 1 and not cells[0].strip()):
            continue  # a blank line
        if len(cells) != width:
            yield Row(start, None, ("", f"has {len(cells)} columns; the header row has {width}"))
            continue
        raw: dict[str, Any] = {}
        subject: dict[str, str] = {}
        for column, cell in zip(columns, cells, strict=True):
            cell = cell.strip()
            if cell:  # an empty cell means the field is absent
                (subject if column in SUBJECT_FIELDS else raw)[column] = cell
        raw["subject"] = subject
        yield Row(start, raw)


def _jsonl_rows(lines: _Lines) -> Iterator[Row]:
    for text in lines:
        number = lines.line
        if lines.bad:
            yield Row(number, None, ("", lines.bad))
            lines.bad = ""
            continue
        if not text.strip():
            continue
        try:
            raw = json.loads(text)
        except ValueError as exc:
            column = getattr(exc, "colno", None)
            yield Row(number, None, ("", f"is not valid JSON (column {column})" if column else "is not valid JSON"))
            continue
        except RecursionError:
            yield Row(number, None, ("", "is not valid JSON (nested too deeply)"))
            continue
        yield Row(number, raw)


def open_rows(file: IO[bytes], fmt: str, *, offset: int, line: int) -> tuple[_Lines, Iterator[Row]]:
    """The rows of a file from a byte offset (a resumed CSV re-reads its header first)."""
    file.seek(0)
    head = file.read(SNIFF_BYTES)
    size = file.seek(0, os.SEEK_END)
    problem = sniff_text(head, complete=size <= len(head))
    if problem:
        raise FileRejected(problem)
    if fmt == SubmissionFormat.JSONL:
        lines = _Lines(file, offset, line)
        return lines, _jsonl_rows(lines)
    if offset == 0:
        lines = _Lines(file, 0, 0)
        columns = _csv_header(lines)
    else:
        columns = _csv_header(_Lines(file, 0, 0))
        lines = _Lines(file, offset, line)
    return lines, _csv_rows(lines, columns)


# --- storing a chunk -----------------------------------------------------------------------------

_RECORD_UPDATE_FIELDS = (*Record.DATA_FIELDS, "name", "version", "withdrawn_at", "withdraw_reason", "updated_at")


@dataclass(slots=True)
class _Planned:
    record: ParsedRecord
    record_id: uuid.UUID
    index: str
    version: int
    created: bool


def _existing(member: Member, indexes: list[str]) -> dict[str, tuple[uuid.UUID, int]]:
    """(id, version) of the member's records with these reference indexes, locked for update."""
    found: dict[str, tuple[uuid.UUID, int]] = {}
    unique = sorted(set(indexes))
    for start in range(0, len(unique), LOOKUP_BATCH):
        rows = (
            Record.objects.select_for_update()
            .filter(member=member, reference_index__in=unique[start : start + LOOKUP_BATCH])
            .values_list("reference_index", "id", "version")
        )
        for index, record_id, version in rows:
            found[index] = (record_id, version)
    return found


def records_bulk_store(
    *,
    member: Member,
    actor: str,
    records: list[ParsedRecord] | None = None,
    submission_id: uuid.UUID | None = None,
    prepared: list[tuple] | None = None,
) -> int:
    """Store validated records as new records or new versions (a reference seen earlier, in the
    database or in this list, gets the next version), with one `record.submit` audit event per
    version. Same outcome as services.records_store, written set-wise; runs in the caller's
    transaction. Returns the number of versions stored.

    `prepared` (from `prepare_rows`, possibly made in another process) may replace `records` for
    the COPY writer; the other writers need `records`."""
    writer = _writer()
    if writer == "copy":
        if prepared is None:
            prepared = prepare_rows(member, records or [])
        if not prepared:
            return 0
        _copy_store(member, actor, submission_id, timezone.now(), prepared)
        return len(prepared)
    if not records:
        return 0
    now = timezone.now()
    indexes = [reference_index(member, r.member_reference) for r in records]
    state = _existing(member, indexes)
    existed = set(state)
    planned: list[_Planned] = []
    for record, index in zip(records, indexes, strict=True):
        current = state.get(index)
        if current is None:
            record_id, version = uuid.uuid4(), 1
        else:
            record_id, version = current[0], current[1] + 1
        state[index] = (record_id, version)
        planned.append(_Planned(record, record_id, index, version, created=version == 1 and index not in existed))
    # The current state of each record is its last version in this list.
    final: dict[uuid.UUID, _Planned] = {p.record_id: p for p in planned}
    new = [p for p in final.values() if p.index not in existed]
    changed = [p for p in final.values() if p.index in existed]
    _store_rows(writer, member, submission_id, now, new, changed, planned)
    audit_bulk_write(
        [
            AuditEvent(
                action="record.submit",
                actor=actor,
                member_code=member.code,
                object_type="record",
                object_id=str(p.record_id),
                subject_token=p.record.subject_token,
                details={"version": p.version, "created": p.created, "submission": str(submission_id or "")},
            )
            for p in planned
        ]
    )
    return len(planned)


def _data(record: ParsedRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in Record.DATA_FIELDS}


def _writer() -> str:
    """How chunks are written: COPY on PostgreSQL, executemany elsewhere. EXCHANGE_BULK_WRITER
    (copy, executemany, orm) overrides it, for the benchmark's comparison (bench/ingest.py)."""
    chosen = os.environ.get("EXCHANGE_BULK_WRITER", "")
    if chosen in ("executemany", "orm") or (chosen == "copy" and connection.vendor == "postgresql"):
        return chosen
    return "copy" if connection.vendor == "postgresql" else "executemany"


def _store_rows(writer, member, submission_id, now, new, changed, planned) -> None:
    if writer == "orm":
        _orm_write(member, submission_id, now, new, changed, planned)
        return
    # Ids and ciphertexts are made here, each value bound to its table, column and row exactly as
    # EncryptedTextField.pre_save binds it, so the ORM reads these rows like any other.
    record_fields = list(Record._meta.concrete_fields)
    version_fields = list(RecordVersion._meta.concrete_fields)
    record_name = Record._meta.get_field("name")
    record_reference = Record._meta.get_field("member_reference")
    version_name = RecordVersion._meta.get_field("name")

    def seal(model, field, pk, value):
        return None if value is None else encrypt(value, aad=field_aad(model, field, pk))

    def record_row(p: _Planned) -> tuple:
        values = {
            "id": p.record_id,
            "member_id": member.pk,
            "reference_index": p.index,
            "member_reference": seal(Record, record_reference, p.record_id, p.record.member_reference),
            "name": seal(Record, record_name, p.record_id, p.record.name),
            "version": p.version,
            "withdrawn_at": None,
            "withdraw_reason": None,
            "created_at": now,
            "updated_at": now,
            **_data(p.record),
        }
        return tuple(values[f.attname] if f.attname in values else f.get_default() for f in record_fields)

    def version_row(p: _Planned) -> tuple:
        version_id = uuid.uuid4()
        values = {
            "id": version_id,
            "record_id": p.record_id,
            "member_id": member.pk,
            "version": p.version,
            "submission_id": submission_id,
            "name": seal(RecordVersion, version_name, version_id, p.record.name),
            "created_at": now,
            **_data(p.record),
        }
        return tuple(values[f.attname] if f.attname in values else f.get_default() for f in version_fields)

    update_names = [Record._meta.get_field(name).column for name in _RECORD_UPDATE_FIELDS]
    with connection.cursor() as cursor:
        _executemany_write(
            cursor, record_fields, version_fields, update_names, new, changed, planned, record_row, version_row
        )


# --- the COPY writer (PostgreSQL) ----------------------------------------------------------------
#
# The rows of a chunk are formatted here as COPY text, without a per-value adapter: the costly
# per-row work (reference index, ids, three AES-GCM encryptions, the text of the data fields) is
# done by `prepare_rows` ahead of the chunk's transaction, possibly in the reader process; the
# transaction then only looks the references up, numbers the versions and sends the text. Every
# value formatted here is validated (enumerations, ISO dates, integers, hex) or made here (ids,
# ciphertexts as bytea hex); text that is not is escaped with _copy_text.

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"
# Columns of the COPY text, in the order prepare_rows and _copy_store write them.
_RECORD_COPY_COLUMNS = (
    *Record.DATA_FIELDS,
    "name",
    "id",
    "member_id",
    "reference_index",
    "member_reference",
    "version",
    "withdrawn_at",
    "withdraw_reason",
    "created_at",
    "updated_at",
)
_VERSION_COPY_COLUMNS = (
    *Record.DATA_FIELDS,
    "name",
    "id",
    "record_id",
    "member_id",
    "version",
    "submission_id",
    "created_at",
)
for _model, _columns in ((Record, _RECORD_COPY_COLUMNS), (RecordVersion, _VERSION_COPY_COLUMNS)):
    # A field added to the model must be added here too (rather than silently left NULL).
    if sorted(_columns) != sorted(f.attname for f in _model._meta.concrete_fields):
        raise RuntimeError(f"exchange.bulk: the COPY columns of {_model.__name__} do not match its fields")


def _copy_text(value: str) -> str:
    return value.translate(_COPY_ESCAPES)


def _aad_prefix(model: type[models.Model], name: str) -> str:
    # field_aad(model, field, pk) for a UUID pk, the prefix computed once: "<table>|<column>|".
    return f"{model._meta.db_table}|{model._meta.get_field(name).column}|"


def _sealed(value: str | None, aad_prefix: str, pk: str) -> str:
    """COPY text of `value` encrypted for its row (bytea hex), as EncryptedTextField.pre_save would."""
    if value is None:
        return _NULL
    return "\\\\x" + encrypt(value, aad=(aad_prefix + pk).encode()).hex()


def prepare_rows(member: Member, records: list[ParsedRecord]) -> list[tuple]:
    """Per record, everything of its COPY rows that does not depend on the database, as if its
    reference were new: (reference index, record id, version id, data fields as COPY text, sealed
    member_reference, sealed record name, sealed version name, subject token, member_reference,
    name). Picklable, so a reader process can make it; plaintext stays in memory only."""
    reference_aad = _aad_prefix(Record, "member_reference")
    name_aad = _aad_prefix(Record, "name")
    version_name_aad = _aad_prefix(RecordVersion, "name")
    text = _copy_text
    rows = []
    for r in records:
        record_id, version_id = str(uuid.uuid4()), str(uuid.uuid4())
        settled_on = r.settled_on.isoformat() if r.settled_on is not None else _NULL
        data = (
            f"{text(r.subject_token)}\t{text(r.id_type)}\t{text(r.product)}\t{text(r.currency)}\t"
            f"{int(r.principal)}\t{int(r.amount_overdue)}\t{int(r.days_past_due)}\t{text(r.status)}\t"
            f"{r.opened_on.isoformat()}\t{r.delinquent_since.isoformat()}\t{r.as_of.isoformat()}\t"
            f"{r.notice_sent_on.isoformat()}\t{settled_on}\t{text(r.payment_history)}"
        )
        rows.append(
            (
                reference_index(member, r.member_reference),
                record_id,
                version_id,
                data,
                _sealed(r.member_reference, reference_aad, record_id),
                _sealed(r.name, name_aad, record_id),
                _sealed(r.name, version_name_aad, version_id),
                r.subject_token,
                r.member_reference,
                r.name,
            )
        )
    return rows


def _copy_store(member: Member, actor: str, submission_id, now: datetime, prepared: list[tuple]) -> None:
    """One chunk by COPY: new records, changed records (through a staging table and one UPDATE),
    every version, and the `record.submit` audit events."""
    quote = connection.ops.quote_name
    table = quote(Record._meta.db_table)
    with connection.cursor() as wrapper:
        # The member's records with these references, locked: one statement, the references as one array.
        wrapper.execute(
            f"SELECT reference_index, id, version FROM {table} WHERE member_id = %s AND reference_index = ANY(%s) "  # noqa: S608
            "ORDER BY reference_index FOR UPDATE",
            [member.pk, sorted({p[0] for p in prepared})],
        )
        state: dict[str, tuple[str, int]] = {index: (str(record_id), version) for index, record_id, version in wrapper}
    existed = set(state)
    reference_aad = _aad_prefix(Record, "member_reference")
    name_aad = _aad_prefix(Record, "name")
    now_text = now.isoformat()
    member_text = str(member.pk)
    submission = str(submission_id) if submission_id else ""
    submission_text = submission or _NULL
    event_base = {
        "occurred_at": iso_utc(now),
        "actor": actor[:120],
        "member_code": member.code,
        "action": "record.submit",
        "object_type": "record",
        "outcome": Outcome.OK.value,
        "request_id": current_request_id(),
    }
    final: dict[str, tuple] = {}  # record id -> (prepared row, version) of its last version here
    versions: list[str] = []
    events: list[tuple[str, str, int, bool]] = []  # (record id, subject token, version, created)
    for p in prepared:
        index, own_id, version_id, data, _ref, _name, version_name, token = p[:8]
        current = state.get(index)
        if current is None:
            record_id, version = own_id, 1
        else:
            record_id, version = current[0], current[1] + 1
        state[index] = (record_id, version)
        created = version == 1 and index not in existed
        final[record_id] = (p, version)
        versions.append(
            f"{data}\t{version_name}\t{version_id}\t{record_id}\t{member_text}\t{version}\t{submission_text}\t{now_text}\n"
        )
        events.append((record_id, token, version, created))
    new: list[str] = []
    changed: list[str] = []
    for record_id, (p, version) in final.items():
        index, own_id, _vid, data, reference, name = p[:6]
        if record_id != own_id:  # stored under another row's id: seal for that row instead
            reference = _sealed(p[8], reference_aad, record_id)
            name = _sealed(p[9], name_aad, record_id)
        line = (
            f"{data}\t{name}\t{record_id}\t{member_text}\t{index}\t{reference}\t{version}\t"
            f"{_NULL}\t{_NULL}\t{now_text}\t{now_text}\n"
        )
        (changed if index in existed else new).append(line)

    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        if new:
            _copy_lines(cursor, Record, _RECORD_COPY_COLUMNS, new)
        if changed:
            stage = "exchange_bulk_record_stage"
            cursor.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            _copy_lines(cursor, Record, _RECORD_COPY_COLUMNS, changed, table=stage)
            columns = [Record._meta.get_field(name).column for name in _RECORD_UPDATE_FIELDS]
            updates = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in columns)
            cursor.execute(f"UPDATE {table} AS r SET {updates} FROM {stage} AS s WHERE r.id = s.id")  # noqa: S608
            cursor.execute(f"TRUNCATE {stage}")
        _copy_lines(cursor, RecordVersion, _VERSION_COPY_COLUMNS, versions)
        _copy_sealed_events(cursor, event_base, submission, events)
    # Events of other writers that found the sealer's lock taken while this chunk held it.
    transaction.on_commit(sealing.seal_after_commit)


# The layout of the lines `_copy_sealed_events` writes: the id and chain position first, then the
# immutable columns in their order, then the two hashes.
_EVENT_COPY_COLUMNS = (IMMUTABLE_COLUMNS[0], "seq", *IMMUTABLE_COLUMNS[1:], "prev_hash", "hash")
if sorted(_EVENT_COPY_COLUMNS) != sorted(f.attname for f in AuditEvent._meta.concrete_fields):
    raise RuntimeError("exchange.bulk: the COPY columns of AuditEvent do not match its fields")


def _copy_sealed_events(cursor, base: dict[str, Any], submission: str, events: list[tuple[str, str, int, bool]]):
    """The chunk's `record.submit` events, inserted already sealed into the hash chain.

    What the sealer (audit.sealing) would do right after the commit, done in the chunk's
    transaction under the sealer's lock (the same advisory lock, held to the commit; a rollback
    gives the positions back): the next chain positions, each event's `prev_hash` and its
    `hash` (audit.chain.link_hash over the same canonical fields the sealer and the verifier
    hash). It saves what sealing afterwards costs per event: reading it back and an UPDATE that
    writes a second row version and every index of the table again."""
    table = AuditEvent._meta.db_table
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [sealing.ADVISORY_LOCK_KEY])
    seq, prev = sealing.newest_sealed() or (0, GENESIS)
    cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", [table, len(events)])
    ids = sorted(row[0] for row in cursor.fetchall())
    head_text = "\t".join(
        _copy_text(base[name]) for name in ("occurred_at", "actor", "member_code", "action", "object_type")
    )
    outcome_text = f"{_copy_text(base['outcome'])}\t{_copy_text(base['request_id'])}"
    # The canonical JSON that link_hash hashes (sorted keys, no whitespace, ASCII), its constant
    # parts encoded once per chunk; the first and last event of every chunk are checked against
    # link_hash itself, so a drift between the two fails the chunk instead of the chain.
    encode = json.encoder.encode_basestring_ascii
    before_details = f'{{"action":{encode(base["action"])},"actor":{encode(base["actor"])},"details":{{"created":'
    submission_json = f',"submission":{encode(submission)},"version":'
    member_json = f',"member_code":{encode(base["member_code"])},"object_id":'
    after_object = (
        f',"object_type":{encode(base["object_type"])},"occurred_at":{encode(base["occurred_at"])},'
        f'"outcome":{encode(base["outcome"])},"request_id":{encode(base["request_id"])},"seq":'
    )
    sha256 = hashlib.sha256
    fromhex = bytes.fromhex
    last = len(events) - 1

    def lines(seq: int, prev: str) -> Iterator[str]:
        # A generator: COPY sends each block as it fills, so the server stores one block while
        # the next one is hashed here.
        for position, (event_id, (record_id, token, version, created)) in enumerate(zip(ids, events, strict=True)):
            seq += 1
            canonical = (
                f"{before_details}{'true' if created else 'false'}{submission_json}{version}}},"
                f'"id":{event_id}{member_json}{encode(record_id)}{after_object}{seq},'
                f'"subject_token":{encode(token)}}}'
            )
            digest = sha256(fromhex(prev) + canonical.encode("ascii")).hexdigest()
            if position == 0 or position == last:
                details = {"version": version, "created": created, "submission": submission}
                fields = {**base, "id": event_id, "seq": seq, "object_id": record_id, "subject_token": token}
                if digest != link_hash(prev, {**fields, "details": details}):
                    raise RuntimeError("exchange.bulk: the bulk event hash differs from audit.chain.link_hash")
            yield (
                f"{event_id}\t{seq}\t{head_text}\t{record_id}\t{_copy_text(token)}\t{outcome_text}\t"
                f'{{"version": {version}, "created": {"true" if created else "false"}, '
                f'"submission": {_copy_text(encode(submission))}}}\t{prev}\t{digest}\n'
            )
            prev = digest

    _copy_lines(cursor, AuditEvent, _EVENT_COPY_COLUMNS, lines(seq, prev))


_COPY_BLOCK = 1 << 18  # characters sent to COPY at a time


def _copy_lines(cursor, model: type[models.Model], attnames, lines: Iterable[str], *, table: str | None = None) -> None:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(model._meta.get_field(name).column) for name in attnames)
    with cursor.copy(f"COPY {quote(table or model._meta.db_table)} ({columns}) FROM STDIN") as copy:
        block: list[str] = []
        size = 0
        for line in lines:
            block.append(line)
            size += len(line)
            if size >= _COPY_BLOCK:
                copy.write("".join(block))
                block, size = [], 0
        if block:
            copy.write("".join(block))


def _adapters(fields: list) -> list[Callable[[Any], Any] | None]:
    """Per column, how a Python value becomes a database parameter (None: as it is), the way
    the ORM would adapt it, chosen once per column rather than per value."""
    ops = connection.ops
    adapters: list[Callable[[Any], Any] | None] = []
    for field in fields:
        target = field.target_field if field.is_relation else field
        if isinstance(target, models.UUIDField) and not connection.features.has_native_uuid_field:
            adapters.append(lambda value: None if value is None else value.hex)
        elif isinstance(field, models.DateTimeField):
            adapters.append(ops.adapt_datetimefield_value)
        elif isinstance(field, models.DateField):
            adapters.append(ops.adapt_datefield_value)
        else:
            adapters.append(None)
    return adapters


def _adapt(adapters, row: tuple) -> tuple:
    return tuple(value if adapt is None else adapt(value) for adapt, value in zip(adapters, row, strict=True))


def _executemany_write(
    cursor, record_fields, version_fields, update_names, new, changed, planned, record_row, version_row
):
    quote = connection.ops.quote_name
    table = quote(Record._meta.db_table)
    record_adapters = _adapters(record_fields)
    if new:
        columns = ", ".join(quote(f.column) for f in record_fields)
        marks = ", ".join(["%s"] * len(record_fields))
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608 - fixed names
            [_adapt(record_adapters, record_row(p)) for p in new],
        )
    if changed:
        positions = {f.column: i for i, f in enumerate(record_fields)}
        chosen = [positions[c] for c in update_names]
        id_position = positions[Record._meta.pk.column]
        sets = ", ".join(f"{quote(c)} = %s" for c in update_names)
        params = []
        for p in changed:
            row = _adapt(record_adapters, record_row(p))
            params.append((*(row[i] for i in chosen), row[id_position]))
        cursor.executemany(f"UPDATE {table} SET {sets} WHERE {quote(Record._meta.pk.column)} = %s", params)  # noqa: S608
    version_adapters = _adapters(version_fields)
    columns = ", ".join(quote(f.column) for f in version_fields)
    marks = ", ".join(["%s"] * len(version_fields))
    cursor.executemany(
        f"INSERT INTO {quote(RecordVersion._meta.db_table)} ({columns}) VALUES ({marks})",  # noqa: S608
        [_adapt(version_adapters, version_row(p)) for p in planned],
    )


def _orm_write(member, submission_id, now, new, changed, planned) -> None:
    """bulk_create (encrypting in pre_save); slower, kept for the benchmark's comparison."""

    def record_row(p: _Planned) -> Record:
        return Record(
            id=p.record_id,
            member=member,
            reference_index=p.index,
            member_reference=p.record.member_reference,
            name=p.record.name,
            version=p.version,
            created_at=now,
            updated_at=now,
            **_data(p.record),
        )

    if new:
        Record.objects.bulk_create([record_row(p) for p in new], batch_size=1000)
    if changed:
        Record.objects.bulk_create(
            [record_row(p) for p in changed],
            batch_size=1000,
            update_conflicts=True,
            unique_fields=["id"],
            update_fields=list(_RECORD_UPDATE_FIELDS),
        )
    RecordVersion.objects.bulk_create(
        [
            RecordVersion(
                record_id=p.record_id,
                member=member,
                version=p.version,
                submission_id=submission_id,
                name=p.record.name,
                created_at=now,
                **_data(p.record),
            )
            for p in planned
        ],
        batch_size=1000,
    )


# --- processing a submission ---------------------------------------------------------------------


def _lease() -> timedelta:
    return timedelta(seconds=settings.EXCHANGE_SUBMISSION_LEASE_SECONDS)


_owner_token = uuid.uuid4().hex[:8]


def worker_id() -> str:
    """Who holds a lease: host, process id and a per-process token (process ids get reused)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{_owner_token}"


def _owner_gone(owner: str) -> bool:
    """The lease holder is a process of this host that no longer runs (a killed worker)."""
    host, _, rest = owner.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname()[:80] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return token != _owner_token  # an earlier process with this pid: it cannot still run
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _lease_free(submission: Submission, owner: str, now: datetime) -> bool:
    if not submission.lease_owner or submission.lease_owner == owner:
        return True
    return (submission.lease_expires_at is not None and submission.lease_expires_at <= now) or _owner_gone(
        submission.lease_owner
    )


def _claim(submission_id: Any, owner: str) -> Submission | None:
    now = timezone.now()
    with transaction.atomic():
        submission = Submission.objects.select_for_update(skip_locked=True).filter(pk=submission_id).first()
        if submission is None or submission.finished or not _lease_free(submission, owner, now):
            return None
        submission.attempts += 1
        submission.status = SubmissionStatus.PROCESSING
        submission.lease_owner = owner
        submission.lease_expires_at = now + _lease()
        submission.started_at = submission.started_at or now
        submission.save(update_fields=["attempts", "status", "lease_owner", "lease_expires_at", "started_at"])
    return submission


def _hold(submission_id: Any, owner: str) -> Submission:
    """Lock the submission for this transaction and check the lease is still this worker's."""
    submission = Submission.objects.select_for_update().get(pk=submission_id)
    if submission.lease_owner != owner or submission.status != SubmissionStatus.PROCESSING:
        raise LeaseLost()
    return submission


def _file_path(submission: Submission) -> Path:
    path = Path(submission.file_name)
    return path if path.is_absolute() else storage_dir() / path


def _fault_point(chunks_done: int) -> None:
    """Fault injection for the crash tests: EXCHANGE_BULK_KILL_AFTER_CHUNKS=N kills this process
    inside the transaction of chunk N+1, after its rows are written and before it commits."""
    after = os.environ.get("EXCHANGE_BULK_KILL_AFTER_CHUNKS")
    if after and after.isdigit() and chunks_done >= int(after):
        os.kill(os.getpid(), signal.SIGKILL)


def _validate(
    rows: list[Row], today, member: Member | None = None
) -> tuple[list[ParsedRecord] | list[tuple], list[tuple[int, str, str]], int]:
    """Parse every row; with `member`, return the valid ones as `prepare_rows` makes them."""
    parsed: list[ParsedRecord] = []
    errors: list[tuple[int, str, str]] = []
    rejected = 0
    for row in rows:
        if row.error is not None:
            errors.append((row.line, *row.error))
            rejected += 1
            continue
        try:
            parsed.append(parse_record(row.raw, today=today))
        except RecordErrors as exc:
            errors += [(row.line, field, message) for field, message in exc.errors]
            rejected += 1
    if member is not None:
        return prepare_rows(member, parsed), errors, rejected
    return parsed, errors, rejected


def _store_chunk(
    submission: Submission,
    owner: str,
    validated: tuple[list, list[tuple[int, str, str]], int],
    position: tuple[int, int],
    done: int,
    prepared: bool,
) -> None:
    rows, errors, rejected = validated
    for attempt in range(3):
        try:
            with transaction.atomic():
                _hold(submission.pk, owner)
                records_bulk_store(
                    member=submission.member,
                    actor=submission.actor,
                    records=None if prepared else rows,
                    prepared=rows if prepared else None,
                    submission_id=submission.pk,
                )
                SubmissionError.objects.bulk_create(
                    [
                        SubmissionError(submission=submission, line=line, field=field[:100], message=message[:300])
                        for line, field, message in errors
                    ],
                    batch_size=1000,
                )
                Submission.objects.filter(pk=submission.pk).update(
                    next_offset=position[0],
                    next_line=position[1],
                    accepted=F("accepted") + len(rows),
                    rejected=F("rejected") + rejected,
                    lease_expires_at=timezone.now() + _lease(),
                )
                _fault_point(done)
            return
        except IntegrityError:
            # A concurrent request created one of these references first: the retry sees it.
            if attempt == 2:
                raise


# --- reading and validating ahead ----------------------------------------------------------------


class _ChunkSource:
    """Reads a submission's file from its saved position and validates it chunk by chunk (and,
    for the COPY writer, prepares the rows): pure Python, no database."""

    def __init__(self, path: Path, fmt: str, offset: int, line: int, member: Member | None):
        try:
            self.file = open(path, "rb")  # closed by close()
        except FileNotFoundError:
            raise FileRejected("The file is no longer stored; submit it again.") from None
        self.member = member
        try:
            self.lines, self.rows = open_rows(self.file, fmt, offset=offset, line=line)
        except BaseException:
            self.file.close()
            raise

    def next(self, chunk_rows: int, today) -> tuple[int, tuple[int, int], tuple]:
        batch = list(islice(self.rows, chunk_rows))
        return len(batch), (self.lines.pos, self.lines.line), _validate(batch, today, self.member)

    def close(self) -> None:
        self.file.close()


class _ThreadReader:
    """The next chunk is read and validated in a thread while this one is written: the parsing
    overlaps the database's work on the chunk (one core: the GIL is shared)."""

    def __init__(self, source: _ChunkSource):
        self.source = source
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bulk-read")
        self.upcoming = None

    def request(self, chunk_rows: int, today) -> None:
        self.upcoming = self.pool.submit(self.source.next, chunk_rows, today)

    def result(self):
        return self.upcoming.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.source.close()


def _reader_main(tasks, results, parent_ends, parent: int, path, fmt, offset, line, member) -> None:
    """The reader process (forked): answers each request with the next validated chunk. It exits
    when asked, when its parent is gone (a killed worker leaves nothing behind) or on an error,
    which it sends back."""
    for end in parent_ends:  # so a send to a dead parent fails instead of waiting forever
        end.close()
    try:
        try:
            source = _ChunkSource(path, fmt, offset, line, member)
        except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
            results.send(("error", exc))
            return
        while True:
            while not tasks.poll(1.0):
                if os.getppid() != parent:
                    return
            request = tasks.recv()
            if request is None:
                return
            try:
                answer = ("ok", source.next(*request))
            except BaseException as exc:  # noqa: BLE001
                results.send(("error", exc))
                return
            results.send(answer)
    except (OSError, EOFError):
        return  # the parent is gone


class _ProcessReader:
    """The reader in a forked process, so validation, tokenising and encryption run on another
    core than the writer (CPU-bound Python: a thread shares the GIL). The child is a copy of this
    process (settings, keys) that never touches the database; progress stays in the writer's
    transactions, so a dead reader only fails the attempt and the submission resumes."""

    def __init__(self, path: Path, fmt: str, offset: int, line: int, member: Member):
        context = multiprocessing.get_context("fork")
        task_read, self.tasks = context.Pipe(duplex=False)
        self.results, result_write = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_reader_main,
            args=(task_read, result_write, (self.tasks, self.results), os.getpid(), path, fmt, offset, line, member),
            name="bulk-reader",
            daemon=True,
        )
        self.process.start()
        task_read.close()
        result_write.close()

    def request(self, chunk_rows: int, today) -> None:
        try:
            self.tasks.send((chunk_rows, today))
        except OSError:
            pass  # the reader ended (with an error it sent): result() reports it

    def result(self):
        try:
            kind, value = self.results.recv()
        except EOFError:
            raise RuntimeError(f"the bulk reader process ended unexpectedly ({self.process.exitcode})") from None
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        try:
            self.tasks.send(None)
        except OSError:
            pass
        self.process.join(timeout=2)  # an idle reader exits at once; a busy one is not waited for
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.tasks.close()
        self.results.close()


def _use_process() -> bool:
    """A reader process for the COPY writer on a machine with more than one core, unless
    EXCHANGE_BULK_READER=thread."""
    return (
        _writer() == "copy"
        and (os.cpu_count() or 1) > 1
        and os.environ.get("EXCHANGE_BULK_READER", "") != "thread"
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon  # a daemonic process may not have children
    )


def _finish(submission_id: Any, owner: str, *, error: str = "") -> None:
    with transaction.atomic():
        submission = _hold(submission_id, owner)
        submission.status = SubmissionStatus.FAILED if error else SubmissionStatus.COMPLETED
        submission.error = error
        if not error:
            submission.total = submission.processed
        submission.finished_at = timezone.now()
        submission.lease_owner = ""
        submission.lease_expires_at = None
        submission.save(update_fields=["status", "error", "total", "finished_at", "lease_owner", "lease_expires_at"])
        audit_write(
            action="submission.fail" if error else "submission.complete",
            actor=submission.actor,
            outcome=Outcome.ERROR if error else Outcome.OK,
            member_code=submission.member.code,
            object_type="submission",
            object_id=submission.pk,
            details={
                "total": submission.total,
                "accepted": submission.accepted,
                "rejected": submission.rejected,
                "status": submission.status,
            },
        )
        if submission.file_owned:
            # The file holds raw identifiers: it goes as soon as it is no longer needed.
            path = _file_path(submission)
            transaction.on_commit(lambda: path.unlink(missing_ok=True))


def _release(submission_id: Any, owner: str) -> None:
    """After an unexpected error: give the lease up, so the recovery sweep retries soon."""
    try:
        with transaction.atomic():
            Submission.objects.filter(pk=submission_id, lease_owner=owner).update(
                lease_owner="", lease_expires_at=timezone.now()
            )
    except Exception:
        logger.exception("could not release the lease of submission %s", submission_id)


def submission_process(
    submission_id: Any, *, progress: Callable[[int], Any] | None = None, chunk_rows: int | None = None
) -> Submission | None:
    """Process a submission from where it stopped, chunk by chunk, until it completes or fails.

    Returns the submission as it then is, or None when another live worker holds it.
    """
    owner = worker_id()
    submission = _claim(submission_id, owner)
    if submission is None:
        return None
    if submission.attempts > MAX_ATTEMPTS:
        _finish(submission.pk, owner, error="Processing stopped after repeated failures; contact the exchange.")
        return Submission.objects.get(pk=submission.pk)
    chunk_rows = chunk_rows or settings.EXCHANGE_BULK_CHUNK_ROWS
    path = _file_path(submission)
    try:
        prepared = _writer() == "copy"
        where = (path, submission.format, submission.next_offset, submission.next_line)
        if _use_process():
            reader = _ProcessReader(*where, submission.member)
        else:
            reader = _ThreadReader(_ChunkSource(*where, submission.member if prepared else None))
        try:
            reader.request(chunk_rows, latest_today())
            done = 0
            while True:
                count, position, validated = reader.result()
                if not count:
                    break
                reader.request(chunk_rows, latest_today())
                _store_chunk(submission, owner, validated, position, done, prepared)
                done += 1
                if progress is not None:
                    progress(count)
        finally:
            reader.close()
        _finish(submission.pk, owner)
    except FileRejected as exc:
        _finish(submission.pk, owner, error=exc.message)
    except LeaseLost:
        logger.warning("submission %s was taken over by another worker", submission.pk)
        return None
    except BaseException:
        _release(submission.pk, owner)
        raise
    return Submission.objects.get(pk=submission.pk)


def seal_backstop() -> None:
    """Seal committed audit events into the chain (audit.sealing.seal_pending, when it exists)."""
    from audit import sealing

    seal = getattr(sealing, "seal_pending", None)
    if seal is None:
        return
    try:
        seal()
    except Exception:
        logger.exception("audit sealing backstop failed; it is tried again later")


def submissions_recover(now: datetime | None = None) -> int:
    """Enqueue every unfinished submission that no live worker holds (its worker was killed, or
    its task was lost); each is given one lease period before it is enqueued again."""
    now = now or timezone.now()
    candidates = Submission.objects.filter(
        status__in=[SubmissionStatus.QUEUED, SubmissionStatus.PROCESSING],
    ).filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lte=now) | ~Q(lease_owner=""))
    count = 0
    for submission in candidates.only("id", "lease_owner", "lease_expires_at", "status"):
        expired = submission.lease_expires_at is None or submission.lease_expires_at <= now
        if not expired and not (submission.lease_owner and _owner_gone(submission.lease_owner)):
            continue
        updated = Submission.objects.filter(
            pk=submission.pk, lease_owner=submission.lease_owner, lease_expires_at=submission.lease_expires_at
        ).update(lease_owner="", lease_expires_at=now + _lease())
        if updated:
            submission_enqueue(submission.pk)
            count += 1
    return count
