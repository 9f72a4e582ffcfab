"""`cx`: the member's command line.

- `cx key`: fetch and pin the exchange's OPRF key; `cx blind`: one borrower's blind subject;
  `cx blind-file`: a bulk CSV's subjects blinded.
- `cx upload`: a bulk CSV or JSON Lines file blinded here (no raw ID leaves the member), then
  streamed to the exchange; `cx submission` and `cx errors`: its status and rejected rows.
- `cx consent`: register a borrower's consent (the evidence document hashed here);
  `cx inquire`: a borrower's summary under it.

The exchange and key come from CX_URL and CX_API_KEY; the pin lives in CX_PIN_FILE
(default ~/.config/cx/oprf-key.json). Exit status: 0 done, 1 the exchange refused or failed
(or could not be reached), 2 bad input (nothing was sent; a pin file that cannot be read too),
3 the exchange's key changed. `-` as ID_NUMBER reads the ID from stdin.
A borrower's ID is never printed: errors name lines and fields, not values.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import hashlib
import json
import os
import re
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cx_client.api import JSON_LINES, ApiError, Exchange, TransportError, http_transport, subject_fields
from cx_client.blindfile import (
    BatchFailed,
    FileError,
    blind_file,
    blind_ndjson,
    check_blind_csv,
    check_columns,
    csv_columns,
)
from cx_client.blinding import BadAnswer, BadPin, KeyChanged, KeyPin, b64
from cx_client.identifiers import ID_TYPES, IdentifierError

PURPOSES = ("credit_application", "credit_line_review", "post_loan_management", "guarantee_review")
CHANNELS = ("app", "web", "paper", "recorded_call")
FORMATS = {"csv": "text/csv", "ndjson": JSON_LINES}
EXTENSIONS = {".csv": "csv", ".jsonl": "ndjson", ".ndjson": "ndjson"}
CONSENT_DAYS = 364  # the default validity: the exchange allows at most one year, leap days included
PROGRESS_BYTES = 16 << 20  # uploads from this size show a progress line
POLL_FIRST, POLL_MAX = 1.0, 10.0  # seconds between status polls with --wait, growing
sleep = time.sleep  # replaced by tests


class BadInput(Exception):
    """Something the member gave cannot be used: exit 2, nothing sent."""


def _pin() -> KeyPin:
    default = Path.home() / ".config" / "cx" / "oprf-key.json"
    return KeyPin(Path(os.environ.get("CX_PIN_FILE") or default))


def _exchange() -> Exchange:
    url, key = os.environ.get("CX_URL"), os.environ.get("CX_API_KEY")
    if not url or not key:
        raise SystemExit("cx: set CX_URL (the exchange, https://...) and CX_API_KEY (your API key)")
    return Exchange(http_transport(url, key))


def _print(answer) -> None:
    print(json.dumps(answer, ensure_ascii=False, indent=2))


def _read_id(args) -> None:
    """`-` as ID_NUMBER: the ID is read from stdin (one line; typed without echo at a terminal),
    so that it stays out of the shell's history and the process list."""
    if args.id_number != "-":
        return
    if sys.stdin is None:
        raise BadInput("ID_NUMBER: - reads the ID from stdin, but there is no stdin")
    if sys.stdin.isatty():
        value = getpass.getpass("cx: the borrower's ID number (not shown): ")
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise BadInput("ID_NUMBER: - reads the ID from stdin, but stdin gave none")
    args.id_number = value


def _validated(id_type: str, id_number: str, country: str | None) -> None:
    """Check a borrower's ID before anything is sent (BadInput names the field, never the value)."""
    try:
        subject_fields(id_type, id_number, country)
    except IdentifierError as exc:
        raise BadInput(f"{exc.field}: {exc.message}") from None


def _subject(args, exchange: Exchange) -> dict:
    """The borrower of a consent or inquiry (validated already): blind (one evaluation call), or as
    typed with --raw."""
    if args.raw:
        subject = {"id_type": args.id_type, "id_number": args.id_number}
        if args.country:
            subject["country"] = args.country
        return subject
    key = exchange.trusted_key(_pin(), accept_new=args.accept_new_key)
    return exchange.blind_subject(args.id_type, args.id_number, args.country, key)


