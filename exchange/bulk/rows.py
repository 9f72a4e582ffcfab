"""Reading a bulk file's rows, CSV or JSON Lines, from a byte offset.

The physical lines come from `_Lines`, a line reader over the binary file, so that a chunk knows
the byte offset and line where the next one starts (a resumed submission seeks there), no line is
held whole past MAX_LINE_BYTES, and a line that is not UTF-8 is reported as its row's error; the
csv module and the JSON API's strict loader (core.parsers) parse them. Held to csv.reader's and
that loader's values and line numbers by a property test (tests/exchange/test_rows.py).
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from cx_client.fields import CSV_COLUMNS, SUBJECT_FIELDS

from core.parsers import MalformedJSON, loads_strict_text
from exchange.models import SubmissionFormat
from exchange.validation import RAW_REFUSED_DETAIL, raw_subjects_refused

MAX_LINE_BYTES = 1 << 20  # a longer physical line is reported, never held whole
SNIFF_BYTES = 1 << 16  # the head of a file checked for being UTF-8 text
_UTF8_BOM = codecs.BOM_UTF8

CSV_REQUIRED = (  # and one of id_number (a raw ID) or blind (a blind subject)
    "member_reference",
    "id_type",
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


class FileRejected(Exception):
    """The whole file cannot be processed (not text, no or a wrong header). The message is shown
    to the member: it never quotes the file's content."""

    def __init__(self, message: str, code: str = "malformed_request"):
        super().__init__(message)
        self.message = message
        self.code = code


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
    _check_subject_columns(columns)  # first: on a blind-only exchange a raw file is refused as such
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
    if "id_number" not in columns and "blind" not in columns:
        missing.append("id_number (or blind)")
    if missing:
        raise FileRejected(f"The header row lacks required columns: {', '.join(missing)}.")
    return columns


def _check_subject_columns(columns: list[str]) -> None:
    if "id_number" in columns and raw_subjects_refused():
        raise FileRejected(RAW_REFUSED_DETAIL, code="raw_identifier_refused")
    if "id_number" in columns and "blind" in columns:
        raise FileRejected("The header row has both id_number and blind: a file's subjects are raw or blind.")


def raw_columns_check(path: Path) -> None:
    """On a blind-only exchange, refuse a stored CSV whose header row names id_number, reading the
    header exactly as the worker will (blank rows skipped, quoted cells, BOM), before the file is
    registered; any other header problem is left for the worker to report."""
    if not raw_subjects_refused():
        return
    with open(path, "rb") as file:
        try:
            _csv_header(_Lines(file, 0, 0))
        except FileRejected as exc:
            if exc.code == "raw_identifier_refused":
                raise


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
            elif column == "blind":  # but a blind file's row without its value is told so
                subject[column] = cell
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
            # The JSON API's strict reading: a repeated key, NaN or Infinity, absurd nesting or a
            # lone surrogate is refused here as it is there, never silently given a value.
            raw = loads_strict_text(text)
        except MalformedJSON as exc:
            yield Row(number, None, ("", f"is not valid JSON ({str(exc).replace('the body', 'the line')})"))
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
