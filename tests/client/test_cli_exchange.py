"""The cx commands against the real exchange (Django's test client, the test database): bulk
uploads processed by the exchange's worker, consents and inquiries across two members."""

from __future__ import annotations

import csv
import json

import pytest
from cx_client import cli
from cx_client.api import Exchange

from exchange.bulk import worker
from exchange.models import Record, Submission
from tests.client.transport import api_transport
from tests.conftest import make_persona
from tests.factories import record, ric

COLUMNS = [
    "member_reference",
    "id_type",
    "id_number",
    "name",
    "country",
    "product",
    "currency",
    "principal",
    "amount_overdue",
    "days_past_due",
    "status",
    "opened_on",
    "delinquent_since",
    "as_of",
    "notice_sent_on",
    "payment_history",
]


def csv_row(ref: str, n: int, **overrides) -> list[str]:
    data = record(ref, n)
    flat = {**{k: str(v) for k, v in data.items() if k != "subject"}, **data["subject"], **overrides}
    return [str(flat.get(column, "")) for column in COLUMNS]


def write_csv(path, rows, header=COLUMNS):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def processing(request):
    """Like the exchange's worker between two polls: process a submission when its status is read."""
    parts = request.path.split("/")
    if request.method == "GET" and len(parts) == 2 and parts[0] == "submissions":
        worker.submission_process(parts[1])


@pytest.fixture
def as_member(tmp_path, monkeypatch):
    """as_member(persona): the cx command speaks to the exchange as that member from now on."""
    monkeypatch.setenv("CX_URL", "https://exchange.example")
    monkeypatch.setenv("CX_PIN_FILE", str(tmp_path / "pin.json"))
    monkeypatch.setattr(cli, "sleep", lambda seconds: None)

    def use(persona):
        monkeypatch.setenv("CX_API_KEY", persona.key)
        monkeypatch.setattr(cli, "http_transport", lambda url, key: api_transport(persona, on_request=processing))

    return use


def run(capsys, *argv):
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_upload_raw_wait_and_the_rejected_rows(bank_a, as_member, tmp_path, capsys):
    as_member(bank_a)
    rows = [csv_row("L1", 1), csv_row("L2", 2, principal="lots"), csv_row("L3", 3)]
    write_csv(tmp_path / "loans.csv", rows)
    status, out, err = run(capsys, "upload", str(tmp_path / "loans.csv"), "--raw", "--wait")
    assert status == 0, err
    submission = json.loads(out)
    assert (submission["status"], submission["accepted"], submission["rejected"]) == ("completed", 2, 1)
    assert f"cx errors {submission['id']}" in err
    assert Record.objects.filter(member=bank_a.member).count() == 2

    status, out, _err = run(capsys, "errors", submission["id"])
    [error] = [json.loads(line) for line in out.splitlines()]
    assert status == 0 and (error["line"], error["field"]) == (3, "principal")

    # the same file again: the exchange answers the first submission
    status, out, err = run(capsys, "upload", str(tmp_path / "loans.csv"), "--raw")
    assert status == 0 and json.loads(out) == {"id": submission["id"], "status": "completed", "duplicate": True}
    assert "has this file already" in err


def test_another_members_submission_is_not_found(bank_a, bank_b, as_member, tmp_path, capsys):
    as_member(bank_a)
    write_csv(tmp_path / "loans.csv", [csv_row("L1", 1)])
    submission = json.loads(run(capsys, "upload", str(tmp_path / "loans.csv"), "--raw")[1])
    as_member(bank_b)
    status, out, err = run(capsys, "submission", submission["id"])
    assert (status, out) == (1, "") and "404 not_found" in err
    assert run(capsys, "errors", submission["id"])[0] == 1


def test_submit_records_with_an_idempotency_key_is_answered_once(bank_a):
    exchange = Exchange(api_transport(bank_a))
    first = exchange.submit_records([record("L1", 1), record("L2", 2)], idempotency_key="batch-1")
    assert [r["member_reference"] for r in first] == ["L1", "L2"] and all(r["created"] for r in first)
    assert exchange.submit_records([record("L1", 1), record("L2", 2)], idempotency_key="batch-1") == first
    assert Record.objects.filter(member=bank_a.member).count() == 2


