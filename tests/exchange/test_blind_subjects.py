"""Blind subjects: `{"id_type", "blind"}` wherever a subject is accepted, meeting the raw spelling of
the same borrower in one token; and EXCHANGE_RAW_SUBJECTS=refuse for a blind-only exchange.

The blind values are obtained as a member obtains them: the client's Blind and Finalize, with the
exchange's `/oprf/evaluate` in between and its proof checked against the served key."""

from __future__ import annotations

import base64
import json
from io import StringIO

import pytest
from cx_client.api import Exchange
from cx_client.subjects import oprf_input
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from exchange.models import Consent, Inquiry, Record, Submission
from tests.client.test_blinding import api_transport
from tests.exchange.test_borrower_report import look_up, staff_client
from tests.exchange.test_submissions import HEADER, csv_file, csv_row, errors_of, process, submit_and_process, upload
from tests.factories import consent, record, ric, subject

pytestmark = pytest.mark.django_db


def blind_values(persona, *subjects: dict) -> list[str]:
    exchange = Exchange(api_transport(persona))
    key = exchange.oprf_key()
    inputs = [oprf_input(s["id_type"], s["id_number"], s.get("country")) for s in subjects]
    return list(exchange.blind_values(inputs, key))


def blind_subject(persona, n: int, **extra) -> dict:
    [value] = blind_values(persona, subject(n))
    return {"id_type": "CN_RIC", "blind": value, **extra}


def submit(persona, *records):
    return persona.client.post("/api/v1/records", {"records": list(records)}, format="json")


def inquire(persona, subject_value, consent_id):
    return persona.client.post(
        "/api/v1/inquiries",
        {"subject": subject_value, "consent_id": consent_id, "purpose": "credit_application"},
        format="json",
    )


def test_a_borrower_submitted_raw_is_found_by_a_blind_inquiry_and_the_other_way_round(bank_a, bank_b):
    assert submit(bank_a, record("A-1", 1)).status_code == 201
    blind_one = blind_subject(bank_b, 1)
    assert submit(bank_b, record("B-2", 2, subject={**blind_subject(bank_b, 2), "name": "Li Si"})).status_code == 201

    # Bank B asks about borrower 1 (sent raw by A) with the blind spelling.
    granted = bank_b.client.post("/api/v1/consents", consent(1, subject=blind_one), format="json")
    assert granted.status_code == 201, granted.content
    found = inquire(bank_b, blind_one, granted.json()["id"])
    assert found.status_code == 200, found.content
    assert found.json()["subject_found"] is True
    assert found.json()["records"][0]["reported_by_you"] is False

    # Bank A asks about borrower 2 (sent blind by B) with the raw spelling.
    granted = bank_a.client.post("/api/v1/consents", consent(2), format="json")
    found = inquire(bank_a, subject(2), granted.json()["id"])
    assert found.status_code == 200 and found.json()["subject_found"] is True

    # One token per borrower, whatever the spelling; the blind value itself is stored nowhere.
    assert Record.objects.values("subject_token").distinct().count() == 2
    assert (
        Consent.objects.get(member=bank_b.member).subject_token
        == Record.objects.get(member=bank_a.member).subject_token
    )
    everything = json.dumps(list(AuditEvent.objects.values("details", "subject_token", "object_id")), default=str)
    assert blind_one["blind"] not in everything
    assert Inquiry.objects.count() == 2


