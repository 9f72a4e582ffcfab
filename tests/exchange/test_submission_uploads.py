"""Bulk files as multipart/form-data: a `file` part, treated exactly like the raw body (same
limits, same duplicate detection, same audit), its format from the part's type or its name."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from audit.models import AuditEvent
from exchange.models import Record, Submission
from tests.conftest import make_persona
from tests.exchange.test_submissions import csv_file, csv_row, process, stored_files, upload
from tests.factories import record

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    settings.EXCHANGE_SUBMISSIONS_DIR = tmp_path / "submissions"
    return settings.EXCHANGE_SUBMISSIONS_DIR


def post_form(persona, data: dict):
    return persona.client.post("/api/v1/submissions", data, format="multipart")


def part(body: bytes, name: str = "loans.csv", content_type: str = "text/csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, body, content_type=content_type)


def test_a_multipart_csv_is_queued_and_processed_like_a_raw_one(bank_a):
    response = post_form(bank_a, {"file": part(csv_file(csv_row("L-1", 1), csv_row("L-2", 2, status="paid")))})
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "queued" and response.json()["duplicate"] is False
    assert response["Location"] == f"/api/v1/submissions/{response.json()['id']}"
    submission = process(response.json()["id"])
    assert (submission.format, submission.accepted, submission.rejected) == ("csv", 1, 1)
    assert AuditEvent.objects.filter(action="submission.create", outcome="ok", member_code="BANKA").count() == 1


def test_the_format_comes_from_the_parts_type_or_else_its_name(bank_a):
    lines = (json.dumps(record("J-1", 1)) + "\n").encode()
    by_type = post_form(bank_a, {"file": part(lines, "upload.bin", "application/x-ndjson")})
    assert by_type.status_code == 202, by_type.content
    by_name = post_form(bank_a, {"file": part(lines + b"\n", "loans.NDJSON", "application/octet-stream")})
    assert by_name.status_code == 202, by_name.content
    assert [process(r.json()["id"]).format for r in (by_type, by_name)] == ["jsonl", "jsonl"]
    assert Record.objects.filter(member=bank_a.member).count() == 1


def test_the_same_file_raw_then_as_a_form_is_one_submission(bank_a):
    body = csv_file(csv_row("L-1", 1))
    raw = upload(bank_a, body)
    form = post_form(bank_a, {"file": part(body)})
    assert (raw.status_code, form.status_code) == (202, 202)
    assert form.json() == {**raw.json(), "duplicate": True}
    assert Submission.objects.count() == 1


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({}, "file", "is required"),
        ({"file": "not a file"}, "file", "must be a file part"),
        ({"file": [part(b"a\n"), part(b"b\n")]}, "file", "must be one file part, not several"),
        ({"file": part(b"a\n"), "files": "BANKB"}, None, "has 1 unknown field (did you mean file?)"),
    ],
)
def test_a_form_without_exactly_one_file_part_is_422(bank_a, data, field, message):
    response = post_form(bank_a, data)
    assert response.status_code == 422, response.content
    assert response.json()["errors"] == [{"index": None, "field": field, "message": message}]
    assert Submission.objects.count() == 0


def test_a_part_of_another_type_or_charset_is_415(bank_a):
    for file in (part(b"a,b\n", "loans.txt", "text/plain"), part(b"a,b\n", "loans.csv", "text/csv; charset=gbk")):
        response = post_form(bank_a, {"file": file})
        assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")
    assert Submission.objects.count() == 0


def test_an_empty_or_binary_part_is_400_and_audited_as_the_raw_body_is(bank_a, _storage):
    for body in (b"\x89PNG\r\n\x1a\n\x00\x00", b""):
        response = post_form(bank_a, {"file": part(body)})
        assert (response.status_code, response.json()["code"]) == (400, "malformed_request"), response.content
    assert Submission.objects.count() == 0
    assert stored_files(_storage) == []
    assert AuditEvent.objects.filter(action="submission.create", outcome="denied").count() == 2


def test_a_form_over_the_upload_limit_is_413(bank_a, settings):
    settings.EXCHANGE_MAX_UPLOAD_BYTES = 2048
    response = post_form(bank_a, {"file": part(csv_file(*(csv_row(f"L-{i}", i) for i in range(30))))})
    assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")
    assert Submission.objects.count() == 0


def test_a_large_part_reaches_storage_through_a_temporary_file_not_memory(bank_a, settings, monkeypatch):
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 1024
    completed = []
    file_complete = TemporaryFileUploadHandler.file_complete

    def spy(self, file_size):
        completed.append(file_size)
        return file_complete(self, file_size)

    monkeypatch.setattr(TemporaryFileUploadHandler, "file_complete", spy)
    body = csv_file(*(csv_row(f"L-{i}", i) for i in range(30)))
    response = post_form(bank_a, {"file": part(body)})
    assert response.status_code == 202, response.content
    assert completed == [len(body)]
    assert Submission.objects.get().size == len(body)


def test_a_form_needs_the_submit_scope(db):
    querier = make_persona("QONLY", "Query only", scopes=["query"])
    assert post_form(querier, {"file": part(csv_file(csv_row("L-2", 2)))}).status_code == 403
    assert Submission.objects.count() == 0