# --- key and blinding ----------------------------------------------------------------------------


def cmd_key(args) -> int:
    key = _exchange().trusted_key(_pin(), accept_new=args.accept_new_key)
    print(json.dumps({"key_id": key.key_id, "public_key": b64(key.public_key), "pinned_in": str(_pin().path)}))
    return 0


def cmd_blind(args) -> int:
    _read_id(args)
    _validated(args.id_type, args.id_number, args.country)
    exchange = _exchange()
    key = exchange.trusted_key(_pin(), accept_new=args.accept_new_key)
    # The command's answer, on stdout for the member's own systems: the type and the blind value
    # (a cross-member pseudonym, personal data), never the ID; nothing is logged.
    print(json.dumps(exchange.blind_subject(args.id_type, args.id_number, args.country, key)))
    return 0


def cmd_blind_file(args) -> int:
    exchange = _exchange()
    key = exchange.trusted_key(_pin(), accept_new=args.accept_new_key)
    try:
        stats = blind_file(Path(args.input), Path(args.output), exchange, key, rejects=args.rejects)
    except BatchFailed as exc:
        print(f"cx: {exc}; {args.output} not written", file=sys.stderr)
        return 1
    except (FileError, csv.Error, UnicodeDecodeError, OSError) as exc:
        print(f"cx: {args.input}: {exc}; {args.output} not written", file=sys.stderr)
        return 2
    print(
        f"cx: {stats.blinded:,} rows blinded into {args.output} in {stats.calls} calls, {stats.rejected:,} rejected",
        file=sys.stderr,
    )
    return 0


# --- bulk files ----------------------------------------------------------------------------------


def _format(path: Path, given: str | None) -> str:
    if given:
        return given
    fmt = EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise BadInput(f"{path}: cannot tell the format from the name: pass --format csv or --format ndjson")
    return fmt


def _csv_columns(path: Path) -> list[str]:
    """A CSV's columns, found as the exchange finds its header (the first row with a cell that
    is not blank): all record fields, none twice, and an id_number or a blind column."""
    try:
        columns = csv_columns(path)
        check_columns(columns)
    except (FileError, OSError) as exc:
        raise BadInput(f"{path}: {exc}; nothing sent") from None
    if "id_number" not in columns and "blind" not in columns:
        raise BadInput(f"{path}: the header row has neither an id_number nor a blind column; nothing sent")
    return columns


class UploadProgress:
    """One line on stderr for a large upload, rewritten at each whole percent."""

    def __init__(self, stream):
        self.stream = stream
        self.shown = -1

    def __call__(self, sent: int, size: int) -> None:
        if size < PROGRESS_BYTES:
            return
        percent = sent * 100 // size
        if percent != self.shown:
            self.shown = percent
            self.stream.write(f"\rcx: uploading {sent / (1 << 20):,.1f} of {size / (1 << 20):,.1f} MiB ({percent}%)")
            if sent >= size:
                self.stream.write("\n")
            self.stream.flush()


def _blinded_copy(exchange: Exchange, args, source: Path, fmt: str, tmp: Path) -> Path:
    """The file to send: its blinded copy in `tmp`, line for line, or (a CSV of blind subjects)
    `source` once every row is checked (or its checked copy, the rows rejected here blank)."""
    if fmt == "csv" and "id_number" not in _csv_columns(source):
        target = tmp / "checked.csv"
        try:
            stats = check_blind_csv(source, target)
        except (FileError, OSError) as exc:
            raise BadInput(f"{source}: {exc}; nothing sent") from None
        if not stats.rejected:
            return source
        print(f"cx: {stats.rejected:,} rows rejected here and not sent", file=sys.stderr)
        return target
    key = exchange.trusted_key(_pin(), accept_new=args.accept_new_key)
    target = tmp / ("blinded.csv" if fmt == "csv" else "blinded.jsonl")
    try:
        if fmt == "csv":
            stats = blind_file(source, target, exchange, key, keep_lines=True, known_columns=True)
        else:
            stats = blind_ndjson(source, target, exchange, key)
    except (FileError, csv.Error, UnicodeDecodeError, OSError) as exc:
        raise BadInput(f"{source}: {exc}") from None
    if stats.blinded or stats.rejected:
        print(
            f"cx: {stats.blinded:,} rows blinded in {stats.calls} calls; {stats.rejected:,} rejected here and not sent",
            file=sys.stderr,
        )
    return target