def test_the_blind_value_of_a_spelling_is_the_blind_value_of_the_id(bank_a):
    spellings = [subject(1), {"id_type": "CN_RIC", "id_number": ric(1).lower()[:6] + " " + ric(1)[6:]}]
    first, second = blind_values(bank_a, *spellings)
    assert first == second


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ({"id_type": "CN_RIC", "blind": "not base64!"}, "subject.blind", "64-byte"),
        ({"id_type": "CN_RIC", "blind": base64.b64encode(b"x" * 32).decode()}, "subject.blind", "64-byte"),
        ({"id_type": "CN_RIC", "blind": 12}, "subject.blind", "64-byte"),
        ({"id_type": "SSN", "blind": base64.b64encode(b"x" * 64).decode()}, "subject.id_type", "one of"),
        ({"blind": base64.b64encode(b"x" * 64).decode()}, "subject.id_type", "is required"),
        (
            {"id_type": "CN_RIC", "blind": base64.b64encode(b"x" * 64).decode(), "country": "CN"},
            "subject.country",
            "only passports",
        ),
        (
            {"id_type": "PASSPORT", "blind": base64.b64encode(b"x" * 64).decode(), "country": "XX"},
            "subject.country",
            "not an ISO",
        ),
        (
            {"id_type": "CN_RIC", "blind": base64.b64encode(b"x" * 64).decode(), "id_number": ric(1)},
            "subject",
            "both id_number and blind",
        ),
    ],
)
def test_a_malformed_blind_subject_is_422_naming_the_field(bank_a, value, field, message):
    response = submit(bank_a, record("L-1", 1, subject=value))
    assert (response.status_code, response.json()["code"]) == (422, "validation_failed")
    [error] = [e for e in response.json()["errors"] if e["field"] == field]
    assert message in error["message"]
    assert ric(1) not in response.content.decode()
    assert Record.objects.count() == 0


def test_a_blind_passport_may_carry_its_country_or_not(bank_a):
    passport = {"id_type": "PASSPORT", "id_number": "E1234567", "country": "CN"}
    [value] = blind_values(bank_a, passport)
    with_country = submit(bank_a, record("P-1", subject={"id_type": "PASSPORT", "blind": value, "country": "cn"}))
    without = submit(bank_a, record("P-2", subject={"id_type": "PASSPORT", "blind": value}))
    raw = submit(bank_a, record("P-3", subject=passport))
    assert (with_country.status_code, without.status_code, raw.status_code) == (201, 201, 201)
    assert Record.objects.values("subject_token").distinct().count() == 1


