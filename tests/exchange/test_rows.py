"""The bulk file reader (exchange/bulk/rows.py) against the csv module and the JSON API's strict
loader: the same values and line numbers, and the same rows again when resumed from any chunk
boundary."""

from __future__ import annotations

import csv
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.parsers import MalformedJSON, loads_strict_text
from exchange.bulk.rows import CSV_COLUMNS, CSV_REQUIRED, SUBJECT_FIELDS, FileRejected, open_rows
from exchange.models import SubmissionFormat

# Any text but NUL (a file with NUL bytes is refused whole) and lone surrogates (not UTF-8):
# quotes, commas, CR and LF inside fields, unicode.
_cell = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
_cell = _cell | st.sampled_from(['"', '""', ",", "\n", "\r\n", " a,b ", 'say "hi"', "é,\n中", "  "])
_optional = sorted(CSV_COLUMNS - set(CSV_REQUIRED) - {"id_number", "blind"})


def _physical_lines(data: bytes) -> list[str]:
    """The file's lines: split after each LF only (not str.splitlines' CR, VT, U+2028...), BOM dropped."""
    text = data.decode("utf-8-sig")
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _read(data: bytes, fmt: str, *, split: int | None = None) -> list:
    """Every row of the file as (line, raw, error); with `split`, read `split` rows, then resume a
    new reader from the position they ended at, as a worker does at a chunk boundary."""
    file = io.BytesIO(data)
    lines, rows = open_rows(file, fmt, offset=0, line=0)
    found = []
    for row in rows:
        found.append((row.line, row.raw, row.error))
        if split is not None and len(found) == split:
            lines, rows = open_rows(file, fmt, offset=lines.pos, line=lines.line)
            split = None
    return found


@st.composite
def _csv_files(draw):
    subject = draw(st.sampled_from(["id_number", "blind"]))  # a file's subjects are raw or blind
    columns = [*CSV_REQUIRED, subject, *draw(st.lists(st.sampled_from(_optional), unique=True))]
    columns = draw(st.permutations(columns))
    rows = draw(st.lists(st.lists(_cell, min_size=len(columns), max_size=len(columns)), max_size=8))
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=terminator)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(row)
        if draw(st.integers(0, 5)) == 0:
            out.write(terminator)  # a blank line, skipped
    bom = draw(st.sampled_from(["", "\ufeff"]))
    return columns, (bom + out.getvalue()).encode("utf-8")


def _csv_expected(columns: list[str], data: bytes) -> list:
    """csv.reader over the same physical lines: each record's values (stripped, empty = absent,
    the subject's columns nested) or its error, and the line where it starts."""
    reader = csv.reader(_physical_lines(data), strict=True)
    assert next(reader) == columns
    expected = []
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return expected
        except csv.Error as exc:  # e.g. a bare CR that csv.writer left unquoted
            expected.append((start, None, ("", f"is not valid CSV ({exc})")))
            continue
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if len(cells) != len(columns):
            expected.append((start, None, ("", f"has {len(cells)} columns; the header row has {len(columns)}")))
            continue
        raw: dict = {}
        subject: dict = {}
        for column, cell in zip(columns, cells, strict=True):
            if cell.strip():
                (subject if column in SUBJECT_FIELDS else raw)[column] = cell.strip()
            elif column == "blind":  # kept empty, so that the row's error names the blind value
                subject[column] = ""
        raw["subject"] = subject
        expected.append((start, raw, None))


@settings(max_examples=300, deadline=None)
@given(file=_csv_files(), split=st.integers(min_value=0, max_value=9))
def test_csv_rows_are_csv_readers_with_their_line_numbers_also_when_resumed(file, split):
    columns, data = file
    expected = _csv_expected(columns, data)
    assert _read(data, SubmissionFormat.CSV) == expected
    assert _read(data, SubmissionFormat.CSV, split=split) == expected


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _cell,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_cell, children, max_size=3),
    max_leaves=8,
)
_jsonl_lines = st.one_of(
    _json_values.map(lambda value: json.dumps(value, ensure_ascii=False)),
    st.sampled_from(["", "   ", "{", '{"a": 1,}', "[1, 2", "nul", '"unterminated', "\t{}\t"]),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(_jsonl_lines, max_size=10),
    terminator=st.sampled_from(["\n", "\r\n"]),
    split=st.integers(min_value=0, max_value=11),
)
def test_jsonl_rows_are_the_apis_strict_json_of_each_line_with_its_number_also_when_resumed(lines, terminator, split):
    data = terminator.join(lines).encode("utf-8")
    expected = []
    for number, line in enumerate(_physical_lines(data), start=1):
        if not line.strip():
            continue
        try:
            expected.append((number, loads_strict_text(line), None))
        except MalformedJSON:
            expected.append((number, None, "error"))
    if not data:
        return  # an empty file is refused at upload
    found = [(line, raw, error and "error") for line, raw, error in _read(data, SubmissionFormat.JSONL)]
    assert found == expected
    resumed = [(line, raw, error and "error") for line, raw, error in _read(data, SubmissionFormat.JSONL, split=split)]
    assert resumed == expected


@pytest.mark.parametrize(
    "line",
    [
        '{"days_past_due": 1, "days_past_due": 2}',
        '{"principal": NaN}',
        '{"principal": Infinity}',
        '{"principal": -Infinity}',
        '{"name": "\\ud800"}',
        "[" * 40 + "]" * 40,
    ],
)
def test_a_jsonl_line_the_json_api_would_refuse_is_refused(line):
    """Issue #18: bulk NDJSON took duplicate keys (last wins) and NaN, which the JSON API refuses."""
    with pytest.raises(MalformedJSON):
        loads_strict_text(line)
    (row,) = _read(f"{line}\n".encode(), SubmissionFormat.JSONL)
    assert row[1] is None and row[2][1].startswith("is not valid JSON")


def test_a_file_that_is_not_utf8_is_refused_whole():
    with pytest.raises(FileRejected):
        open_rows(io.BytesIO(b"member_reference\n\xff\xfe\n"), SubmissionFormat.CSV, offset=0, line=0)


def test_the_record_fields_members_send_are_the_stored_fields():
    from cx_client.fields import RECORD_FIELDS

    from exchange.models import RecordData

    stored = frozenset(RecordData.DATA_FIELDS) - {"subject_token", "id_type"}  # made from the subject
    assert RECORD_FIELDS == stored | {"member_reference", "subject"}