def test_consent_and_inquiry_raw_find_another_members_record(bank_a, bank_b, as_member, tmp_path, capsys):
    Exchange(api_transport(bank_a)).submit_records([record("L1", 7)])
    as_member(bank_b)
    (tmp_path / "signed.pdf").write_bytes(b"%PDF the borrower's signed authorisation")
    status, out, err = run(
        capsys,
        *["consent", "CN_RIC", ric(7), "--purpose", "credit_application", "--channel", "app"],
        *["--evidence", str(tmp_path / "signed.pdf"), "--raw"],
    )
    assert status == 0, err
    consent = json.loads(out)
    assert consent["status"] == "active" and consent["subject"] == {"id_type": "CN_RIC"}
    status, out, err = run(
        capsys, "inquire", "CN_RIC", ric(7), "--consent-id", consent["id"], "--purpose", "credit_application", "--raw"
    )
    assert status == 0, err
    answer = json.loads(out)
    assert answer["subject_found"] is True and answer["summary"]["open_delinquencies"] == 1
    # another purpose than the consent's: refused
    status, _out, err = run(
        capsys, "inquire", "CN_RIC", ric(7), "--consent-id", consent["id"], "--purpose", "guarantee_review", "--raw"
    )
    assert status == 1 and "403 consent_required" in err and ric(7) not in err


def process_queued(_seconds):
    """cx --wait's pause: the exchange's worker processes what is queued meanwhile."""
    for submission in Submission.objects.filter(status="queued"):
        worker.submission_process(submission.pk)


def test_cx_over_http_against_a_live_exchange(live_server, transactional_db, tmp_path, monkeypatch, capsys):
    """Through urllib and a real WSGI server: the file streamed with its Content-Length, the
    errors read as JSON Lines, a problem answer decoded."""
    bank = make_persona("BANKH", "Bank H")
    monkeypatch.setenv("CX_URL", live_server.url)
    monkeypatch.setenv("CX_API_KEY", bank.key)
    monkeypatch.setenv("CX_PIN_FILE", str(tmp_path / "pin.json"))
    monkeypatch.setattr(cli, "sleep", process_queued)
    monkeypatch.setattr("cx_client.api.UPLOAD_BLOCK", 1024)  # many blocks
    rows = [csv_row(f"L{n}", n) for n in range(40)] + [csv_row("BAD", 99, as_of="2026-13-01")]
    write_csv(tmp_path / "loans.csv", rows)
    status, out, err = run(capsys, "upload", str(tmp_path / "loans.csv"), "--raw", "--wait")
    assert status == 0, err
    submission = json.loads(out)
    assert (submission["total"], submission["accepted"], submission["rejected"]) == (41, 40, 1)
    assert submission["size"] == (tmp_path / "loans.csv").stat().st_size
    status, out, _err = run(capsys, "errors", submission["id"])
    assert [(e["line"], e["field"]) for e in map(json.loads, out.splitlines())] == [(42, "as_of")]
    status, _out, err = run(capsys, "submission", "0b6f3c1e-9a7d-4f2e-8c61-0d2a7e4b9f10")
    assert status == 1 and "404 not_found" in err


# --- blind subjects ------------------------------------------------------------------------------


