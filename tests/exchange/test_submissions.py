"""Bulk submissions: streamed uploads, chunked processing, errors, resumption, duplicates, isolation."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from audit.models import AuditEvent
from exchange.bulk import worker
from exchange.models import Record, RecordVersion, Submission, SubmissionError
from tests.conftest import make_persona
from tests.factories import record, ric

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
HEADER = (
    "member_reference,id_type,id_number,name,country,product,currency,principal,amount_overdue,"
    "days_past_due,status,opened_on,delinquent_since,as_of,notice_sent_on,settled_on,payment_history"
)


def csv_row(ref: str, n: int = 1, **overrides) -> str:
    values = {
        "member_reference": ref,
        "id_type": "CN_RIC",
        "id_number": ric(n),
        "name": "Zhang San",
        "country": "",
        "product": "consumer_loan",
        "currency": "CNY",
        "principal": "10000.00",
        "amount_overdue": "1500.50",
        "days_past_due": "45",
        "status": "delinquent",
        "opened_on": "2025-01-10",
        "delinquent_since": "2026-08-01",
        "as_of": "2026-09-15",
        "notice_sent_on": "2026-08-20",
        "settled_on": "",
        "payment_history": "NNNN12",
    }
    values.update(overrides)
    return ",".join(values[column] for column in HEADER.split(","))


def csv_file(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def upload(persona, body: bytes, content_type: str = "text/csv", **extra):
    return persona.client.generic("POST", "/api/v1/submissions", body, content_type=content_type, **extra)


def process(submission_id) -> Submission:
    submission = worker.submission_process(submission_id)
    assert submission is not None
    return submission


def submit_and_process(persona, body: bytes, content_type: str = "text/csv") -> Submission:
    response = upload(persona, body, content_type)
    assert response.status_code == 202, response.content
    return process(response.json()["id"])


def errors_of(persona, submission_id) -> list[dict]:
    response = persona.client.get(f"/api/v1/submissions/{submission_id}/errors")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/x-ndjson")
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    settings.EXCHANGE_SUBMISSIONS_DIR = tmp_path / "submissions"
    return settings.EXCHANGE_SUBMISSIONS_DIR


def stored_files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir()) if directory.exists() else []


def test_a_csv_upload_is_queued_then_valid_rows_stored_and_invalid_rows_reported(
    bank_a, _storage, django_capture_on_commit_callbacks
):
    body = csv_file(
        csv_row("L-1", 1),
        csv_row("L-2", 2, amount_overdue="-5", status="paid"),
        csv_row("L-3", 3, id_number=ric(3)[:-1] + ("0" if ric(3)[-1] != "0" else "1")),
        csv_row("L-4", 4, status="settled", settled_on="2026-09-01"),
    )
    response = upload(bank_a, body)
    assert response.status_code == 202, response.content
    created = response.json()
    assert created["status"] == "queued"
    assert len(stored_files(_storage)) == 1

    with django_capture_on_commit_callbacks(execute=True):
        submission = process(created["id"])
    detail = bank_a.client.get(f"/api/v1/submissions/{created['id']}").json()
    assert {k: detail[k] for k in ("status", "total", "accepted", "rejected", "processed", "error")} == {
        "status": "completed",
        "total": 4,
        "accepted": 2,
        "rejected": 2,
        "processed": 4,
        "error": None,
    }
    assert detail["finished_at"] is not None
    assert {(e["line"], e["field"]) for e in errors_of(bank_a, submission.pk)} == {
        (3, "amount_overdue"),
        (3, "status"),
        (4, "subject.id_number"),
    }
    stored = Record.objects.get(member=bank_a.member, version=1, status="settled")
    assert (stored.member_reference, stored.name) == ("L-4", "Zhang San")
    assert Record.objects.filter(member=bank_a.member).count() == 2
    assert RecordVersion.objects.filter(submission_id=submission.pk).count() == 2
    # The processed file held raw identifiers: it is gone.
    assert stored_files(_storage) == []


def test_errors_and_audit_never_carry_an_identifier(bank_a):
    bad = ric(7)[:-1] + ("0" if ric(7)[-1] != "0" else "1")
    submission = submit_and_process(bank_a, csv_file(csv_row("L-1", 1), csv_row("SECRET-REF", 7, id_number=bad)))
    errors = b"".join(bank_a.client.get(f"/api/v1/submissions/{submission.pk}/errors").streaming_content).decode()
    assert bad not in errors and "SECRET-REF" not in errors
    events = list(AuditEvent.objects.values_list("action", "details"))
    assert bad not in json.dumps(events) and "SECRET-REF" not in json.dumps(events)
    actions = [action for action, _ in events]
    assert actions.count("record.submit") == 1
    assert actions.count("submission.create") == 1
    complete = AuditEvent.objects.get(action="submission.complete", object_id=str(submission.pk))
    assert complete.details == {"total": 2, "accepted": 1, "rejected": 1, "status": "completed"}


def test_json_lines_go_through_the_same_validation(bank_a):
    lines = [
        json.dumps(record("J-1", 1)),
        "",
        "{not json",
        json.dumps(["not", "an", "object"]),
        json.dumps(record("J-2", 2, principal=10.5)),
        json.dumps(record("J-3", 3, unexpected=1)),
    ]
    submission = submit_and_process(bank_a, ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
    assert (submission.status, submission.total, submission.accepted, submission.rejected) == ("completed", 5, 1, 4)
    assert [(e["line"], e["field"]) for e in errors_of(bank_a, submission.pk)] == [
        (3, None),
        (4, None),
        (5, "principal"),
        (6, None),
    ]


def test_a_reference_repeated_in_a_file_becomes_a_newer_version(bank_a):
    submission = submit_and_process(
        bank_a, csv_file(csv_row("L-1", 1), csv_row("L-1", 1, days_past_due="75"), csv_row("L-2", 2))
    )
    assert (submission.accepted, submission.rejected) == (3, 0)
    current = Record.objects.get(member=bank_a.member, version=2)
    assert (current.member_reference, current.days_past_due) == ("L-1", 75)
    assert list(current.versions.order_by("version").values_list("version", "days_past_due")) == [(1, 45), (2, 75)]
    # and a later file makes version 3 of it, through the API's history too
    later = submit_and_process(bank_a, csv_file(csv_row("L-1", 1, days_past_due="90")))
    assert later.accepted == 1
    history = bank_a.client.get(f"/api/v1/records/{current.pk}/history").json()["results"]
    assert [(v["version"], v["days_past_due"]) for v in history] == [(1, 45), (2, 75), (3, 90)]


def test_the_same_file_twice_answers_the_first_submission_and_stores_nothing_new(bank_a, bank_b):
    body = csv_file(csv_row("L-1", 1), csv_row("L-2", 2))
    first = upload(bank_a, body).json()
    process(first["id"])
    again = upload(bank_a, body)
    assert again.status_code == 202
    assert again.json() == {"id": first["id"], "status": "completed", "duplicate": True}
    assert worker.submission_process(first["id"]) is None  # finished: nothing to do
    assert Record.objects.count() == 2 and RecordVersion.objects.count() == 2
    # Another member's identical file is its own submission.
    other = upload(bank_b, body).json()
    assert other["id"] != first["id"] and other["duplicate"] is False


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"member_reference,product\nL-1,bnpl\n", "lacks required columns"),
        (csv_file().replace(b"principal", b"principle"), "is not a record field"),
        (("110105198503140011," + HEADER + "\n").encode(), "is not a record field"),
        (csv_file().replace(b"status", b"product"), "repeats an earlier column"),
        (b"\n\n", "no header row"),
    ],
)
def test_a_wrong_header_fails_the_file_without_quoting_it(bank_a, body, error):
    submission = submit_and_process(bank_a, body)
    detail = bank_a.client.get(f"/api/v1/submissions/{submission.pk}").json()
    assert detail["status"] == "failed"
    assert error in detail["error"]
    assert "110105198503140011" not in detail["error"]
    assert Record.objects.count() == 0
    assert AuditEvent.objects.filter(action="submission.fail", object_id=str(submission.pk)).exists()


def test_a_file_with_only_a_header_completes_with_nothing(bank_a):
    submission = submit_and_process(bank_a, csv_file())
    assert (submission.status, submission.total, submission.accepted, submission.rejected) == ("completed", 0, 0, 0)


def test_rows_cut_off_or_of_the_wrong_width_are_reported_by_line(bank_a):
    full = csv_row("L-3", 3)
    body = csv_file(csv_row("L-1", 1), csv_row("L-2", 2) + ",extra", full[: len(full) // 2]).rstrip(b"\n")
    body += b'\nL-9,"unterminated'
    submission = submit_and_process(bank_a, body)
    assert (submission.accepted, submission.rejected) == (1, 3)
    errors = errors_of(bank_a, submission.pk)
    assert [(e["line"], e["field"]) for e in errors] == [(3, None), (4, None), (5, None)]
    assert errors[0]["message"] == "has 18 columns; the header row has 17"
    assert "columns" in errors[1]["message"]
    assert errors[2]["message"].startswith("is not valid CSV")


def test_an_empty_or_binary_body_is_refused_and_not_stored(bank_a, _storage):
    for body in (b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "é".encode("latin-1") * 10):
        response = upload(bank_a, body)
        assert response.status_code == 400, body
        assert response.json()["code"] == "malformed_request"
    assert stored_files(_storage) == []
    assert Submission.objects.count() == 0


def test_a_line_that_is_not_utf8_is_a_row_error(bank_a):
    body = (
        csv_file(csv_row("L-1", 1))
        + ("x" * 70000 + "\n").encode()
        + csv_row("L-2", 2, name="Jos\xe9").encode("latin-1")
    )
    submission = submit_and_process(bank_a, body + b"\n")
    assert (submission.accepted, submission.rejected) == (1, 2)
    assert [e["message"] for e in errors_of(bank_a, submission.pk)][-1] == "is not valid UTF-8 text"


def test_other_media_types_are_unsupported(bank_a):
    response = upload(bank_a, b'{"records": []}', "application/json")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"
    assert upload(bank_a, csv_file(), "text/csv; charset=gbk").status_code == 415


def test_a_body_over_the_limit_is_refused_before_it_is_stored(bank_a, settings, _storage):
    settings.EXCHANGE_MAX_UPLOAD_BYTES = 2048
    body = csv_file(*(csv_row(f"L-{i}", i) for i in range(30)))
    response = upload(bank_a, body)
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    # Chunked, without Content-Length: the limit holds while streaming, the partial file goes.
    response = upload(
        bank_a, b"", CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": io.BytesIO(body)}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert stored_files(_storage) == []
    assert Submission.objects.count() == 0
    assert AuditEvent.objects.filter(action="submission.create", outcome="denied").count() == 1


def test_a_chunked_upload_within_the_limit_is_streamed_to_storage(bank_a):
    body = csv_file(csv_row("L-1", 1))
    response = upload(
        bank_a, b"", CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input": io.BytesIO(body)}
    )
    assert response.status_code == 202, response.content
    assert process(response.json()["id"]).accepted == 1


def test_another_members_submission_is_not_found_and_lists_are_own(bank_a, bank_b):
    submission = submit_and_process(bank_a, csv_file(csv_row("L-1", 1, amount_overdue="-1")))
    for path in (f"/api/v1/submissions/{submission.pk}", f"/api/v1/submissions/{submission.pk}/errors"):
        response = bank_b.client.get(path)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"
    assert bank_b.client.get("/api/v1/submissions/not-a-uuid").status_code == 404
    assert bank_b.client.get("/api/v1/submissions").json() == {"results": [], "next": None}
    listed = bank_a.client.get("/api/v1/submissions").json()
    assert [s["id"] for s in listed["results"]] == [str(submission.pk)]
    assert AuditEvent.objects.filter(action="submission.read", outcome="denied", member_code="BANKB").exists()
    assert AuditEvent.objects.filter(action="submission.list", member_code="BANKA").exists()


def test_submissions_need_the_submit_scope(db):
    querier = make_persona("QONLY", "Query only", scopes=["query"])
    assert upload(querier, csv_file(csv_row("L-1", 1))).status_code == 403
    assert querier.client.get("/api/v1/submissions").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_the_task_queue_runs_an_upload_through_run_worker(bank_a):
    # Committed for real: the upload enqueues its task after commit, the worker runs it.
    response = upload(bank_a, csv_file(csv_row("L-1", 1), csv_row("L-2", 2)))
    assert Submission.objects.get(pk=response.json()["id"]).status == "queued"
    call_command("run_worker", "--once")
    detail = bank_a.client.get(f"/api/v1/submissions/{response.json()['id']}").json()
    assert (detail["status"], detail["accepted"]) == ("completed", 2)


def test_the_immediate_backend_is_a_settings_swap(bank_a, settings, django_capture_on_commit_callbacks):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    with django_capture_on_commit_callbacks(execute=True):
        response = upload(bank_a, csv_file(csv_row("L-1", 1)))
    assert Submission.objects.get(pk=response.json()["id"]).status == "completed"


def test_a_lease_held_by_a_live_worker_is_respected_and_a_lapsed_one_taken_over(bank_a):
    submission_id = upload(bank_a, csv_file(csv_row("L-1", 1))).json()["id"]
    Submission.objects.filter(pk=submission_id).update(
        status="processing", lease_owner=f"elsewhere:{os.getpid()}:x", lease_expires_at="2999-01-01T00:00:00Z"
    )
    assert worker.submission_process(submission_id) is None
    assert Record.objects.count() == 0
    Submission.objects.filter(pk=submission_id).update(lease_expires_at="2000-01-01T00:00:00Z")
    assert worker.submissions_recover() == 1
    assert process(submission_id).accepted == 1


def test_import_records_reports_counts_and_writes_the_errors(bank_a, tmp_path):
    path = tmp_path / "file.csv"
    path.write_bytes(csv_file(csv_row("L-1", 1), csv_row("L-2", 2, product="yacht")))
    out = io.StringIO()
    call_command("import_records", "BANKA", str(path), "--no-progress", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert (result["status"], result["total"], result["accepted"], result["rejected"]) == ("completed", 2, 1, 1)
    assert [json.loads(line)["field"] for line in Path(result["errors"]).read_text().splitlines()] == ["product"]
    assert path.exists()  # an operator's file is never deleted


# --- a worker really killed in the middle -------------------------------------------------------


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def _kill_file(path: Path) -> tuple[int, int]:
    rows = [csv_row(f"K-{i:04d}", i % 900) if i % 50 != 7 else csv_row(f"K-{i:04d}", i, status="x") for i in range(400)]
    path.write_bytes(csv_file(*rows))
    return 392, 8


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_file_resumes_and_stores_every_row_exactly_once(tmp_path):
    path = tmp_path / "big.csv"
    accepted, rejected = _kill_file(path)
    env = {"EXCHANGE_BULK_CHUNK_ROWS": "50", "EXCHANGE_SUBMISSIONS_DIR": str(tmp_path / "store")}
    if connection.vendor == "postgresql":
        make_persona("BANKA", "Bank A")
        db = connection.settings_dict
        env["DATABASE_URL"] = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    else:
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'worker.db'}"
        assert _run(["migrate", "--noinput", "-v0"], env).returncode == 0
        assert _run(["create_member", "BANKA", "--name", "Bank A"], env).returncode == 0

    killed = _run(
        ["import_records", "BANKA", str(path), "--no-progress"], {**env, "EXCHANGE_BULK_KILL_AFTER_CHUNKS": "3"}
    )
    assert killed.returncode == -9, killed.stderr
    counts = _counts(env)
    # Three chunks committed; the fourth was written but never committed.
    assert counts["progress"][:2] == ("processing", 150)
    assert counts["records"] == counts["versions"] == counts["events"] == counts["progress"][2]

    # Through the worker this time: it finds the dead worker's lease and resumes the file.
    resumed = _run(["import_records", "BANKA", str(path), "--no-progress"], env)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert (result["status"], result["total"], result["accepted"], result["rejected"]) == (
        "completed",
        400,
        accepted,
        rejected,
    )
    counts = _counts(env)
    assert counts["records"] == counts["versions"] == counts["events"] == accepted
    assert counts["distinct_references"] == accepted
    assert counts["errors"] == rejected


def _counts(env: dict) -> dict:
    if env["DATABASE_URL"].startswith("sqlite"):
        db = sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///"))
        one = lambda sql: db.execute(sql).fetchone()  # noqa: E731
        result = {
            "records": one("SELECT count(*) FROM exchange_record")[0],
            "distinct_references": one("SELECT count(DISTINCT reference_index) FROM exchange_record")[0],
            "versions": one("SELECT count(*) FROM exchange_recordversion")[0],
            "events": one("SELECT count(*) FROM audit_auditevent WHERE action = 'record.submit'")[0],
            "errors": one("SELECT count(*) FROM exchange_submissionerror")[0],
            "progress": one("SELECT status, next_line - 1, accepted FROM exchange_submission"),
        }
        db.close()
        return result
    submission = Submission.objects.get()
    return {
        "records": Record.objects.count(),
        "distinct_references": Record.objects.values("reference_index").distinct().count(),
        "versions": RecordVersion.objects.count(),
        "events": AuditEvent.objects.filter(action="record.submit").count(),
        "errors": SubmissionError.objects.count(),
        "progress": (submission.status, submission.next_line - 1, submission.accepted),
    }
