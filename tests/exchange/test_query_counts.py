"""Every list endpoint costs a fixed number of queries, whatever the number of rows it lists.

Each case builds one row, lists once (so the key's last-used time is written before counting),
counts the queries of a list of 1 row, builds up to 20 rows and counts again: the two counts
must be equal and under the endpoint's ceiling.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.factories import consent, record, subject

pytestmark = pytest.mark.django_db

MANY = 20


def _ok(response, status: int = 201) -> dict:
    assert response.status_code == status, response.content
    return response.json()


def submit(persona, *records) -> list[dict]:
    return _ok(persona.client.post("/api/v1/records", {"records": list(records)}, format="json"))["results"]


def grant(persona, n: int) -> str:
    return _ok(persona.client.post("/api/v1/consents", consent(n), format="json"))["id"]


def inquire(persona, n: int, consent_id: str) -> dict:
    body = {"subject": subject(n), "consent_id": consent_id, "purpose": "credit_application"}
    return _ok(persona.client.post("/api/v1/inquiries", body, format="json"), 200)


@dataclass
class Case:
    """`grow(count)` makes the listed rows number `count` (called with 1, then with MANY);
    `url()` is the list to read; `ceiling` is the most queries the list may take: the key, the
    list (and its parent, for history and errors), and the audited read (a savepoint, the
    event's INSERT, its release, inside the test's transaction)."""

    grow: Callable[[int], None]
    url: Callable[[], str]
    ceiling: int
    streamed: bool = False


def records_case(bank_a, bank_b) -> Case:
    made = [0]

    def grow(count: int) -> None:
        if count > made[0]:
            submit(bank_a, *(record(f"A-{i}", i) for i in range(made[0], count)))
        made[0] = count

    return Case(grow, lambda: "/api/v1/records", ceiling=5)


def history_case(bank_a, bank_b) -> Case:
    state = {"versions": 0, "id": None}

    def grow(count: int) -> None:
        for version in range(state["versions"], count):
            state["id"] = submit(bank_a, record("A-1", 1, days_past_due=10 + version))[0]["id"]
        state["versions"] = count

    return Case(grow, lambda: f"/api/v1/records/{state['id']}/history", ceiling=6)


def consents_case(bank_a, bank_b) -> Case:
    made = [0]

    def grow(count: int) -> None:
        for n in range(made[0], count):
            grant(bank_a, n)
        made[0] = count

    return Case(grow, lambda: "/api/v1/consents", ceiling=5)


def inquiries_case(bank_a, bank_b) -> Case:
    submit(bank_b, record("B-1", 1))
    consent_id = grant(bank_a, 1)
    made = [0]

    def grow(count: int) -> None:
        for _ in range(made[0], count):
            inquire(bank_a, 1, consent_id)
        made[0] = count

    return Case(grow, lambda: "/api/v1/inquiries", ceiling=5)


def disputes_case(bank_a, bank_b) -> Case:
    # bank_a furnished MANY records on one subject; bank_b disputes one line of its report at a time.
    submit(bank_a, *(record(f"A-{i}", 1) for i in range(MANY)))
    inquiry_id = inquire(bank_b, 1, grant(bank_b, 1))["id"]
    made = [0]

    def grow(count: int) -> None:
        for line in range(made[0], count):
            body = {"inquiry_id": inquiry_id, "line": line, "reason": "I repaid this loan in full, receipt 4711"}
            _ok(bank_b.client.post("/api/v1/disputes", body, format="json"))
        made[0] = count

    return Case(grow, lambda: "/api/v1/disputes", ceiling=5)


def _jsonl(*rows: dict) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def _upload(persona, body: bytes, django_capture_on_commit_callbacks) -> str:
    # The immediate task backend processes the upload when its transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        response = persona.client.generic("POST", "/api/v1/submissions", body, content_type="application/x-ndjson")
    return _ok(response, 202)["id"]


def submissions_case(bank_a, bank_b, django_capture_on_commit_callbacks) -> Case:
    made = [0]

    def grow(count: int) -> None:
        for i in range(made[0], count):
            _upload(bank_a, _jsonl(record(f"S-{i}", i)), django_capture_on_commit_callbacks)
        made[0] = count

    return Case(grow, lambda: "/api/v1/submissions", ceiling=5)


def submission_errors_case(bank_a, bank_b, django_capture_on_commit_callbacks) -> Case:
    state = {"id": None}

    def grow(count: int) -> None:
        # A new submission of `count` rejected rows (a negative days_past_due each).
        bad = [record(f"E-{i}", i, days_past_due=-1) for i in range(count)]
        state["id"] = _upload(bank_a, _jsonl(*bad), django_capture_on_commit_callbacks)

    return Case(grow, lambda: f"/api/v1/submissions/{state['id']}/errors", ceiling=6, streamed=True)


CASES = {
    "records": records_case,
    "record history": history_case,
    "consents": consents_case,
    "inquiries": inquiries_case,
    "disputes": disputes_case,
    "submissions": submissions_case,
    "submission errors": submission_errors_case,
}


def _listed(response, streamed: bool) -> int:
    assert response.status_code == 200, response.content if not streamed else response
    if streamed:
        return len(b"".join(response.streaming_content).splitlines())  # the queries run while streaming
    return len(response.json()["results"])


@pytest.mark.parametrize("name", CASES)
def test_a_list_costs_the_same_queries_for_1_row_as_for_20(
    name, bank_a, bank_b, settings, tmp_path, django_assert_max_num_queries, django_capture_on_commit_callbacks
):
    settings.EXCHANGE_SUBMISSIONS_DIR = tmp_path / "submissions"
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    build = CASES[name]
    extra = {"django_capture_on_commit_callbacks": django_capture_on_commit_callbacks} if "submission" in name else {}
    case = build(bank_a, bank_b, **extra)
    case.grow(1)
    assert _listed(bank_a.client.get(case.url()), case.streamed) == 1  # warm: the key's last use is written
    counts = []
    for count in (1, MANY):
        case.grow(count)
        with django_assert_max_num_queries(case.ceiling) as captured:
            assert _listed(bank_a.client.get(case.url()), case.streamed) == count
        counts.append(len(captured))
    assert counts[0] == counts[1], f"{name}: {counts[0]} queries for 1 row, {counts[1]} for {MANY}"
