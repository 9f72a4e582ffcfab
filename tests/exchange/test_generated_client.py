"""A member bank that will not hand-write a client generates one from `/api/v1/schema` with
openapi-python-client (the command docs/integration.md gives) and drives a scenario through it:
records, a paged list, a consent, an inquiry, a file upload, and an error read as a Problem."""

from __future__ import annotations

import importlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from exchange.bulk import worker
from tests.factories import consent, record, subject

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

PACKAGE = "exchange_api_client"


@pytest.fixture
def wsgi_app():
    """Django's WSGI app, called in this thread inside the test's transaction (as in test_fuzz)."""
    handler = WSGIHandler()

    def app(environ, start_response):
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        return handler(environ, start_response)

    try:
        yield app
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def generated(client, tmp_path, monkeypatch):
    """The client package generated from the schema this server publishes, importable."""
    schema = client.get("/api/v1/schema?format=json")
    assert schema.status_code == 200
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(schema.json()))
    generator = Path(sys.executable).parent / "openapi-python-client"
    result = subprocess.run(
        [str(generator), "generate", "--path", str(path), "--output-path", str(tmp_path / PACKAGE), "--meta", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{generator.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "warning" not in output.lower(), output  # every operation generated, nothing skipped
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module(PACKAGE)
    for name in [name for name in sys.modules if name == PACKAGE or name.startswith(PACKAGE + ".")]:
        del sys.modules[name]


def test_a_client_generated_from_the_schema_drives_every_kind_of_call(generated, wsgi_app, bank_a, settings, tmp_path):
    settings.EXCHANGE_SUBMISSIONS_DIR = tmp_path / "submissions"
    models = importlib.import_module(f"{PACKAGE}.models")
    types = importlib.import_module(f"{PACKAGE}.types")

    def call(operation: str, **kwargs):
        """`records_create` is PACKAGE.api.records.records_create.sync (one module per operation)."""
        resource = operation.split("_", 1)[0]
        return importlib.import_module(f"{PACKAGE}.api.{resource}.{operation}").sync(client=client, **kwargs)

    client = generated.AuthenticatedClient(
        base_url="http://testserver", token=bank_a.key, httpx_args={"transport": httpx.WSGITransport(app=wsgi_app)}
    )

    # Records: a batch, typed both ways.
    batch = models.RecordBatchInputRequest.from_dict({"records": [record(f"GEN-{n}", n) for n in range(3)]})
    created = call("records_create", body=batch, idempotency_key="gen-batch-1")
    assert isinstance(created, models.RecordBatchResult)
    assert [result.member_reference for result in created.results] == ["GEN-0", "GEN-1", "GEN-2"]

    # A paged list: page_size, then the cursor of the `next` link.
    first = call("records_list", page_size=2)
    assert isinstance(first, models.RecordPage) and len(first.results) == 2
    assert first.results[0].status is models.RecordStatusEnum.DELINQUENT
    cursor = parse_qs(urlsplit(first.next_).query)["cursor"][0]
    rest = call("records_list", page_size=2, cursor=cursor)
    assert len(rest.results) == 1 and rest.next_ is None
    assert {r.member_reference for r in first.results + rest.results} == {"GEN-0", "GEN-1", "GEN-2"}

    # A consent, then an inquiry under it.
    granted = call("consents_create", body=models.ConsentInputRequest.from_dict(consent(1)))
    assert isinstance(granted, models.ConsentOutput)
    assert granted.status is models.ConsentStatusEnum.ACTIVE
    inquiry = call(
        "inquiries_create",
        body=models.InquiryInputRequest(
            subject=models.RawSubjectRequest(id_type=models.IdTypeEnum.CN_RIC, id_number=subject(1)["id_number"]),
            consent_id=granted.id,
            purpose=models.PurposeEnum.CREDIT_APPLICATION,
        ),
    )
    assert isinstance(inquiry, models.InquiryOutput)
    assert inquiry.subject_found and inquiry.summary.open_delinquencies == 1
    assert inquiry.records[0].amount_overdue == "1500.50"

    # A file upload (multipart), processed, and its rejected rows as JSON.
    csv = (
        "member_reference,id_type,id_number,product,principal,amount_overdue,days_past_due,status,"
        "opened_on,delinquent_since,as_of,notice_sent_on\n"
        f"GEN-BULK-1,CN_RIC,{subject(5)['id_number']},consumer_loan,100.00,10.00,40,delinquent,"
        "2025-01-10,2026-08-01,2026-09-15,2026-08-20\n"
        "GEN-BULK-2,CN_RIC,bad,consumer_loan,1,1,1,delinquent,2025-01-10,2026-08-01,2026-09-15,2026-08-20\n"
    ).encode()
    upload = models.SubmissionUploadRequest(file=types.File(payload=io.BytesIO(csv), file_name="loans.csv"))
    queued = call("submissions_create", body=upload)
    assert isinstance(queued, models.SubmissionCreated), queued
    assert queued.status is models.SubmissionStatusEnum.QUEUED and not queued.duplicate
    worker.submission_process(str(queued.id))
    done = call("submissions_retrieve", submission_id=queued.id)
    assert (done.status, done.accepted, done.rejected) == (models.SubmissionStatusEnum.COMPLETED, 1, 1)
    rows = call("submissions_errors", submission_id=queued.id, format_=models.SubmissionsErrorsFormat.JSON)
    assert isinstance(rows, models.RowErrors)
    assert [(row.line, row.field) for row in rows.results] == [(3, "subject.id_number")]

    # An error, parsed as the Problem it is (a rule beyond the schema: dates in order).
    late = record("GEN-BAD", 1, delinquent_since="2024-01-01")
    refused = call("records_create", body=models.RecordBatchInputRequest.from_dict({"records": [late]}))
    assert isinstance(refused, models.Problem)
    assert (refused.status, refused.code) == (422, "validation_failed")
    assert [(error.index, error.field) for error in refused.errors] == [(0, "delinquent_since")]
