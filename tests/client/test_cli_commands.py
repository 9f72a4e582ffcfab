"""`cx upload`, `submission`, `errors`, `consent` and `inquire` against a fake exchange: what is
sent (never a raw ID unless --raw), what is printed, and the exit status of each failure.
The `fake` fixture (tests/client/conftest.py) is that exchange, the cx command's transport."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from datetime import datetime, timedelta

import pytest
from cx_client import cli
from cx_client.blinding import KeyPin, PinnedKey

from tests.client.fakes import SUBMISSION, FakeExchange

RIC = "11010519491231002X"
BAD_RIC = "110105194912310021"  # wrong check character
BLIND = base64.b64encode(bytes(range(64))).decode()  # a well-formed blind value (88 characters)
CONSENT = "1ec2e1c8-6e66-4a6d-89a0-ef025e71491f"
HEADER = ["member_reference", "id_type", "id_number", "name", "country", "product", "principal"]


def run(capsys, *argv):
    """(exit status, stdout, stderr) of one cx command."""
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def write_csv(path, rows, header=HEADER):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def pin_another_key(tmp_path):
    KeyPin(tmp_path / "pin.json").save(PinnedKey("oold", FakeExchange(b"o" * 32).pair.public))


# --- cx upload -----------------------------------------------------------------------------------


def test_upload_blinds_a_csv_line_for_line_and_deletes_the_copy(fake, tmp_path, capsys):
    rows = [
        ["L1", "CN_RIC", "110105 19491231 002x", "Zhang San", "", "loan", "1"],
        ["L2", "CN_RIC", BAD_RIC, "", "", "loan", "1"],
        ["L3", "PASSPORT", "e1234567", "", "de", "loan", "1"],
    ]
    write_csv(tmp_path / "loans.csv", rows)
    (tmp_path / "work").mkdir()
    status, out, err = run(capsys, "upload", str(tmp_path / "loans.csv"), "--tmp-dir", str(tmp_path / "work"))
    assert status == 0
    assert json.loads(out) == {"id": SUBMISSION, "status": "queued", "duplicate": False}
    [sent] = fake.uploads
    assert [r.file.content_type for r in fake.requests if r.file] == ["text/csv"]
    lines = sent.decode().split("\n")
    # the rejected row is a blank line: every row keeps its line number for the exchange's errors
    assert lines[0] == "member_reference,id_type,blind,name,country,product,principal"
    assert lines[1] == f"L1,CN_RIC,{fake.blind('CN_RIC', RIC)},Zhang San,,loan,1"
    assert lines[2] == ""
    assert lines[3] == f"L3,PASSPORT,{fake.blind('PASSPORT', 'E1234567', 'DE')},,DE,loan,1"
    assert "110105" not in sent.decode() and "1234567," not in sent.decode()
    assert "line 3: id_number: the check character is wrong" in err and "1 rejected here and not sent" in err
    assert "110105" not in out + err and "uploading" not in err  # no progress line for a small file
    assert fake.evaluations() == [2]
    assert list((tmp_path / "work").iterdir()) == []  # the blinded copy is gone


def test_upload_sends_a_blind_csv_or_a_raw_one_with_raw_as_it_is(fake, tmp_path, capsys):
    (tmp_path / "blind.csv").write_bytes(f"\ufeffmember_reference,id_type,blind\r\nL1,CN_RIC, {BLIND} \r\n".encode())
    assert run(capsys, "upload", str(tmp_path / "blind.csv"))[0] == 0
    write_csv(tmp_path / "raw.csv", [["L1", "CN_RIC", RIC, "", "", "loan", "1"]])
    assert run(capsys, "upload", str(tmp_path / "raw.csv"), "--raw")[0] == 0
    assert fake.uploads == [(tmp_path / "blind.csv").read_bytes(), (tmp_path / "raw.csv").read_bytes()]
    assert fake.paths() == ["POST submissions", "POST submissions"]  # no key, no evaluation


def test_an_id_number_header_in_any_case_is_still_blinded(fake, tmp_path, capsys):
    write_csv(tmp_path / "f.csv", [["L1", "CN_RIC", RIC]], header=["member_reference", "ID_Type", " ID_Number "])
    assert run(capsys, "upload", str(tmp_path / "f.csv"))[0] == 0
    assert fake.uploads[0].decode() == f"member_reference,ID_Type,blind\nL1,CN_RIC,{fake.blind('CN_RIC', RIC)}\n"


def test_upload_blinds_json_lines_and_keeps_every_line_number(fake, tmp_path, capsys):
    source = [
        {"member_reference": "L1", "subject": {"id_type": "CN_RIC", "id_number": RIC.lower(), "name": "Zhang San"}},
        {"member_reference": "L2", "subject": {"id_type": "CN_RIC", "id_number": BAD_RIC}},
        "",
        {"member_reference": "L4", "subject": {"id_type": "CN_RIC", "blind": BLIND}},
        '{"member_reference": "L5", "subject": {"id_type": "CN_RIC", "id_number": "x"',
        {"member_reference": "L6", "subject": {"id_type": "PASSPORT", "id_number": "E1234567", "country": "us"}},
        {"member_reference": "L7", "subject": RIC},
        {"member_reference": "L8", "principal": "1", "subject": {"id_type": "CN_MOBILE", "blind": BLIND, "name": "Li"}},
    ]
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in source)
    (tmp_path / "loans.jsonl").write_text(text)
    status, _out, err = run(capsys, "upload", str(tmp_path / "loans.jsonl"))
    assert status == 0
    [sent] = fake.uploads
    assert fake.requests[-1].file.content_type == "application/x-ndjson"
    lines = sent.decode().split("\n")
    assert len(lines) == len(source) + 1
    assert json.loads(lines[0]) == {
        "member_reference": "L1",
        "subject": {"id_type": "CN_RIC", "blind": fake.blind("CN_RIC", RIC), "name": "Zhang San"},
    }
    assert lines[1] == lines[2] == lines[4] == lines[6] == ""
    assert lines[3] == json.dumps(source[3]) and lines[7] == json.dumps(source[7])
    assert json.loads(lines[5])["subject"] == {
        "id_type": "PASSPORT",
        "blind": fake.blind("PASSPORT", "E1234567", "US"),
        "country": "US",
    }
    assert "110105" not in sent.decode() and "E1234567" not in sent.decode()
    reported = [line for line in err.splitlines() if ": line " in line]
    assert [r.split(":")[1].strip() for r in reported] == ["line 2", "line 5", "line 7"]
    assert "subject.id_number: the check character is wrong" in reported[0] and "not valid JSON" in reported[1]
    assert "subject: must be an object" in reported[2] and "110105" not in err
    assert fake.evaluations() == [2]


def test_upload_wait_polls_until_completed_and_says_where_the_errors_are(fake, tmp_path, capsys):
    states = iter(
        [
            {"id": SUBMISSION, "status": "queued", "processed": 0, "total": 3},
            {"id": SUBMISSION, "status": "processing", "processed": 1, "total": 3},
            {"id": SUBMISSION, "status": "completed", "processed": 3, "total": 3, "accepted": 2, "rejected": 1},
        ]
    )
    fake.routes["GET", f"submissions/{SUBMISSION}"] = lambda request: (200, next(states))
    (tmp_path / "f.csv").write_bytes(f"member_reference,id_type,blind\nL1,CN_RIC,{BLIND}\n".encode())
    status, out, err = run(capsys, "upload", str(tmp_path / "f.csv"), "--wait")
    assert status == 0
    assert json.loads(out)["status"] == "completed"
    assert "processing: 1 of about 3 rows read" in err
    assert "completed: 3 rows, 2 accepted, 1 rejected" in err and f"cx errors {SUBMISSION}" in err
    assert fake.paths().count(f"GET submissions/{SUBMISSION}") == 3


def test_a_failed_submission_exits_1_with_its_reason(fake, capsys):
    failed = {"id": SUBMISSION, "status": "failed", "error_code": "too_many_errors", "error": "stopped", "rejected": 3}
    fake.routes["GET", f"submissions/{SUBMISSION}"] = (200, failed)
    status, out, err = run(capsys, "submission", SUBMISSION, "--wait")
    assert status == 1 and json.loads(out)["status"] == "failed"
    assert "failed (too_many_errors): stopped" in err


def test_submission_and_errors_commands(fake, capsys):
    fake.routes["GET", f"submissions/{SUBMISSION}"] = (200, {"id": SUBMISSION, "status": "processing"})
    status, out, _err = run(capsys, "submission", SUBMISSION)
    assert status == 0 and json.loads(out)["status"] == "processing"
    rows = [{"line": 4, "field": "principal", "message": "is required"}, {"line": 9, "field": None, "message": "m"}]
    fake.routes["GET", f"submissions/{SUBMISSION}/errors"] = (200, rows)
    status, out, _err = run(capsys, "errors", SUBMISSION)
    assert status == 0 and [json.loads(line) for line in out.splitlines()] == rows
    assert run(capsys, "errors", "not-a-uuid")[0] == 2
    assert run(capsys, "errors", "0b6f3c1e-9a7d-4f2e-8c61-000000000000")[:2] == (1, "")  # not found


def test_upload_bad_input_exits_2_and_sends_nothing(fake, tmp_path, capsys):
    (tmp_path / "f.txt").write_text("x\n")
    status, _out, err = run(capsys, "upload", str(tmp_path / "f.txt"))
    assert status == 2 and "--format" in err
    assert run(capsys, "upload", str(tmp_path / "missing.csv"))[0] == 2
    assert run(capsys, "upload", str(tmp_path / "f.txt"), "--format", "csv", "--tmp-dir", str(tmp_path / "no"))[0] == 2
    (tmp_path / "latin.csv").write_bytes("id_type,id_number\nCN_RIC,\xe9\n".encode("latin-1"))
    status, _out, err = run(capsys, "upload", str(tmp_path / "latin.csv"))
    assert status == 2 and "latin.csv" in err
    assert fake.uploads == []


def test_upload_refused_or_failed_exits_1_and_leaves_no_copy(fake, tmp_path, capsys):
    write_csv(tmp_path / "f.csv", [["L1", "CN_RIC", RIC, "", "", "loan", "1"]])
    (tmp_path / "work").mkdir()
    fake.routes["POST", "submissions"] = (429, {"code": "quota_exceeded", "detail": "retry later"})
    status, _out, err = run(capsys, "upload", str(tmp_path / "f.csv"), "--tmp-dir", str(tmp_path / "work"))
    assert status == 1 and "429 quota_exceeded: retry later" in err
    assert list((tmp_path / "work").iterdir()) == []

    fake.routes["POST", "oprf/evaluate"] = (503, {"code": "unavailable", "detail": "try later"})
    uploads = len(fake.uploads)
    status, _out, err = run(capsys, "upload", str(tmp_path / "f.csv"), "--tmp-dir", str(tmp_path / "work"))
    assert status == 1 and "lines 2-2 failed" in err and "nothing uploaded" in err
    assert len(fake.uploads) == uploads and list((tmp_path / "work").iterdir()) == []


def test_upload_with_a_changed_key_exits_3_and_sends_no_row(fake, tmp_path, capsys):
    pin_another_key(tmp_path)
    write_csv(tmp_path / "f.csv", [["L1", "CN_RIC", RIC, "", "", "loan", "1"]])
    status, _out, err = run(capsys, "upload", str(tmp_path / "f.csv"))
    assert status == 3 and "key changed" in err
    assert fake.paths() == ["GET oprf/key"] and fake.uploads == []
    assert run(capsys, "upload", str(tmp_path / "f.csv"), "--accept-new-key")[0] == 0


def test_upload_progress_line_for_large_files(fake, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_BYTES", 10)
    monkeypatch.setattr("cx_client.api.UPLOAD_BLOCK", 1 << 20)
    (tmp_path / "f.csv").write_bytes(b"member_reference,id_type,blind\n" + f"L,CN_RIC,{BLIND}\n".encode() * 26_500)
    _status, _out, err = run(capsys, "upload", str(tmp_path / "f.csv"))
    assert "\rcx: uploading 1.0 of 2.5 MiB (40%)\rcx: uploading 2.0 of 2.5 MiB (80%)" in err and "(100%)\n" in err


# --- cx consent and cx inquire -------------------------------------------------------------------


def test_consent_hashes_the_evidence_and_sends_the_borrower_blind(fake, tmp_path, capsys):
    evidence = tmp_path / "signed.pdf"
    evidence.write_bytes(b"%PDF signed authorisation" * 100_000)
    fake.routes["POST", "consents"] = (201, {"id": CONSENT, "status": "active"})
    status, out, err = run(
        capsys,
        *["consent", "CN_RIC", "110105 19491231 002x", "--purpose", "credit_application"],
        *["--channel", "app", "--evidence", str(evidence), "--idempotency-key", "c-1"],
    )
    assert status == 0 and json.loads(out) == {"id": CONSENT, "status": "active"}
    sent = fake.requests[-1]
    assert sent.json["subject"] == {"id_type": "CN_RIC", "blind": fake.blind("CN_RIC", RIC)}
    assert sent.json["evidence_sha256"] == hashlib.sha256(evidence.read_bytes()).hexdigest()
    assert (sent.json["purpose"], sent.json["channel"]) == ("credit_application", "app")
    granted = datetime.fromisoformat(sent.json["granted_at"])
    expires = datetime.fromisoformat(sent.json["expires_at"])
    assert granted.utcoffset() == timedelta(0) and abs(datetime.now(granted.tzinfo) - granted) < timedelta(minutes=1)
    assert expires - granted == timedelta(days=364)
    assert dict(sent.headers) == {"Idempotency-Key": "c-1"}
    assert "110105" not in out + err


def test_consent_times_given_and_raw(fake, tmp_path, capsys):
    (tmp_path / "e.pdf").write_bytes(b"doc")
    fake.routes["POST", "consents"] = (201, {"id": CONSENT, "status": "active"})
    args = ["consent", "PASSPORT", "E1234567", "--country", "us", "--purpose", "guarantee_review"]
    args += ["--channel", "paper", "--evidence", str(tmp_path / "e.pdf"), "--raw"]
    assert run(capsys, *args, "--granted-at", "2026-11-27T09:30:00+08:00")[0] == 0
    sent = fake.requests[-1].json
    assert sent["subject"] == {"id_type": "PASSPORT", "id_number": "E1234567", "country": "us"}
    assert sent["granted_at"] == "2026-11-27T09:30:00+08:00" and sent["expires_at"] == "2027-11-26T09:30:00+08:00"
    assert run(capsys, *args, "--granted-at", "2026-11-27T09:30:00Z", "--expires-at", "2027-01-01T00:00:00Z")[0] == 0
    assert fake.requests[-1].json["expires_at"] == "2027-01-01T00:00:00+00:00"
    assert fake.paths() == ["POST consents", "POST consents"]  # raw: no key, no evaluation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id_number": BAD_RIC}, "id_number: the check character is wrong"),
        ({"evidence": "missing.pdf"}, "--evidence: No such file"),
        ({"granted_at": "2026-11-27T09:30:00"}, "--granted-at: give the offset"),
        ({"granted_at": "yesterday"}, "--granted-at: not an ISO 8601 time"),
        ({"granted_at": "2026-11-27T09:30:00Z", "expires_at": "2026-11-27T09:00:00Z"}, "must be after"),
    ],
)
def test_consent_bad_input_exits_2_and_sends_nothing(fake, tmp_path, capsys, change, message):
    (tmp_path / "e.pdf").write_bytes(b"doc")
    values = {"id_number": RIC, "evidence": str(tmp_path / "e.pdf"), **change}
    if "missing" in values["evidence"]:
        values["evidence"] = str(tmp_path / "missing.pdf")
    args = ["consent", "CN_RIC", values["id_number"], "--purpose", "credit_application", "--channel", "app"]
    args += ["--evidence", values["evidence"]]
    for option in ("granted_at", "expires_at"):
        if option in values:
            args += ["--" + option.replace("_", "-"), values[option]]
    status, out, err = run(capsys, *args)
    assert status == 2 and message in err and fake.requests == []
    assert BAD_RIC not in out + err


def test_consent_refused_exits_1_with_the_fields_at_fault(fake, tmp_path, capsys):
    (tmp_path / "e.pdf").write_bytes(b"doc")
    problem = {
        "code": "validation_failed",
        "detail": "Invalid input.",
        "errors": [{"index": None, "field": "expires_at", "message": "must be at most one year after granted_at"}],
    }
    fake.routes["POST", "consents"] = (422, problem)
    args = ["consent", "CN_RIC", RIC, "--purpose", "credit_application", "--channel", "app"]
    status, _out, err = run(capsys, *args, "--evidence", str(tmp_path / "e.pdf"))
    assert status == 1
    assert "422 validation_failed: Invalid input." in err and "expires_at: must be at most one year" in err
    pin_another_key(tmp_path)
    assert run(capsys, *args, "--evidence", str(tmp_path / "e.pdf"))[0] == 3
    assert fake.paths()[-1] == "GET oprf/key"


def test_inquire_sends_the_borrower_blind_and_prints_the_summary(fake, capsys):
    answer = {"id": "i1", "subject_found": True, "summary": {"open_delinquencies": 2}}
    fake.routes["POST", "inquiries"] = (200, answer)
    status, out, err = run(
        capsys, "inquire", "CN_MOBILE", "+86 139-0000-0001", "--consent-id", CONSENT, "--purpose", "credit_application"
    )
    assert status == 0 and json.loads(out) == answer
    assert fake.requests[-1].json == {
        "subject": {"id_type": "CN_MOBILE", "blind": fake.blind("CN_MOBILE", "13900000001")},
        "consent_id": CONSENT,
        "purpose": "credit_application",
    }
    assert "13900000001" not in out + err and "0000-0001" not in out + err


def test_inquire_errors(fake, capsys):
    args = ["--purpose", "credit_application"]
    status, _out, err = run(capsys, "inquire", "CN_RIC", RIC, "--consent-id", "c1", *args)
    assert status == 2 and "--consent-id: must be a UUID" in err
    status, _out, err = run(capsys, "inquire", "CN_RIC", BAD_RIC, "--consent-id", CONSENT, *args)
    assert status == 2 and "check character" in err and BAD_RIC not in err
    assert fake.requests == []
    fake.routes["POST", "inquiries"] = (403, {"code": "consent_required", "detail": "register one first"})
    status, _out, err = run(capsys, "inquire", "CN_RIC", RIC, "--consent-id", CONSENT, *args)
    assert status == 1 and "403 consent_required" in err
    status, _out, _err = run(capsys, "inquire", "CN_RIC", RIC, "--consent-id", CONSENT, *args, "--raw")
    assert status == 1 and fake.requests[-1].json["subject"] == {"id_type": "CN_RIC", "id_number": RIC}


def test_an_unreachable_exchange_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CX_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CX_API_KEY", "k")
    monkeypatch.setenv("CX_PIN_FILE", str(tmp_path / "pin.json"))
    args = ["inquire", "CN_RIC", RIC, "--consent-id", CONSENT, "--purpose", "credit_application"]
    status, _out, err = run(capsys, *args)
    assert status == 1 and "GET oprf/key" in err and RIC not in err


def test_blind_json_lines_in_calls_of_the_batch_size(tmp_path):
    from cx_client.api import Exchange
    from cx_client.blindfile import blind_ndjson

    fake = FakeExchange()
    exchange = Exchange(fake)
    key = exchange.trusted_key(KeyPin(tmp_path / "pin.json"))
    mobiles = [f"1390000{n:04d}" for n in range(25)]
    lines = [
        json.dumps({"member_reference": f"L{n}", "subject": {"id_type": "CN_MOBILE", "id_number": m}})
        for n, m in enumerate(mobiles)
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines))  # no newline at the end
    stats = blind_ndjson(tmp_path / "in.jsonl", tmp_path / "out.jsonl", exchange, key, err=io.StringIO(), batch_size=10)
    assert fake.evaluations() == [10, 10, 5] and stats.blinded == 25
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["member_reference"] for o in out] == [f"L{n}" for n in range(25)]
    assert [o["subject"]["blind"] for o in out] == [fake.blind("CN_MOBILE", m) for m in mobiles]
    assert base64.b64decode(out[0]["subject"]["blind"])  # valid base64


def test_blind_file_keep_lines_puts_every_row_on_its_input_line(tmp_path):
    from cx_client.api import Exchange
    from cx_client.blindfile import blind_file

    exchange = Exchange(FakeExchange())
    key = exchange.trusted_key(KeyPin(tmp_path / "pin.json"))
    source = (
        "member_reference,id_type,id_number,name\n"
        "L1,CN_RIC,11010519491231002X,Zhang San\n"
        "\n"
        'L3,CN_RIC,110105194912310021,"two\nlines"\n'  # rejected: lines 4 and 5 become blank
        'L5,CN_RIC,11010519491231002X,"also\ntwo"\n'
        "L7,CN_MOBILE,13900000001,\n"
    )
    (tmp_path / "in.csv").write_text(source)
    blind_file(tmp_path / "in.csv", tmp_path / "out.csv", exchange, key, err=io.StringIO(), keep_lines=True)
    out = (tmp_path / "out.csv").read_text().split("\n")
    assert [line[:3] for line in out] == ["mem", "L1,", "", "", "", "L5,", "two", "L7,", ""]
    blind_file(tmp_path / "in.csv", tmp_path / "packed.csv", exchange, key, err=io.StringIO())
    assert [line[:3] for line in (tmp_path / "packed.csv").read_text().split("\n")] == [
        "mem",
        "L1,",
        "L5,",
        "two",
        "L7,",
        "",
    ]
