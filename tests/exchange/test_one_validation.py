"""One validation for every path (issue #18): a record is refused or accepted alike whether it
comes in a JSON batch, a CSV file or a JSON Lines file; and crafted cursors are 400, never 500."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.validation import RecordErrors, parse_record
from tests.exchange.test_submissions import HEADER, errors_of, process, upload
from tests.factories import record

pytestmark = pytest.mark.django_db


def as_csv(rec: dict) -> bytes:
    subject = rec["subject"]
    flat = {**{k: v for k, v in rec.items() if k != "subject"}, **subject}
    cells = []
    for column in HEADER.split(","):
        value = flat.get(column, "")
        cells.append(value if isinstance(value, str) else json.dumps(value))
    return (HEADER + "\n" + ",".join(cells) + "\n").encode()


def outcomes(persona, rec: dict) -> dict[str, list]:
    """The field errors of one record by each path (an empty list: accepted)."""
    api = persona.client.post("/api/v1/records", {"records": [rec]}, format="json")
    found = {"api": sorted(e["field"] for e in api.json().get("errors", []))}
    assert api.status_code in (201, 422), api.content
    for name, body, media in (
        ("csv", as_csv(rec), "text/csv"),
        ("jsonl", (json.dumps(rec) + "\n").encode(), "application/x-ndjson"),
    ):
        submission = process(upload(persona, body, media).json()["id"])
        found[name] = sorted(e["field"] for e in errors_of(persona, submission.pk))
    return found


@pytest.mark.parametrize(
    ("field", "value", "refused"),
    [
        ("days_past_due", 999999, True),
        ("days_past_due", "999999", True),  # issue #18: passed as a string
        ("days_past_due", "100001", True),
        ("days_past_due", "64", False),
        ("days_past_due", 64, False),
        ("days_past_due", "٣", True),  # Arabic-Indic digit: str.isdigit() says yes
        ("days_past_due", "²", True),
        ("days_past_due", "-5", True),
        ("opened_on", "0001-01-01", True),  # issue #18: year 0001 passed
        ("opened_on", "1899-12-31", True),
        ("opened_on", "1900-01-01", False),
    ],
)
def test_every_path_refuses_and_accepts_the_same_values(bank_a, field, value, refused):
    rec = record("L-1", 1, **{field: value})
    found = outcomes(bank_a, rec)
    expected = [field] if refused else []
    assert found == {"api": expected, "csv": expected, "jsonl": expected}


@settings(max_examples=200, deadline=None)
@given(value=st.one_of(st.integers(), st.text(max_size=8), st.integers().map(str)))
def test_a_count_is_the_same_as_a_number_or_as_its_digits(value):
    def verdict(v):
        try:
            return parse_record(record("L-1", 1, days_past_due=v)).days_past_due
        except RecordErrors as exc:
            return [f for f, _ in exc.errors]

    result = verdict(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        assert result == verdict(int(value.strip()))
    if isinstance(result, int):
        assert 0 <= result <= 100_000


def cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


LISTS = [
    "/api/v1/records",
    "/api/v1/consents",
    "/api/v1/inquiries",
    "/api/v1/disputes",
    "/api/v1/submissions",
]


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    "crafted",
    [
        cursor("p=not-a-date"),  # issue #18: 500 on every list endpoint
        cursor("p=2026-01-01T00:00:00"),  # naive
        cursor("p=2026-13-45 00:00:00+00:00"),
        cursor("p=\x00"),
        cursor("o=-1"),
        cursor("r=x"),
        "cD1ub3QtYS1kYXRl====",
    ],
)
def test_a_crafted_cursor_is_a_malformed_request(bank_a, path, crafted):
    response = bank_a.client.get(path, {"cursor": crafted})
    assert (response.status_code, response.json()["code"]) == (400, "malformed_request")


def test_the_next_link_still_works(bank_a):
    for i in range(3):
        bank_a.client.post("/api/v1/records", {"records": [record(f"L-{i}", i)]}, format="json")
    first = bank_a.client.get("/api/v1/records", {"page_size": 2}).json()
    assert len(first["results"]) == 2 and first["next"]
    second = bank_a.client.get(first["next"]).json()
    assert len(second["results"]) == 1 and second["next"] is None
