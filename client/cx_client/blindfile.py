"""`cx blind-file`: a bulk CSV with `id_number` subjects turned into one with `blind` subjects;
`blind_ndjson` does the same for a JSON Lines file (`cx upload` uses both).

Streaming: rows are read one by one, at most three batches (1,000 valid rows each) are held, each
batch is one evaluation call whose proof is verified against the pinned key. A background thread
blinds the next batch and finalises the previous one while a call is under way. The output is written to a
temporary file beside the target and renamed at the end, so a failure leaves no half file.

With `keep_lines`, every row of the output starts on the same line as in the input (a rejected
row or a blank line becomes blank lines, which the exchange skips): the line numbers the
exchange reports for an upload of the output are then those of the member's own file.

`check_blind_csv` and `blind_ndjson` are what `cx upload` sends through: a line leaves the member
only when it is blind already (a well-formed `blind` value, known fields only) or has just been
blinded; anything else is rejected here, by line and reason, never quoting a value.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import csv
import json
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cx_client.api import ApiError, Exchange, TransportError
from cx_client.blinding import BATCH_SIZE, BadAnswer, Batch, PinnedKey, b64
from cx_client.fields import CSV_COLUMNS, RECORD_FIELDS, SUBJECT_FIELDS
from cx_client.identifiers import IdentifierError, normalize_subject
from cx_client.subjects import oprf_input_normalised

Row = list[str]

BLIND_CHARS = 88  # base64 of the 64-byte VOPRF output
BLIND_MESSAGE = "must be the base64 of a 64-byte VOPRF output (88 characters), as cx blind prints"


class FileError(Exception):
    """The input file cannot be blinded at all (its header lacks a column, say)."""


class BatchFailed(Exception):
    """One evaluation call failed; nothing is written for the file."""

    def __init__(self, first_line: int, last_line: int, cause: Exception):
        super().__init__(f"the batch of rows at lines {first_line}-{last_line} failed: {cause}")
        self.first_line, self.last_line, self.cause = first_line, last_line, cause


@dataclass
class Reject:
    line: int
    row: Row
    field: str
    message: str


@dataclass
class Stats:
    blinded: int = 0
    rejected: int = 0
    calls: int = 0
    started: float = field(default_factory=time.monotonic)


def column_names(header: Row) -> Row:
    """The header's column names as the exchange reads them (spaces stripped, lower case)."""
    return [name.strip().lower() for name in header]


def is_blind_value(value: object) -> bool:
    """Whether `value` is a `blind` value: 88 characters of base64 decoding to 64 bytes."""
    if not isinstance(value, str) or len(value) != BLIND_CHARS:
        return False
    try:
        return len(base64.b64decode(value, validate=True)) == 64
    except (binascii.Error, ValueError):
        return False


def check_columns(columns: Row) -> None:
    """Refuse a header naming a column that is not a record field, or one column twice (the
    exchange refuses such a file, but only once it has it). Names only positions."""
    seen = set()
    for number, column in enumerate(columns, start=1):
        if column not in CSV_COLUMNS:
            names = ", ".join(sorted(CSV_COLUMNS))
            raise FileError(f"column {number} of the header row is not a record field (the columns: {names})")
        if column in seen:
            raise FileError(f"column {number} of the header row repeats an earlier column")
        seen.add(column)


def output_header(header: Row) -> Row:
    """The input's columns, in order, with `id_number` replaced by `blind`."""
    names = column_names(header)
    missing = [name for name in ("id_type", "id_number") if name not in names]
    if missing:
        raise FileError(f"the header row has no {' and no '.join(missing)} column")
    if "blind" in names:
        raise FileError("the header row already has a blind column")
    return ["blind" if name == "id_number" else cell for name, cell in zip(names, header, strict=True)]


def blind_rows(
    header: Row,
    rows: Iterable[tuple[int, Row]],
    exchange: Exchange,
    key: PinnedKey,
    *,
    on_reject: Callable[[Reject], None],
    on_batch: Callable[[Stats], None] = lambda stats: None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Row]:
    """The output rows of (line number, row) pairs, in order; invalid rows go to `on_reject` and
    are never sent. Reads lazily: at most one batch of valid rows is held at a time."""
    for _line, row in blind_numbered_rows(
        header, rows, exchange, key, on_reject=on_reject, on_batch=on_batch, batch_size=batch_size
    ):
        yield row