def full_width(text: str) -> str:
    """As typed on a Chinese keyboard: the full-width forms of ASCII characters."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


def consent_and_inquire(capsys, tmp_path, id_type, id_number, *extra):
    """`cx consent` then `cx inquire` for one borrower (blind unless `extra` says --raw): the answer."""
    evidence = tmp_path / f"signed-{len(list(tmp_path.iterdir()))}.pdf"
    evidence.write_bytes(f"%PDF signed by {id_type} {id_number} {extra}".encode())
    args = [id_type, id_number, "--purpose", "credit_application", *extra]
    status, out, err = run(capsys, "consent", *args, "--channel", "app", "--evidence", str(evidence))
    assert status == 0, err
    consent = json.loads(out)
    status, out, err = run(capsys, "inquire", *args, "--consent-id", consent["id"])
    assert status == 0, err
    assert id_number not in out + err
    return json.loads(out)


def test_a_borrower_submitted_raw_is_found_by_a_blind_inquiry(bank_a, bank_b, as_member, tmp_path, capsys):
    Exchange(api_transport(bank_a)).submit_records([record("L1", 7)])
    as_member(bank_b)
    # another spelling of the same ID, blinded on bank_b's side
    spelled = full_width(ric(7)[:6]) + " " + ric(7)[6:].lower()
    answer = consent_and_inquire(capsys, tmp_path, "CN_RIC", spelled)
    assert answer["subject_found"] is True and answer["summary"]["open_delinquencies"] == 1
    assert consent_and_inquire(capsys, tmp_path, "CN_RIC", ric(8))["subject_found"] is False


def test_a_blinded_upload_keeps_the_members_line_numbers_and_is_found(bank_a, bank_b, as_member, tmp_path, capsys):
    as_member(bank_a)
    rows = [
        csv_row("L1", 11),
        csv_row("L2", 12, id_number="110105194912310021"),  # rejected here: never sent
        csv_row("L3", 13, name="Wang\nWu"),  # lines 4 and 5; rejected by the exchange (a control character)
        csv_row("L4", 14, principal="lots"),  # rejected by the exchange, on line 6
        csv_row("L5", 15),
    ]
    write_csv(tmp_path / "loans.csv", rows)
    status, out, err = run(capsys, "upload", str(tmp_path / "loans.csv"), "--wait")
    assert status == 0, err
    submission = json.loads(out)
    assert (submission["accepted"], submission["rejected"]) == (2, 2)
    assert "line 3: id_number: the check character is wrong" in err and "1 rejected here and not sent" in err
    out = run(capsys, "errors", submission["id"])[1]
    # the lines of the member's own file, though the file sent had a blank line in place of L2
    assert [(e["line"], e["field"]) for e in map(json.loads, out.splitlines())] == [
        (4, "subject.name"),
        (6, "principal"),
    ]

    as_member(bank_b)
    blind = consent_and_inquire(capsys, tmp_path, "CN_RIC", ric(11))
    raw = consent_and_inquire(capsys, tmp_path, "CN_RIC", ric(15), "--raw")
    assert blind["subject_found"] is raw["subject_found"] is True
    assert consent_and_inquire(capsys, tmp_path, "CN_RIC", ric(12))["subject_found"] is False


def test_a_blinded_json_lines_upload(bank_a, bank_b, as_member, tmp_path, capsys):
    as_member(bank_a)
    lines = [record("J1", 21), record("J2", 22, subject={"id_type": "CN_MOBILE", "id_number": "+86 139 0000 0022"})]
    (tmp_path / "loans.ndjson").write_text("".join(json.dumps(line) + "\n" for line in lines))
    status, out, err = run(capsys, "upload", str(tmp_path / "loans.ndjson"), "--wait")
    assert status == 0, err
    assert (json.loads(out)["accepted"], json.loads(out)["rejected"]) == (2, 0)
    as_member(bank_b)
    assert consent_and_inquire(capsys, tmp_path, "CN_MOBILE", "13900000022")["subject_found"] is True
    assert consent_and_inquire(capsys, tmp_path, "CN_RIC", ric(21), "--raw")["subject_found"] is True


def test_a_blind_only_exchange_refuses_raw_ids_and_takes_cx_blind_ones(
    bank_a, bank_b, as_member, tmp_path, capsys, settings
):
    settings.EXCHANGE_RAW_SUBJECTS = "refuse"
    as_member(bank_a)
    write_csv(tmp_path / "loans.csv", [csv_row("L1", 31)])
    status, _out, err = run(capsys, "upload", str(tmp_path / "loans.csv"), "--raw")
    assert status == 1 and "raw_identifier_refused" in err
    status, out, err = run(capsys, "upload", str(tmp_path / "loans.csv"), "--wait")
    assert status == 0 and json.loads(out)["accepted"] == 1, err

    as_member(bank_b)
    (tmp_path / "signed.pdf").write_bytes(b"%PDF signed")
    args = ["CN_RIC", ric(31), "--purpose", "credit_application", "--channel", "app"]
    status, _out, err = run(capsys, "consent", *args, "--evidence", str(tmp_path / "signed.pdf"), "--raw")
    assert status == 1 and "raw_identifier_refused" in err and ric(31) not in err
    assert consent_and_inquire(capsys, tmp_path, "CN_RIC", ric(31))["subject_found"] is True


def test_blank_rows_before_the_header_are_skipped_here_as_the_exchange_skips_them(
    bank_a, as_member, tmp_path, capsys, settings
):
    settings.EXCHANGE_RAW_SUBJECTS = "refuse"
    as_member(bank_a)
    write_csv(tmp_path / "loans.csv", [csv_row("B1", 41), csv_row("B2", 42, principal="lots")])
    (tmp_path / "loans.csv").write_text(",,\n\n" + (tmp_path / "loans.csv").read_text())
    status, out, err = run(capsys, "upload", str(tmp_path / "loans.csv"), "--wait")
    assert status == 0, err
    submission = json.loads(out)
    assert (submission["accepted"], submission["rejected"]) == (1, 1)
    errors = [json.loads(line) for line in run(capsys, "errors", submission["id"])[1].splitlines()]
    assert [(e["line"], e["field"]) for e in errors] == [(5, "principal")]  # the member's own line

    # blind already (cx blind-file's output), after a blank row: checked here, sent as it is
    assert run(capsys, "blind-file", str(tmp_path / "loans.csv"), str(tmp_path / "blind.csv"))[0] == 0
    (tmp_path / "blind.csv").write_text("\n" + (tmp_path / "blind.csv").read_text().replace("B1", "B3"))
    status, out, err = run(capsys, "upload", str(tmp_path / "blind.csv"), "--wait")
    assert status == 0, err
    submission = json.loads(out)
    assert (submission["accepted"], submission["rejected"]) == (1, 1)
    errors = [json.loads(line) for line in run(capsys, "errors", submission["id"])[1].splitlines()]
    assert [(e["line"], e["field"]) for e in errors] == [(4, "principal")]
