"""`cx blind-file`: a bulk CSV with `id_number` subjects turned into one with `blind` subjects.

Streaming: rows are read one by one, at most one batch (1,000 valid rows) is held, each batch is
one evaluation call whose proof is verified against the pinned key. The output is written to a
temporary file beside the target and renamed at the end, so a failure leaves no half file.
"""

from __future__ import annotations

import csv
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from cx_client.api import ApiError, Exchange
from cx_client.blinding import BATCH_SIZE, BadAnswer, PinnedKey, b64
from cx_client.identifiers import IdentifierError, normalize_subject
from cx_client.subjects import oprf_input_normalised

Row = list[str]


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


def output_header(header: Row) -> Row:
    """The input's columns, in order, with `id_number` replaced by `blind`."""
    missing = [name for name in ("id_type", "id_number") if name not in header]
    if missing:
        raise FileError(f"the header row has no {' and no '.join(missing)} column")
    if "blind" in header:
        raise FileError("the header row already has a blind column")
    return ["blind" if name == "id_number" else name for name in header]


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
    output_header(header)
    i_type, i_number = header.index("id_type"), header.index("id_number")
    i_country = header.index("country") if "country" in header else None
    stats = Stats()
    pending: list[tuple[int, Row, bytes]] = []
    shown = [-1]  # the reject count last reported to on_batch

    def flush() -> Iterator[Row]:
        try:
            values = exchange.blind_batch([inp for _line, _row, inp in pending], key)
        except (ApiError, BadAnswer, OSError, ValueError) as exc:
            raise BatchFailed(pending[0][0], pending[-1][0], exc) from exc
        stats.calls += 1
        stats.blinded += len(pending)
        for (_line, row, _inp), value in zip(pending, values, strict=True):
            row[i_number] = b64(value)
            yield row
        pending.clear()
        on_batch(stats)
        shown[0] = stats.rejected

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
            yield from flush()
    if pending:
        yield from flush()
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


class _AtomicFile:
    """A text file written beside `path` and renamed onto it by commit(); removed otherwise."""

    def __init__(self, path: Path):
        self.path = Path(path)
        fd, name = tempfile.mkstemp(dir=self.path.parent or ".", prefix=f".{self.path.name}.", suffix=".tmp")
        self.tmp = Path(name)
        self.fh = os.fdopen(fd, "w", newline="", encoding="utf-8")

    def commit(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def blind_file(
    source: Path,
    target: Path,
    exchange: Exchange,
    key: PinnedKey,
    *,
    rejects: Path | None = None,
    err: TextIO | None = None,
    batch_size: int = BATCH_SIZE,
) -> Stats:
    """Blind `source` into `target` (and invalid rows into `rejects`, when given); progress and
    rejects are reported on `err` (stderr). Raises BatchFailed or FileError, leaving neither file behind."""
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
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise FileError("the file is empty (no header row)")
            writer = csv.writer(out.fh, lineterminator="\n")
            writer.writerow(output_header(header))
            if rej is not None:
                reject_writer = csv.writer(rej.fh, lineterminator="\n")
                reject_writer.writerow(["line", *header, "error"])
            for row in blind_rows(
                header,
                numbered(reader),
                exchange,
                key,
                on_reject=report,
                on_batch=batch_done,
                batch_size=batch_size,
            ):
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