def blind_numbered_rows(
    header: Row,
    rows: Iterable[tuple[int, Row]],
    exchange: Exchange,
    key: PinnedKey,
    *,
    on_reject: Callable[[Reject], None],
    on_batch: Callable[[Stats], None] = lambda stats: None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[tuple[int, Row]]:
    """blind_rows, each output row with the line it started on in the input.

    Pipelined, three batches deep: a background thread blinds batch N+1 and finalises batch N-1
    (the cryptography, in libsodium without the GIL) while this thread makes batch N's evaluation
    call, reads rows and writes them out; the calls stay on the caller's thread, one at a time, in
    order. Batches are yielded strictly in order, and a failed batch raises BatchFailed before any
    row after it is yielded (after a failed call no other is made; a proof that does not verify is
    found once the next batch's call is made)."""
    output_header(header)
    names = column_names(header)
    i_type, i_number = names.index("id_type"), names.index("id_number")
    i_country = names.index("country") if "country" in names else None
    stats = Stats()
    pending: list[tuple[int, Row, bytes]] = []
    blinding: deque[tuple[list[tuple[int, Row, bytes]], Future]] = deque()  # Future of a Batch
    finalising: deque[tuple[list[tuple[int, Row, bytes]], Future]] = deque()  # Future of the outputs
    shown = [-1]  # the reject count last reported to on_batch
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cx-blind")

    def evaluate() -> bool:
        """Call the exchange for the oldest blinded batch; its finalisation goes to the worker.
        False when the batch failed (its error is left for finish() to raise, in order)."""
        entries, blinded = blinding.popleft()
        try:
            batch = blinded.result()
            answer = exchange.evaluate(batch)
        except (ApiError, BadAnswer, TransportError, OSError, ValueError) as exc:
            failed: Future = Future()
            failed.set_exception(exc)
            finalising.append((entries, failed))
            return False
        finalising.append((entries, worker.submit(batch.finalize, answer, key)))
        return True

    def finish() -> Iterator[tuple[int, Row]]:
        entries, outputs = finalising.popleft()
        try:
            values = outputs.result()
        except (ApiError, BadAnswer, TransportError, OSError, ValueError) as exc:
            raise BatchFailed(entries[0][0], entries[-1][0], exc) from exc
        stats.calls += 1
        stats.blinded += len(entries)
        for (line, row, _inp), value in zip(entries, values, strict=True):
            row[i_number] = b64(value)
            yield line, row
        on_batch(stats)
        shown[0] = stats.rejected

    def send() -> Iterator[tuple[int, Row]]:
        """Hand the pending batch to the worker to blind; call for the one before it; write out
        the one before that (all of them, after a failed call)."""
        blinding.append((pending.copy(), worker.submit(Batch.blind, [inp for _line, _row, inp in pending])))
        pending.clear()
        if len(blinding) > 1 and not evaluate():
            while finalising:
                yield from finish()
        if len(finalising) > 1:
            yield from finish()

    try:
        for line, row in rows:
            if not any(cell.strip() for cell in row):
                continue  # a blank line
            if len(row) != len(header):
                stats.rejected += 1
                on_reject(Reject(line, row, "row", f"has {len(row)} fields, the header {len(header)}"))
                continue
            country = row[i_country] if i_country is not None else ""
            try:
                normalised, normalised_country = normalize_subject(row[i_type], row[i_number], country)
            except IdentifierError as exc:
                stats.rejected += 1
                on_reject(Reject(line, row, exc.field, exc.message))
                continue
            if i_country is not None:
                row[i_country] = normalised_country
            pending.append((line, row, oprf_input_normalised(row[i_type], normalised, normalised_country)))
            if len(pending) >= batch_size:
                yield from send()
        if pending:
            yield from send()
        while blinding or finalising:
            if blinding and not evaluate():
                while finalising:
                    yield from finish()
            if finalising:
                yield from finish()
    finally:
        worker.shutdown(wait=False, cancel_futures=True)  # on an error, or the caller stopping early
    if shown[0] != stats.rejected:
        on_batch(stats)


def numbered(reader) -> Iterator[tuple[int, Row]]:
    """csv.reader rows with the line each starts on (a quoted cell may span lines)."""
    start = reader.line_num + 1
    for row in reader:
        yield start, row
        start = reader.line_num + 1


class Progress:
    """One line on stderr, rewritten with \\r after every batch: rows done, rejects, rate."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.shown = False

    def update(self, stats: Stats) -> None:
        rate = stats.blinded / max(time.monotonic() - stats.started, 1e-6)
        self.stream.write(f"\rcx: {stats.blinded:,} rows blinded, {stats.rejected:,} rejected, {rate:,.0f} rows/s")
        self.stream.flush()
        self.shown = True

    def break_line(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.shown = False


class _LineCounter:
    """A text file's write(), counting the lines written."""

    def __init__(self, fh: TextIO):
        self.fh = fh
        self.lines = 0

    def write(self, text: str) -> int:
        self.lines += text.count("\n")
        return self.fh.write(text)


class _AtomicFile:
    """A file written beside `path` (text, or bytes with `binary`) and renamed onto it by
    commit(); removed otherwise (by discard(), or on leaving a `with` block uncommitted)."""

    def __init__(self, path: Path, *, binary: bool = False):
        self.path = Path(path)
        fd, name = tempfile.mkstemp(dir=self.path.parent or ".", prefix=f".{self.path.name}.", suffix=".tmp")
        self.tmp = Path(name)
        self.fh = os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", newline="", encoding="utf-8")
        self.write = self.fh.write
        self.committed = False

    def commit(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)
        self.committed = True

    def discard(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> _AtomicFile:
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.committed:
            self.discard()


def blind_file(
    source: Path,
    target: Path,
    exchange: Exchange,
    key: PinnedKey,
    *,
    rejects: Path | None = None,
    err: TextIO | None = None,
    batch_size: int = BATCH_SIZE,
    keep_lines: bool = False,
    known_columns: bool = False,
) -> Stats:
    """Blind `source` into `target` (and invalid rows into `rejects`, when given); progress and
    rejects are reported on `err` (stderr). Raises BatchFailed or FileError, leaving neither file
    behind. The header is the first row with a cell that is not blank, as the exchange reads it.
    With `keep_lines`, each row starts on its input line (blank lines fill the gaps); with
    `known_columns`, a header naming a column that is not a record field is refused."""
    err = sys.stderr if err is None else err
    progress = Progress(err)
    stats = Stats()

    def report(reject: Reject) -> None:
        progress.break_line()
        err.write(f"cx: line {reject.line}: {reject.field}: {reject.message}\n")
        if reject_writer is not None:
            reject_writer.writerow([reject.line, *reject.row, f"{reject.field}: {reject.message}"])

    def batch_done(batch_stats: Stats) -> None:
        nonlocal stats
        stats = batch_stats
        progress.update(batch_stats)

    out = _AtomicFile(target)
    try:
        rej = _AtomicFile(rejects) if rejects is not None else None
    except BaseException:
        out.discard()
        raise
    reject_writer = None
    try:
        with open(source, newline="", encoding="utf-8-sig") as fh:
            rows = numbered(csv.reader(fh))
            # Blank rows before the header are skipped, as the exchange does.
            found = next(((line, row) for line, row in rows if any(cell.strip() for cell in row)), None)
            if found is None:
                raise FileError("the file is empty (no header row)")
            header_line, header = found
            if known_columns:
                check_columns(column_names(header))
            sink = _LineCounter(out.fh)
            if keep_lines:
                sink.write("\n" * (header_line - 1))
            writer = csv.writer(sink, lineterminator="\n")
            writer.writerow(output_header(header))
            if rej is not None:
                reject_writer = csv.writer(rej.fh, lineterminator="\n")
                reject_writer.writerow(["line", *header, "error"])
            for line, row in blind_numbered_rows(
                header,
                rows,
                exchange,
                key,
                on_reject=report,
                on_batch=batch_done,
                batch_size=batch_size,
            ):
                if keep_lines and sink.lines + 1 < line:
                    sink.write("\n" * (line - 1 - sink.lines))
                writer.writerow(row)
    except BaseException:
        progress.break_line()
        out.discard()
        if rej is not None:
            rej.discard()
        raise
    progress.break_line()
    out.commit()
    if rej is not None:
        rej.commit()
    return stats


# --- a blind CSV, checked as the exchange reads it --------------------------------------------------


class _ByteLines:
    """A binary file's lines as the exchange reads them (split at \\n only, a BOM dropped at the
    start, UTF-8): the text for csv.reader, the line count, and the raw lines since `take()`.
    A line that is not UTF-8 is read as an empty line and flagged in `bad`."""

    def __init__(self, fh):
        self.fh = fh
        self.line = 0
        self.bad = False
        self.raw: list[bytes] = []

    def __iter__(self) -> _ByteLines:
        return self

    def __next__(self) -> str:
        raw = self.fh.readline()
        if not raw:
            raise StopIteration
        if self.line == 0:
            raw = raw.removeprefix(codecs.BOM_UTF8)
        self.line += 1
        self.raw.append(raw)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.bad = True
            return "\n"

    def take(self) -> list[bytes]:
        raw, self.raw = self.raw, []
        return raw


def _read_header(lines: _ByteLines, reader) -> Row:
    """The column names: the first row with a cell that is not blank (exchange/bulk/rows.py)."""
    try:
        cells = next(reader)
        while not any(cell.strip() for cell in cells):
            cells = next(reader)
    except StopIteration:
        raise FileError("the file has no header row (a row naming the columns)") from None
    except csv.Error:
        raise FileError("the header row is not valid CSV") from None
    if lines.bad:
        raise FileError("the header row is not valid UTF-8 text")
    return column_names(cells)


def csv_columns(path: Path) -> Row:
    """A CSV's column names as the exchange reads its header; raises FileError or OSError."""
    with open(path, "rb") as fh:
        lines = _ByteLines(fh)
        return _read_header(lines, csv.reader(lines, strict=True))


def check_blind_csv(source: Path, target: Path, *, err: TextIO | None = None) -> Stats:
    """Check a CSV of blind subjects (a `blind` column, no `id_number`) row by row, as the
    exchange will read it, into `target`, line for line: a row whose `blind` cell is not a blind
    value, whose field count differs from the header's, or that is not valid CSV or UTF-8 is
    reported on `err` (`cx: line N: field: reason`) and becomes blank lines; every other line is
    copied byte for byte. Raises FileError for a header that cannot be used."""
    err = sys.stderr if err is None else err
    stats = Stats()

    def reject(line: int, field_name: str, message: str, raw: list[bytes]) -> None:
        stats.rejected += 1
        err.write(f"cx: line {line}: {field_name}: {message}\n")
        out.write(b"\n" * len(raw))

    with open(source, "rb") as fh, _AtomicFile(target, binary=True) as out:
        lines = _ByteLines(fh)
        reader = csv.reader(lines, strict=True)
        columns = _read_header(lines, reader)
        check_columns(columns)
        if "id_number" in columns or "blind" not in columns:
            raise FileError("the header row must have a blind column and no id_number column")
        i_blind, width = columns.index("blind"), len(columns)
        out.write(b"".join(lines.take()))
        while True:
            start = lines.line + 1
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                # The csv module's messages name only the delimiter and quote characters.
                lines.bad = False
                reject(start, "row", f"is not valid CSV ({exc})", lines.take())
                continue
            raw = lines.take()
            if lines.bad:
                lines.bad = False
                reject(start, "row", "is not valid UTF-8 text", raw)
            elif not any(cell.strip() for cell in cells):
                out.write(b"".join(raw))  # a blank row: nothing in it
            elif len(cells) != width:
                reject(start, "row", f"has {len(cells)} fields, the header {width}", raw)
            elif not is_blind_value(cells[i_blind].strip()):
                reject(start, "blind", BLIND_MESSAGE, raw)
            else:
                out.write(b"".join(raw))
        out.commit()
    return stats


# --- JSON Lines ----------------------------------------------------------------------------------


class _LineRejected(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def _strict_object(pairs: list[tuple[str, object]]) -> dict:
    record = {}
    for name, value in pairs:
        if name in record:
            # As the exchange reads a line: a repeated key rejects it (and the key is not quoted).
            raise _LineRejected("row", "repeats a key")
        record[name] = value
    return record


def _no_constant(name: str):
    raise _LineRejected("row", f"holds {name}, which JSON does not allow")


def _parse_line(text: str) -> dict:
    try:
        record = json.loads(text, object_pairs_hook=_strict_object, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _LineRejected("row", f"is not valid JSON ({exc.msg}, column {exc.colno})") from None
    except ValueError:  # an integer of more than 4,300 digits
        raise _LineRejected("row", "is not valid JSON (a number has too many digits)") from None
    except RecursionError:
        raise _LineRejected("row", "is nested too deeply") from None
    if not isinstance(record, dict):
        raise _LineRejected("row", "is not a JSON object")
    if "\\u" in text:
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise _LineRejected("row", "holds an unpaired surrogate escape (\\ud800-\\udfff alone)") from None
    return record


def _checked_subject(record: dict) -> dict:
    """The subject of a record whose keys are all record fields and whose subject's keys are
    all subject fields (the keys are never quoted: one may be an ID). Raises _LineRejected."""
    for name, value in record.items():
        if name not in RECORD_FIELDS:
            raise _LineRejected("row", "has a key that is not a record field (the key is not shown)")
        if name != "subject" and isinstance(value, dict | list):
            raise _LineRejected(name, "must be a string or a number, not an object or an array")
    if "subject" not in record:
        raise _LineRejected("subject", "is required")
    subject = record["subject"]
    if not isinstance(subject, dict):
        raise _LineRejected("subject", "must be an object")
    if not SUBJECT_FIELDS.issuperset(subject):
        raise _LineRejected(
            "subject", "has a key that is not a subject field (id_type, id_number or blind, name, country)"
        )
    for name in ("id_type", "name", "country"):
        if subject.get(name) is not None and not isinstance(subject[name], str):
            raise _LineRejected(f"subject.{name}", "must be a string")
    return subject


def _raw_subject(record: dict) -> tuple[dict, bytes] | None:
    """(the new subject without its blind value, the OPRF input) for a record whose subject has
    an `id_number`; None for a blind one, which may be sent as it is. Raises _LineRejected for
    anything else: an unknown key, a malformed `blind`, neither `id_number` nor `blind`."""
    subject = _checked_subject(record)
    if "id_number" not in subject:
        if "blind" not in subject:
            raise _LineRejected("subject.id_number", "is required (or blind, for a blind subject)")
        if not is_blind_value(subject["blind"]):
            raise _LineRejected("subject.blind", BLIND_MESSAGE)
        return None
    if "blind" in subject:
        raise _LineRejected("subject", "has both id_number and blind")
    country = subject.get("country")
    try:
        normalised, normalised_country = normalize_subject(subject.get("id_type"), subject["id_number"], country)
    except IdentifierError as exc:
        raise _LineRejected(f"subject.{exc.field}", exc.message) from None
    blind_subject = {}
    for name, value in subject.items():
        if name == "id_number":
            blind_subject["blind"] = ""  # filled in once evaluated, in the id_number's place
        elif name == "country":
            if normalised_country:
                blind_subject["country"] = normalised_country
        else:
            blind_subject[name] = value
    return blind_subject, oprf_input_normalised(subject["id_type"], normalised, normalised_country)


def blind_ndjson(
    source: Path,
    target: Path,
    exchange: Exchange,
    key: PinnedKey,
    *,
    err: TextIO | None = None,
    batch_size: int = BATCH_SIZE,
) -> Stats:
    """Blind the subjects of a JSON Lines file of records into `target`, line for line: a record
    whose subject has an `id_number` gets a `blind` in its place (country normalised, the other
    fields kept); a blank line, or a record whose subject is blind already (a well-formed `blind`
    value), is copied as it is. Any other line (not a JSON object, a key that is not a record or
    subject field, no subject, a malformed `blind`, an invalid ID) is never sent: it is reported
    on `err` as `cx: line N: field: reason` and becomes a blank line, so every line keeps its
    number. Calls of `batch_size`; raises BatchFailed, leaving no file behind."""
    err = sys.stderr if err is None else err
    progress = Progress(err)
    stats = Stats()
    # (line, text to write as it is) or (line, record, its new subject, OPRF input)
    pending: list[tuple] = []
    waiting = 0  # entries of `pending` that need an evaluation

    def reject(line: int, field_name: str, message: str) -> None:
        stats.rejected += 1
        progress.break_line()
        err.write(f"cx: line {line}: {field_name}: {message}\n")

    def flush(fh: TextIO) -> None:
        nonlocal waiting
        entries = [entry for entry in pending if len(entry) == 4]
        values: list[bytes] = []
        if entries:
            try:
                values = exchange.blind_batch([entry[3] for entry in entries], key)
            except (ApiError, BadAnswer, TransportError, OSError, ValueError) as exc:
                raise BatchFailed(entries[0][0], entries[-1][0], exc) from exc
            stats.calls += 1
            stats.blinded += len(entries)
        outputs = iter(values)
        for entry in pending:
            if len(entry) == 2:
                fh.write(entry[1])
            else:
                _line, record, subject, _inp = entry
                subject["blind"] = b64(next(outputs))
                record["subject"] = subject
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        pending.clear()
        waiting = 0
        if entries:
            progress.update(stats)

    out = _AtomicFile(target)
    try:
        with open(source, "rb") as fh:
            for line, raw in enumerate(fh, start=1):
                if line == 1 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8) :]
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    reject(line, "row", "is not valid UTF-8 text")
                    pending.append((line, "\n"))
                    continue
                if not text.endswith("\n"):
                    text += "\n"
                entry: tuple = (line, text)
                if text.strip():
                    try:
                        record = _parse_line(text)
                        found = _raw_subject(record)
                    except _LineRejected as exc:
                        reject(line, exc.field, exc.message)
                        entry = (line, "\n")
                    else:
                        if found is not None:
                            entry = (line, record, *found)
                            waiting += 1
                pending.append(entry)
                if waiting >= batch_size or (not waiting and pending) or len(pending) >= 4 * batch_size:
                    flush(out.fh)
            flush(out.fh)
    except BaseException:
        progress.break_line()
        out.discard()
        raise
    progress.break_line()
    out.commit()
    return stats
