"""Processing bulk submissions: claiming one under a lease, reading and validating it ahead in a
reader process or thread, storing it chunk by chunk, finishing it, and recovering abandoned ones.

Every row goes through `exchange.validation.parse_record`, the JSON API's one validation path, and
every chunk through `exchange.records.records_write`, the API's one writer. The valid rows of a
chunk, their versions, their audit events, the chunk's row errors and the submission's progress
(byte offset, counts) are written in one transaction: a killed worker resumes at the last
committed offset and never stores a row twice.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_tasks import task

from audit import sealing
from audit.actions import Action
from audit.models import Outcome
from audit.services import audit_write
from exchange.bulk.rows import FileRejected, Row, open_rows
from exchange.models import Submission, SubmissionError, SubmissionErrorCode, SubmissionStatus
from exchange.records import prepare_rows, records_write
from exchange.validation import (
    RAW_REFUSED_MESSAGE,
    ParsedRecord,
    RecordErrors,
    latest_today,
    parse_record,
    raw_subjects_refused,
)
from members.models import Member, MemberStatus

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 5  # claims of one submission before it is failed (a crash loop, not bad rows)


class LeaseLost(Exception):
    """Another worker took the submission over (this one's lease had lapsed): stop, store nothing."""


class MemberSuspended(Exception):
    """The member was suspended: its file is not processed further (what is stored stays)."""


SUSPENDED_MESSAGE = "The member is suspended: the file was not processed further."


def _member_active(member_id: Any) -> bool:
    return Member.objects.filter(pk=member_id, status=MemberStatus.ACTIVE).exists()


# --- the task --------------------------------------------------------------------------------------


# Defined here, beside what it runs, so that enqueueing (upload, recovery) needs no import of
# exchange.tasks, which lists it under its historical path for tasks already queued.
@task()
def process_submission(submission_id: str) -> dict:
    """Process a bulk submission from where it stopped; a no-op if another worker holds it."""
    submission = submission_process(submission_id)
    if submission is None:
        return {"submission": submission_id, "status": "held_elsewhere"}
    return {
        "submission": submission_id,
        "status": submission.status,
        "accepted": submission.accepted,
        "rejected": submission.rejected,
    }


def submission_enqueue(submission_id: Any) -> None:
    """Hand the submission to the task backend (after commit). A failure is only logged: the
    worker's recovery sweep enqueues any submission that no worker claimed in time."""
    try:
        process_submission.enqueue(str(submission_id))
    except Exception:
        logger.exception("could not enqueue submission %s; the recovery sweep will", submission_id)


# --- processing a submission ---------------------------------------------------------------------


def storage_dir() -> Path:
    return Path(settings.EXCHANGE_SUBMISSIONS_DIR)


def file_path(submission: Submission) -> Path:
    path = Path(submission.file_name)
    return path if path.is_absolute() else storage_dir() / path


def lease() -> timedelta:
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
        submission.lease_expires_at = now + lease()
        submission.started_at = submission.started_at or now
        submission.save(update_fields=["attempts", "status", "lease_owner", "lease_expires_at", "started_at"])
    return submission


def _hold(submission_id: Any, owner: str) -> Submission:
    """Lock the submission for this transaction and check the lease is still this worker's."""
    submission = Submission.objects.select_for_update().get(pk=submission_id)
    if submission.lease_owner != owner or submission.status != SubmissionStatus.PROCESSING:
        raise LeaseLost()
    return submission


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
                if not _member_active(submission.member_id):
                    raise MemberSuspended()
                records_write(
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
                    lease_expires_at=timezone.now() + lease(),
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
    given the member, prepares the rows for COPY): pure Python, no database."""

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
    """A reader process where the rows are prepared for COPY (PostgreSQL) and there is another
    core to run it on; a thread otherwise."""
    return (
        connection.vendor == "postgresql"
        and (os.cpu_count() or 1) > 1
        and "fork" in multiprocessing.get_all_start_methods()
        and not multiprocessing.current_process().daemon  # a daemonic process may not have children
    )


def _kept_errors(errors: list[tuple[int, str, str]], keep: int) -> tuple[list[tuple[int, str, str]], int]:
    """The errors of the first `keep` rejected rows, and the line of the row after them (the one
    that stops the file)."""
    lines: list[int] = []
    for line, _field, _message in errors:
        if not lines or lines[-1] != line:
            lines.append(line)
            if len(lines) > keep:
                break
    kept_lines = set(lines[:keep])
    return [error for error in errors if error[0] in kept_lines], lines[keep]


def _finish(
    submission_id: Any,
    owner: str,
    *,
    error: str = "",
    code: str = "",
    errors: list[tuple[int, str, str]] = (),
    rejected: int = 0,
) -> None:
    """Complete or fail the submission (with `errors` and `rejected` rows more, stored in the same
    transaction), audited, and drop its file."""
    with transaction.atomic():
        submission = _hold(submission_id, owner)
        if errors:
            SubmissionError.objects.bulk_create(
                [
                    SubmissionError(submission=submission, line=line, field=field[:100], message=message[:300])
                    for line, field, message in errors
                ],
                batch_size=1000,
            )
        submission.rejected += rejected
        submission.status = SubmissionStatus.FAILED if error else SubmissionStatus.COMPLETED
        submission.error = error
        submission.error_code = code if error else ""
        if not error:
            submission.total = submission.processed
        submission.finished_at = timezone.now()
        submission.lease_owner = ""
        submission.lease_expires_at = None
        submission.save(
            update_fields=[
                "rejected",
                "status",
                "error",
                "error_code",
                "total",
                "finished_at",
                "lease_owner",
                "lease_expires_at",
            ]
        )
        refused = code == SubmissionErrorCode.RAW_IDENTIFIER_REFUSED
        audit_write(
            action=Action.SUBMISSION_FAIL if error else Action.SUBMISSION_COMPLETE,
            actor=submission.actor,
            outcome=Outcome.DENIED if refused else Outcome.ERROR if error else Outcome.OK,
            member_code=submission.member.code,
            object_type="submission",
            object_id=submission.pk,
            details={
                "total": submission.total,
                "accepted": submission.accepted,
                "rejected": submission.rejected,
                "status": submission.status,
                **({"error_code": submission.error_code} if error else {}),
                **({"why": code} if refused else {}),
            },
        )
        _audit_raw_rows(submission)
        if submission.file_owned:
            # The file holds raw identifiers: it goes as soon as it is no longer needed.
            path = file_path(submission)
            transaction.on_commit(lambda: path.unlink(missing_ok=True))


def _audit_raw_rows(submission: Submission) -> None:
    """Rows refused for carrying a raw ID on a blind-only exchange: one refusal event for the file,
    with their count (each row is also in the submission's errors)."""
    if not raw_subjects_refused():
        return
    rows = SubmissionError.objects.filter(submission=submission, message=RAW_REFUSED_MESSAGE).count()
    if rows:
        audit_write(
            action=Action.RECORD_SUBMIT,
            actor=submission.actor,
            outcome=Outcome.DENIED,
            member_code=submission.member.code,
            object_type="submission",
            object_id=submission.pk,
            details={"why": SubmissionErrorCode.RAW_IDENTIFIER_REFUSED, "rows": rows},
        )


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
        _finish(
            submission.pk,
            owner,
            error="Processing stopped after repeated failures; contact the exchange.",
            code=SubmissionErrorCode.PROCESSING_FAILED,
        )
        return Submission.objects.get(pk=submission.pk)
    if not _member_active(submission.member_id):
        _finish(submission.pk, owner, error=SUSPENDED_MESSAGE, code=SubmissionErrorCode.MEMBER_SUSPENDED)
        return Submission.objects.get(pk=submission.pk)
    chunk_rows = chunk_rows or settings.EXCHANGE_BULK_CHUNK_ROWS
    max_errors = settings.EXCHANGE_MAX_ROW_ERRORS
    rejected_so_far = submission.rejected
    stop: tuple[list, int] | None = None
    path = file_path(submission)
    try:
        prepared = connection.vendor == "postgresql"  # records_write takes prepare_rows' rows there
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
                if rejected_so_far + validated[2] > max_errors:
                    # A file of garbage stops here instead of filling the errors table: the rows of
                    # chunks before stay stored, this chunk's valid rows are not.
                    stop = _kept_errors(validated[1], max_errors - rejected_so_far)
                    break
                reader.request(chunk_rows, latest_today())
                _store_chunk(submission, owner, validated, position, done, prepared)
                rejected_so_far += validated[2]
                done += 1
                if progress is not None:
                    progress(count)
        finally:
            reader.close()
        if stop is None:
            _finish(submission.pk, owner)
        else:
            kept, line = stop
            _finish(
                submission.pk,
                owner,
                error=f"Stopped at line {line}: more than {max_errors} rows were rejected. "
                "Fix the file and submit it again.",
                code=SubmissionErrorCode.TOO_MANY_ERRORS,
                errors=kept,
                rejected=max_errors - rejected_so_far + 1,
            )
    except FileRejected as exc:
        _finish(submission.pk, owner, error=exc.message, code=SubmissionErrorCode(exc.code))
    except MemberSuspended:
        _finish(submission.pk, owner, error=SUSPENDED_MESSAGE, code=SubmissionErrorCode.MEMBER_SUSPENDED)
    except LeaseLost:
        logger.warning("submission %s was taken over by another worker", submission.pk)
        return None
    except BaseException:
        _release(submission.pk, owner)
        raise
    return Submission.objects.get(pk=submission.pk)


def seal_backstop() -> None:
    """Seal committed audit events into the chain (audit.sealing.seal_pending). Never raises."""
    try:
        sealing.seal_pending()
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
        ).update(lease_owner="", lease_expires_at=now + lease())
        if updated:
            submission_enqueue(submission.pk)
            count += 1
    return count
