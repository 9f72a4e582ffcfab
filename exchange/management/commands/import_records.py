"""`import_records CODE FILE`: a bulk file (CSV, or JSON Lines by .jsonl/.ndjson or by sniffing)
processed in this process along the same path as an uploaded submission, with a progress bar.

Running it again on the same file resumes an interrupted import, or reports the finished one:
no row is ever stored twice.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from audit.actors import cli_actor
from core.commands import get_or_fail
from exchange.bulk import upload, worker
from exchange.bulk.rows import FileRejected
from exchange.models import Submission, SubmissionError, SubmissionFormat, SubmissionStatus
from members.models import Member


class Command(BaseCommand):
    help = "Import a bulk file of records for a member (CSV or JSON Lines), with a progress bar."

    def add_arguments(self, parser):
        parser.add_argument("code", help="member code")
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=SubmissionFormat.values, help="default: by extension, else sniffed")
        parser.add_argument("--chunk-rows", type=int, default=None, help="rows per transaction")
        parser.add_argument(
            "--errors", type=Path, default=None, help="where to write rejected rows (default: FILE.errors.jsonl)"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, code: str, file: Path, format: str | None, chunk_rows, errors, no_progress, **options):
        member = get_or_fail(Member, f"No member with code {code!r}.", code=code)
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        fmt = format or upload.format_for_path(file)
        try:
            stored = upload.file_inspect(file, fmt=fmt)  # empty, or not UTF-8 text: refused as an upload is
        except FileRejected as exc:
            raise CommandError(str(exc)) from None
        submission, created = upload.submission_create(
            member=member,
            actor=cli_actor("import_records"),
            fmt=fmt,
            stored=stored,
            owned=False,
            enqueue=False,
            limit_queue=False,
        )
        if not submission.finished:
            with tqdm(
                total=submission.total,
                initial=submission.processed,
                unit="rows",
                unit_scale=True,
                disable=no_progress,
                file=self.stderr._out,
                dynamic_ncols=True,
            ) as bar:
                result = worker.submission_process(submission.pk, progress=bar.update, chunk_rows=chunk_rows)
            if result is None:
                raise CommandError(f"Submission {submission.pk} is being processed by another worker.")
            submission = result
            # The records' events went in sealed; seal the rest (the submission's own) and sign a checkpoint.
            worker.seal_backstop()
        elif not created:
            self.stderr.write(f"This file was submitted before (submission {submission.pk}); nothing stored again.")
        self._report(submission, file, errors)

    def _report(self, submission: Submission, file: Path, errors_path: Path | None) -> None:
        written = None
        if submission.rejected:
            written = errors_path or file.with_name(file.name + ".errors.jsonl")
            with open(written, "w", encoding="utf-8") as out:
                rows = SubmissionError.objects.filter(submission=submission).order_by("id")
                for line, field, message in rows.values_list("line", "field", "message").iterator(chunk_size=2000):
                    out.write(json.dumps({"line": line, "field": field or None, "message": message}) + "\n")
        payload = {
            "submission": str(submission.pk),
            "status": submission.status,
            "total": submission.total,
            "accepted": submission.accepted,
            "rejected": submission.rejected,
            "errors": str(written) if written else None,
            "errors_api": f"/api/v1/submissions/{submission.pk}/errors",
        }
        if submission.status == SubmissionStatus.FAILED:
            payload["error"] = submission.error
            payload["error_code"] = submission.error_code or "processing_failed"
        self.stdout.write(json.dumps(payload))
        if submission.status == SubmissionStatus.FAILED:
            raise CommandError(submission.error)