def _wait(exchange: Exchange, submission_id: str) -> dict:
    """Poll a submission until it is completed or failed, with a progress line on stderr."""
    delay = POLL_FIRST
    shown = False
    while True:
        submission = exchange.submission(submission_id)
        if submission.get("status") in ("completed", "failed"):
            if shown:
                sys.stderr.write("\n")
            return submission
        sys.stderr.write(
            f"\rcx: {submission.get('status')}: {submission.get('processed', 0):,} of about "
            f"{submission.get('total', 0):,} rows read"
        )
        sys.stderr.flush()
        shown = True
        sleep(delay)
        delay = min(delay * 2, POLL_MAX)


def _report(submission: dict) -> int:
    """The final counts on stderr, and where to read the rejected rows; 1 for a failed file."""
    sid = submission.get("id")
    print(
        f"cx: submission {sid} {submission.get('status')}: {submission.get('total', 0):,} rows, "
        f"{submission.get('accepted', 0):,} accepted, {submission.get('rejected', 0):,} rejected",
        file=sys.stderr,
    )
    if submission.get("status") == "failed":
        print(f"cx: failed ({submission.get('error_code')}): {submission.get('error')}", file=sys.stderr)
    if submission.get("rejected"):
        print(
            f"cx: the rejected rows (line, field, message): cx errors {sid} (GET /api/v1/submissions/{sid}/errors)",
            file=sys.stderr,
        )
    return 1 if submission.get("status") == "failed" else 0


def cmd_upload(args) -> int:
    source = Path(args.file)
    fmt = _format(source, args.format)
    if not source.is_file():
        raise BadInput(f"{source}: no such file")
    if args.tmp_dir and not Path(args.tmp_dir).is_dir():
        raise BadInput(f"--tmp-dir: {args.tmp_dir} is not a directory")
    exchange = _exchange()
    with tempfile.TemporaryDirectory(prefix="cx-upload-", dir=args.tmp_dir) as tmp:
        try:
            body = source if args.raw else _blinded_copy(exchange, args, source, fmt, Path(tmp))
        except BatchFailed as exc:
            print(f"cx: {exc}; nothing uploaded", file=sys.stderr)
            return 1
        answer = exchange.upload(body, FORMATS[fmt], on_progress=UploadProgress(sys.stderr))
    if answer.get("duplicate"):
        print(f"cx: the exchange has this file already: submission {answer['id']}", file=sys.stderr)
    if not args.wait:
        _print(answer)
        print(f"cx: follow it with: cx submission {answer['id']} --wait", file=sys.stderr)
        return 0
    submission = _wait(exchange, answer["id"])
    _print(submission)
    return _report(submission)


def _submission_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise BadInput("the submission id must be a UUID") from None


def cmd_submission(args) -> int:
    exchange = _exchange()
    sid = _submission_id(args.id)
    submission = _wait(exchange, sid) if args.wait else exchange.submission(sid)
    _print(submission)
    return _report(submission) if args.wait else 0


def cmd_errors(args) -> int:
    for row in _exchange().submission_errors(_submission_id(args.id)):
        print(json.dumps(row, ensure_ascii=False))
    return 0


# --- consents and inquiries ----------------------------------------------------------------------