def test_bulk_files_take_a_blind_column_or_blind_json_subjects(bank_a):
    values = blind_values(bank_a, subject(1), subject(2))
    header = HEADER.replace("id_number", "blind")
    rows = [csv_row("F-1", 1, id_number=values[0]), csv_row("F-2", 2, id_number=values[1], name="")]
    rows.append(csv_row("F-3", 3, id_number="c2hvcnQ="))  # base64 of 5 bytes: not an output
    body = ("\n".join([header, *rows]) + "\n").encode()
    done = submit_and_process(bank_a, body)
    assert (done.status, done.accepted, done.rejected) == ("completed", 2, 1)
    assert [(e["line"], e["field"]) for e in errors_of(bank_a, done.pk)] == [(4, "subject.blind")]

    lines = [json.dumps(record("J-1", 1, subject={"id_type": "CN_RIC", "blind": values[0]}))]
    done = submit_and_process(bank_a, ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
    assert (done.status, done.accepted) == ("completed", 1)
    # J-1 and F-1 are one borrower, as the raw spelling would be.
    assert submit(bank_a, record("R-1", 1)).status_code == 201
    assert Record.objects.values("subject_token").distinct().count() == 2


def test_a_csv_with_both_id_number_and_blind_columns_fails_whole(bank_a):
    header = HEADER + ",blind"
    body = ("\n".join([header, csv_row("F-1", 1) + ",x"]) + "\n").encode()
    done = submit_and_process(bank_a, body)
    assert done.status == "failed" and "both id_number and blind" in done.error


# --- EXCHANGE_RAW_SUBJECTS=refuse -------------------------------------------------------------


@pytest.fixture
def blind_only(settings):
    settings.EXCHANGE_RAW_SUBJECTS = "refuse"


def _refusals(action: str) -> list[dict]:
    return list(AuditEvent.objects.filter(action=action, outcome="denied").values_list("details", flat=True))


def test_a_blind_only_exchange_refuses_raw_subjects_everywhere_with_their_own_code(bank_a, blind_only):
    response = submit(bank_a, record("L-1", 1), record("L-2", 2))
    assert (response.status_code, response.json()["code"]) == (422, "raw_identifier_refused")
    assert {(e["index"], e["field"]) for e in response.json()["errors"]} == {
        (0, "subject.id_number"),
        (1, "subject.id_number"),
    }
    assert "blind" in response.json()["detail"]
    assert _refusals("record.submit")[-1]["why"] == "raw_identifier_refused"

    response = bank_a.client.post("/api/v1/consents", consent(1), format="json")
    assert (response.status_code, response.json()["code"]) == (422, "raw_identifier_refused")
    assert _refusals("consent.register")[-1]["why"] == "raw_identifier_refused"

    response = inquire(bank_a, subject(1), "00000000-0000-0000-0000-000000000000")
    assert (response.status_code, response.json()["code"]) == (422, "raw_identifier_refused")
    assert _refusals("inquiry.create")[-1]["why"] == "raw_identifier_refused"

    # A CSV naming id_number is refused at upload, before anything is queued.
    response = upload(bank_a, csv_file(csv_row("F-1", 1)))
    assert (response.status_code, response.json()["code"]) == (422, "raw_identifier_refused")
    assert _refusals("submission.create")[-1]["why"] == "raw_identifier_refused"
    assert Record.objects.count() == Consent.objects.count() == 0
    assert ric(1) not in json.dumps(list(AuditEvent.objects.values_list("details", flat=True)))


def test_a_blind_only_exchange_takes_blind_subjects_and_rejects_raw_json_lines_rows(bank_a, blind_only):
    value = blind_subject(bank_a, 1)
    assert submit(bank_a, record("L-1", 1, subject=value)).status_code == 201
    granted = bank_a.client.post("/api/v1/consents", consent(1, subject=value), format="json")
    assert granted.status_code == 201
    assert inquire(bank_a, value, granted.json()["id"]).json()["subject_found"] is True

    lines = [json.dumps(record("J-1", 2, subject=blind_subject(bank_a, 2))), json.dumps(record("J-2", 3))]
    done = submit_and_process(bank_a, ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
    assert (done.status, done.accepted, done.rejected) == ("completed", 1, 1)
    [error] = errors_of(bank_a, done.pk)
    assert (error["line"], error["field"]) == (2, "subject.id_number")
    assert "blind subjects only" in error["message"]


def test_the_console_borrower_report_still_takes_a_typed_raw_id_on_a_blind_only_exchange(bank_a, blind_only):
    value = blind_subject(bank_a, 1)
    assert submit(bank_a, record("L-1", 1, subject=value, amount_overdue="4321.00")).status_code == 201
    response = look_up(staff_client(), id_number=ric(1))
    assert response.status_code == 200
    assert "4321.00" in response.content.decode()


@pytest.mark.parametrize(
    "body",
    [
        b",,,\n" + csv_file(csv_row("F-1", 1)),  # a blank-celled row before the header
        b"\n" * 70000 + csv_file(csv_row("F-1", 1)),  # the header beyond the first 64 KiB
        ('"member_reference\n",' + HEADER.split(",", 1)[1] + "\n" + csv_row("F-1", 1) + "\n").encode(),  # quoted LF
        (HEADER.replace(",id_number", ",\x0cid_number") + "\n" + csv_row("F-1", 1) + "\n").encode(),  # form feed
    ],
    ids=["blank-row", "far-header", "quoted-newline", "form-feed"],
)
def test_a_raw_csv_is_refused_at_upload_however_its_header_is_spelled(bank_a, blind_only, body):
    response = upload(bank_a, body)
    assert (response.status_code, response.json()["code"]) == (422, "raw_identifier_refused")
    assert Submission.objects.count() == 0


def test_import_records_refuses_a_raw_file_on_a_blind_only_exchange(bank_a, blind_only, tmp_path):
    path = tmp_path / "loans.csv"
    path.write_bytes(csv_file(csv_row("F-1", 1)))
    with pytest.raises(CommandError, match="blind"):
        call_command("import_records", bank_a.member.code, str(path), "--no-progress", stdout=StringIO())
    assert Submission.objects.count() == Record.objects.count() == 0


def test_a_raw_file_queued_before_the_switch_fails_as_a_refusal(bank_a, settings):
    response = upload(bank_a, csv_file(csv_row("F-1", 1)))
    assert response.status_code == 202
    settings.EXCHANGE_RAW_SUBJECTS = "refuse"  # switched while the file waited
    done = process(response.json()["id"])
    assert (done.status, done.error_code) == ("failed", "raw_identifier_refused")
    event = AuditEvent.objects.get(action="submission.fail")
    assert (event.outcome, event.details["why"]) == ("denied", "raw_identifier_refused")
    assert Record.objects.count() == 0


def test_raw_json_lines_rows_refused_on_a_blind_only_exchange_are_audited_as_a_refusal(bank_a, blind_only):
    lines = [json.dumps(record("J-1", 1)), json.dumps(record("J-2", 2))]
    done = submit_and_process(bank_a, ("\n".join(lines) + "\n").encode(), "application/x-ndjson")
    assert (done.accepted, done.rejected) == (0, 2)
    refusal = AuditEvent.objects.get(action="record.submit", outcome="denied")
    assert refusal.details == {"why": "raw_identifier_refused", "rows": 2}
    assert refusal.object_id == str(done.pk)


@pytest.mark.parametrize(
    "value",
    [
        {"id_number": ric(1)},  # no id_type either
        {"id_type": "CN_RIC", "id_number": ric(1), "blind": base64.b64encode(b"x" * 64).decode()},
        {"id_type": "CN_RIC", "id_number": "not an id", "nickname": "x"},
    ],
)
def test_on_a_blind_only_exchange_any_subject_with_an_id_number_is_refused_as_raw(bank_a, blind_only, value):
    response = submit(bank_a, record("L-1", 1, subject=value))
    assert (response.status_code, response.json()["code"]) == (422, "raw_identifier_refused")


def test_a_csv_naming_both_columns_is_refused_as_raw_on_a_blind_only_exchange(bank_a, blind_only):
    response = upload(bank_a, csv_file(csv_row("F-1", 1)).replace(b"id_number", b"id_number,blind", 1))
    assert (response.status_code, response.json()["code"]) == (422, "raw_identifier_refused")


def test_a_blind_files_empty_cell_names_the_blind_value(bank_a):
    [value] = blind_values(bank_a, subject(1))
    header = HEADER.replace("id_number", "BLIND").upper()
    rows = [csv_row("F-1", 1, id_number=value), csv_row("F-2", 2, id_number="")]
    done = submit_and_process(bank_a, b"\xef\xbb\xbf" + ("\n".join([header, *rows]) + "\n").encode())
    assert (done.accepted, done.rejected) == (1, 1)
    assert [(e["line"], e["field"], e["message"]) for e in errors_of(bank_a, done.pk)] == [
        (3, "subject.blind", "is required")
    ]


def test_refused_consent_dates_and_oprf_elements_are_audited(bank_a):
    late = consent(1, expires_at="2099-01-01T00:00:00+00:00")
    assert bank_a.client.post("/api/v1/consents", late, format="json").status_code == 422
    refusal = AuditEvent.objects.get(action="consent.register")
    assert (refusal.outcome, refusal.details["why"]) == ("denied", "validation_failed")
    unknown = bank_a.client.post("/api/v1/consents", {**consent(2), "extra": 1}, format="json")
    assert unknown.status_code == 422
    assert AuditEvent.objects.filter(action="consent.register", outcome="denied").count() == 2
    bad = bank_a.client.post("/api/v1/oprf/evaluate", {"blinded": []}, format="json")
    assert bad.status_code == 422
    assert AuditEvent.objects.get(action="oprf.evaluate").outcome == "denied"
