"""cx_client.api without a server: each call's request and answer through a fake transport, and
http_transport against a small local HTTP server (streamed file bodies, JSON Lines answers)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cx_client import api
from cx_client.api import ApiError, Exchange, Request, TransportError, decode_answer, http_transport
from cx_client.blinding import BadAnswer, KeyPin
from cx_client.identifiers import IdentifierError

from tests.client.fakes import FakeExchange

RIC = "11010519491231002X"


@pytest.fixture
def fake():
    return FakeExchange()


def test_submit_records_sends_the_batch_with_its_idempotency_key(fake):
    results = [{"index": 0, "id": "r1", "member_reference": "L1", "version": 1, "created": True}]
    fake.routes["POST", "records"] = (201, {"results": results})
    records = [{"member_reference": "L1", "subject": {"id_type": "CN_RIC", "blind": "x"}}]
    assert Exchange(fake).submit_records(records, idempotency_key="batch-1") == results
    [sent] = fake.requests
    assert sent.json == {"records": records} and dict(sent.headers) == {"Idempotency-Key": "batch-1"}
    Exchange(fake).submit_records(records)
    assert dict(fake.requests[-1].headers) == {}


def test_a_refused_batch_raises_api_error_with_the_problem(fake):
    problem = {"code": "validation_failed", "errors": [{"index": 0, "field": "principal", "message": "is required"}]}
    fake.routes["POST", "records"] = (422, problem)
    with pytest.raises(ApiError) as caught:
        Exchange(fake).submit_records([{}])
    assert caught.value.status == 422 and caught.value.problem["errors"][0]["field"] == "principal"
    fake.routes["POST", "records"] = (201, {"no": "results"})
    with pytest.raises(BadAnswer):
        Exchange(fake).submit_records([{}])


def test_upload_streams_the_file_in_blocks_with_progress(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(api, "UPLOAD_BLOCK", 1000)
    body = b"".join(b"line %d\n" % n for n in range(500))
    assert len(body) == 4390  # five blocks
    (tmp_path / "f.csv").write_bytes(body)
    fake.routes["POST", "submissions"] = (202, {"id": "s1", "status": "queued", "duplicate": False})
    progress = []
    answer = Exchange(fake).upload(tmp_path / "f.csv", "text/csv", on_progress=lambda s, n: progress.append((s, n)))
    assert answer == {"id": "s1", "status": "queued", "duplicate": False}
    [sent] = fake.requests
    assert sent.file.content_type == "text/csv" and sent.json is None
    assert fake.uploads == [body] and fake.block_sizes == [1000, 1000, 1000, 1000, 390]
    assert progress == [(1000, 4390), (2000, 4390), (3000, 4390), (4000, 4390), (4390, 4390)]


def test_upload_refused_or_answered_without_an_id(fake, tmp_path):
    (tmp_path / "f.csv").write_bytes(b"x\n")
    fake.routes["POST", "submissions"] = (413, {"code": "payload_too_large", "detail": "split it"})
    with pytest.raises(ApiError, match="payload_too_large"):
        Exchange(fake).upload(tmp_path / "f.csv", "text/csv")
    fake.routes["POST", "submissions"] = (202, {"status": "queued"})
    with pytest.raises(BadAnswer):
        Exchange(fake).upload(tmp_path / "f.csv", "text/csv")


def test_submission_status_and_its_errors_as_json_lines(fake):
    fake.routes["GET", "submissions/s1"] = (200, {"id": "s1", "status": "completed", "rejected": 1})
    rows = [{"line": 4, "field": "subject.id_number", "message": "the check character is wrong"}]
    fake.routes["GET", "submissions/s1/errors"] = (200, rows)
    exchange = Exchange(fake)
    assert exchange.submission("s1")["status"] == "completed"
    assert exchange.submission_errors("s1") == rows
    assert fake.requests[-1].accept == "application/x-ndjson" and fake.requests[0].accept == "application/json"
    fake.routes["GET", "submissions/s1/errors"] = (200, {"results": rows})  # the JSON form
    assert exchange.submission_errors("s1") == rows
    fake.routes["GET", "submissions/s1/errors"] = (200, {"other": 1})
    with pytest.raises(BadAnswer):
        exchange.submission_errors("s1")
    with pytest.raises(ApiError) as caught:
        exchange.submission("s2")
    assert caught.value.status == 404


def test_register_consent_and_inquire_send_what_the_api_takes(fake):
    subject = {"id_type": "CN_RIC", "blind": "b"}
    fake.routes["POST", "consents"] = (201, {"id": "c1", "status": "active"})
    fake.routes["POST", "inquiries"] = (200, {"id": "i1", "subject_found": False})
    exchange = Exchange(fake)
    consent = exchange.register_consent(
        subject,
        purpose="credit_application",
        channel="app",
        granted_at="2026-01-01T00:00:00+00:00",
        expires_at="2026-12-31T00:00:00+00:00",
        evidence_sha256="ab" * 32,
        idempotency_key="k1",
    )
    assert consent == {"id": "c1", "status": "active"}
    assert fake.requests[0].json == {
        "subject": subject,
        "purpose": "credit_application",
        "channel": "app",
        "granted_at": "2026-01-01T00:00:00+00:00",
        "expires_at": "2026-12-31T00:00:00+00:00",
        "evidence_sha256": "ab" * 32,
    }
    assert dict(fake.requests[0].headers) == {"Idempotency-Key": "k1"}
    assert exchange.inquire(subject, "c1", "credit_application")["id"] == "i1"
    assert fake.requests[1].json == {"subject": subject, "consent_id": "c1", "purpose": "credit_application"}
    fake.routes["POST", "inquiries"] = (403, {"code": "consent_required", "detail": "register one first"})
    with pytest.raises(ApiError, match="consent_required"):
        exchange.inquire(subject, "c1", "credit_application")


def test_blind_subject_is_the_exchanges_value_and_an_invalid_id_sends_nothing(fake, tmp_path):
    exchange = Exchange(fake)
    key = exchange.trusted_key(KeyPin(tmp_path / "pin.json"))
    assert exchange.blind_subject("CN_RIC", "110105 19491231 002x", None, key) == {
        "id_type": "CN_RIC",
        "blind": fake.blind("CN_RIC", RIC),
    }
    assert exchange.blind_subject("PASSPORT", "e1234567", "de", key) == {
        "id_type": "PASSPORT",
        "blind": fake.blind("PASSPORT", "E1234567", "DE"),
        "country": "DE",
    }
    sent = len(fake.requests)
    with pytest.raises(IdentifierError):
        exchange.blind_subject("CN_RIC", "110105194912310021", None, key)
    assert len(fake.requests) == sent


def test_decode_answer():
    assert decode_answer(200, "application/x-ndjson", b'{"line": 2}\n\n{"line": 3}\n') == [{"line": 2}, {"line": 3}]
    assert decode_answer(200, "application/json", b'{"a": 1}') == {"a": 1}
    assert decode_answer(204, "application/json", b"") == {}
    # a problem is one JSON object whatever the type it is labelled with
    assert decode_answer(404, "application/x-ndjson", b'{"code": "not_found"}') == {"code": "not_found"}
    assert "not JSON" in decode_answer(502, "text/html", b"<html>bad gateway</html>")["detail"]
    with pytest.raises(BadAnswer):
        decode_answer(200, "text/html", b"<html>")


class _Handler(BaseHTTPRequestHandler):
    seen: list = []

    def log_message(self, *args):
        pass

    def _answer(self, status, content_type, body: bytes):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.seen.append((self.command, self.path, dict(self.headers), b""))
        if self.path.endswith("/errors"):
            self._answer(200, "application/x-ndjson; charset=utf-8", b'{"line": 2, "field": "x", "message": "m"}\n')
        else:
            self._answer(404, "application/problem+json", b'{"code": "not_found", "detail": "No such object."}')

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.command, self.path, dict(self.headers), body))
        self._answer(202, "application/json", b'{"id": "s1", "status": "queued", "duplicate": false}')


@pytest.fixture
def http_server():
    _Handler.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Handler.seen
    server.shutdown()
    server.server_close()


def test_http_transport_streams_a_file_and_reads_json_lines(http_server, tmp_path, monkeypatch):
    url, seen = http_server
    monkeypatch.setattr(api, "UPLOAD_BLOCK", 4096)
    body = b"id_type,blind\n" + b"CN_RIC,abc\n" * 5000
    (tmp_path / "f.csv").write_bytes(body)
    exchange = Exchange(http_transport(url, "cx_key"))
    progress = []
    answer = exchange.upload(tmp_path / "f.csv", "text/csv", on_progress=lambda s, n: progress.append(s))
    assert answer["id"] == "s1"
    method, path, headers, received = seen[0]
    assert (method, path, received) == ("POST", "/api/v1/submissions", body)
    assert headers["Content-Type"] == "text/csv" and headers["Content-Length"] == str(len(body))
    assert headers["Authorization"] == "Bearer cx_key"
    assert len(progress) == -(-len(body) // 4096) and progress[-1] == len(body)

    assert exchange.submission_errors("s1") == [{"line": 2, "field": "x", "message": "m"}]
    assert seen[1][2]["Accept"] == "application/x-ndjson"
    with pytest.raises(ApiError) as caught:
        exchange.submission("nope")
    assert caught.value.status == 404 and caught.value.problem["code"] == "not_found"

    keyed = Request("POST", "records", json={"records": []}, headers={"Idempotency-Key": "i"})
    status, _answer = http_transport(url, "k")(keyed)
    assert status == 202 and json.loads(seen[-1][3]) == {"records": []} and seen[-1][2]["Idempotency-Key"] == "i"


def test_an_unreachable_exchange_raises_transport_error():
    with pytest.raises(TransportError, match="GET oprf/key"):
        Exchange(http_transport("http://127.0.0.1:9", "k", timeout=2)).oprf_key()