def _moment(value: str, option: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{option}: not an ISO 8601 time (such as 2026-11-27T09:30:00+08:00)") from None
    if moment.tzinfo is None:
        raise BadInput(f"{option}: give the offset too (such as +08:00 or Z)")
    return moment


def evidence_sha256(path: Path) -> str:
    """The hex SHA-256 of the signed authorisation document, read in blocks."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except OSError as exc:
        raise BadInput(f"--evidence: {exc.strerror or exc}: {path}") from None
    return digest.hexdigest()


def cmd_consent(args) -> int:
    granted = _moment(args.granted_at, "--granted-at") if args.granted_at else datetime.now(UTC).replace(microsecond=0)
    expires = _moment(args.expires_at, "--expires-at") if args.expires_at else granted + timedelta(days=CONSENT_DAYS)
    if expires <= granted:
        raise BadInput("--expires-at: must be after --granted-at")
    _read_id(args)
    _validated(args.id_type, args.id_number, args.country)
    digest = evidence_sha256(Path(args.evidence))
    exchange = _exchange()
    answer = exchange.register_consent(
        _subject(args, exchange),
        purpose=args.purpose,
        channel=args.channel,
        granted_at=granted.isoformat(),
        expires_at=expires.isoformat(),
        evidence_sha256=digest,
        idempotency_key=args.idempotency_key,
    )
    _print(answer)
    return 0


def cmd_inquire(args) -> int:
    try:
        consent_id = str(uuid.UUID(args.consent_id))
    except ValueError:
        raise BadInput("--consent-id: must be a UUID (the id cx consent printed)") from None
    _read_id(args)
    _validated(args.id_type, args.id_number, args.country)
    exchange = _exchange()
    answer = exchange.inquire(_subject(args, exchange), consent_id, args.purpose, idempotency_key=args.idempotency_key)
    _print(answer)
    return 0


# --- the parser ----------------------------------------------------------------------------------


class Parser(argparse.ArgumentParser):
    """argparse, whose errors never repeat what was typed: arguments given in the wrong order
    (`cx blind 110105... CN_RIC`) or an ID typed with a space would otherwise be printed back."""

    _ECHOES = (
        (re.compile(r"invalid choice: .* \(choose from ", re.DOTALL), "invalid choice (choose from "),
        (re.compile(r"(invalid [^:]* value): .*", re.DOTALL), r"\1 (not shown)"),
        (re.compile(r"unrecognized arguments: .*", re.DOTALL), "unrecognized arguments (not shown: one may be an ID)"),
    )

    def error(self, message: str):
        for pattern, replacement in self._ECHOES:
            message = pattern.sub(replacement, message)
        super().error(message)


def _borrower(parser: argparse.ArgumentParser) -> None:
    # Free strings, checked by the command: argparse's choices would print a misplaced ID back.
    parser.add_argument("id_type", metavar="ID_TYPE", help=", ".join(ID_TYPES))
    parser.add_argument(
        "id_number", metavar="ID_NUMBER", help="the borrower's ID; - reads it from stdin (out of shell history)"
    )
    parser.add_argument("--country", help="ISO 3166-1 alpha-2, passports only")


def _raw_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--raw",
        action="store_true",
        help=f"send {what} as typed instead of blind (only for an exchange that accepts raw IDs)",
    )


def _idempotency_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--idempotency-key", metavar="KEY", help="a retry with the same key and body is answered once")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cx", description="The credit exchange's member client.")
    commands = parser.add_subparsers(dest="command", required=True)
    key = commands.add_parser("key", help="fetch the exchange's OPRF public key and pin it (or check the pin)")
    blind = commands.add_parser("blind", help="print one borrower as a blind subject")
    _borrower(blind)
    blind_file_help = (
        "blind a bulk CSV (header with id_type,id_number[,country]) row by row, in calls of 1,000: "
        "OUTPUT has the same columns with id_number replaced by blind; name and the other columns are "
        "copied unchanged (they go to the exchange later with the upload, as before). A row whose ID "
        "is invalid is not sent: it is reported on stderr with its line number and left out of OUTPUT "
        "(with --rejects, also written to that file). OUTPUT appears only once every batch succeeded."
    )
    blind_file_cmd = commands.add_parser("blind-file", help=blind_file_help, description=blind_file_help)
    blind_file_cmd.add_argument("input", help="the CSV to read")
    blind_file_cmd.add_argument("output", help="the CSV to write (via a temporary file beside it, renamed at the end)")
    blind_file_cmd.add_argument(
        "--rejects",
        type=Path,
        metavar="FILE",
        help="also write each invalid row here: its line number, its columns as read, and the error",
    )

    upload_help = (
        "upload a bulk file of records (CSV or JSON Lines). Raw IDs are blinded here first, into a "
        "temporary copy deleted afterwards, line for line, so the exchange's error lines are your "
        "file's; a row whose ID is invalid is reported here and not sent. A CSV of blind subjects "
        "(a blind column, no id_number) is checked row by row and sent as it is; a line that is neither "
        "blind nor blinded here is never sent."
    )
    upload = commands.add_parser("upload", help=upload_help, description=upload_help)
    upload.add_argument("file", help="the file: .csv, .jsonl or .ndjson (or say which with --format)")
    upload.add_argument("--format", choices=sorted(FORMATS), help="the file's format, if its name does not say")
    upload.add_argument("--wait", action="store_true", help="wait until it is processed; print the counts")
    upload.add_argument(
        "--tmp-dir", metavar="DIR", help="where the blinded copy is written (default: the system's temporary directory)"
    )
    _raw_option(upload, "the file")

    submission = commands.add_parser("submission", help="print a bulk submission's status and counts")
    submission.add_argument("id")
    submission.add_argument("--wait", action="store_true", help="wait until it is completed or failed")
    errors = commands.add_parser("errors", help="print a submission's rejected rows (JSON Lines)")
    errors.add_argument("id")

    consent_help = (
        "register a borrower's consent: the evidence document is hashed here (SHA-256) and stays "
        f"with you; the borrower is sent blind. Valid from --granted-at (default now) to --expires-at "
        f"(default {CONSENT_DAYS} days later; the exchange allows at most one year)."
    )
    consent = commands.add_parser("consent", help=consent_help, description=consent_help)
    _borrower(consent)
    consent.add_argument("--purpose", required=True, choices=PURPOSES)
    consent.add_argument("--channel", required=True, choices=CHANNELS, help="how the borrower signed")
    consent.add_argument("--evidence", required=True, metavar="FILE", help="the signed authorisation document")
    consent.add_argument("--granted-at", metavar="TIME", help="ISO 8601 with an offset (default: now)")
    consent.add_argument("--expires-at", metavar="TIME", help=f"ISO 8601, offset too (default: {CONSENT_DAYS} days on)")
    _raw_option(consent, "the borrower")
    _idempotency_option(consent)

    inquire = commands.add_parser("inquire", help="a borrower's summary, under one of your active consents")
    _borrower(inquire)
    inquire.add_argument("--consent-id", required=True, metavar="UUID", help="the consent's id (from cx consent)")
    inquire.add_argument("--purpose", required=True, choices=PURPOSES, help="the consent's purpose")
    _raw_option(inquire, "the borrower")
    _idempotency_option(inquire)

    for sub in (key, blind, blind_file_cmd, upload, consent, inquire):
        sub.add_argument(
            "--accept-new-key", action="store_true", help="accept and pin a key that differs from the pinned one"
        )
    return parser


COMMANDS = {
    "key": cmd_key,
    "blind": cmd_blind,
    "blind-file": cmd_blind_file,
    "upload": cmd_upload,
    "submission": cmd_submission,
    "errors": cmd_errors,
    "consent": cmd_consent,
    "inquire": cmd_inquire,
}


def _problem(exc: ApiError) -> str:
    lines = [f"cx: {exc}"]
    for error in exc.problem.get("errors") or []:
        if isinstance(error, dict):
            where = "" if error.get("index") is None else f"[{error['index']}] "
            lines.append(f"cx:   {where}{error.get('field')}: {error.get('message')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except (BadInput, BadPin) as exc:
        print(f"cx: {exc}", file=sys.stderr)
        return 2
    except KeyChanged as exc:
        print(f"cx: {exc}", file=sys.stderr)
        return 3
    except ApiError as exc:
        print(_problem(exc), file=sys.stderr)
        return 1
    except (BadAnswer, TransportError) as exc:
        print(f"cx: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
