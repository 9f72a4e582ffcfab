"""What `cx upload` lets leave the member without --raw: a CSV's header found as the exchange
finds it, and only lines that are blind already (a well-formed blind value, known fields) or
blinded here. Everything else is rejected locally, by line, never quoting a value (review 22)."""

from __future__ import annotations

import json

import pytest

from tests.client.test_cli_commands import BLIND, RIC, run

SUBMITTED = "POST submissions"


def upload(capsys, path, *options):
    return run(capsys, "upload", str(path), *options)


# --- a CSV's header ------------------------------------------------------------------------------


@pytest.mark.parametrize("before", ["\n", ",,\n", "\ufeff\n \n", '"",""\r\n'])
def test_blank_rows_before_an_id_number_header_are_skipped_and_the_ids_blinded(fake, tmp_path, capsys, before):
    (tmp_path / "f.csv").write_text(f"{before}member_reference,id_type,id_number\nL1,CN_RIC,{RIC}\n", encoding="utf-8")
    status, _out, err = upload(capsys, tmp_path / "f.csv")
    assert status == 0, err
    [sent] = fake.uploads
    assert RIC.encode() not in sent and RIC[:6].encode() not in sent
    lines = sent.decode().split("\n")
    # line for line: the blank rows stay blank lines, the header and the row keep their numbers
    blank = before.count("\n")
    assert lines[:blank] == [""] * blank
    assert lines[blank:] == ["member_reference,id_type,blind", f"L1,CN_RIC,{fake.blind('CN_RIC', RIC)}", ""]
    assert fake.evaluations() == [1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"member_reference,id_type,name\nL1,CN_RIC,{RIC}\n", "neither an id_number nor a blind column"),
        (f"\n\nmember_reference,id_type,national_id\nL1,CN_RIC,{RIC}\n", "column 3 of the header row is not a record"),
        (f"id_type,id_number,id_number\nCN_RIC,{RIC},{RIC}\n", "column 3 of the header row repeats"),
        (f"id_type,blind,blind\nCN_RIC,{BLIND},{RIC}\n", "column 3 of the header row repeats"),
        (f'id_type,"id_number"x\nCN_RIC,{RIC}\n', "the header row is not valid CSV"),
        ("\n,,\n \n", "no header row"),
        (f"{RIC},CN_RIC\n", "column 1 of the header row is not a record field"),
    ],
)
def test_a_header_that_cannot_be_used_exits_2_and_sends_nothing(fake, tmp_path, capsys, text, message):
    (tmp_path / "f.csv").write_text(text, encoding="utf-8")
    status, out, err = upload(capsys, tmp_path / "f.csv")
    assert status == 2 and message in err and "nothing sent" in err
    assert fake.uploads == [] and SUBMITTED not in fake.paths()
    assert RIC not in out + err and RIC[:6] not in err


# --- a CSV of blind subjects ---------------------------------------------------------------------


def test_a_blind_csv_whose_blind_cells_are_not_blind_values_has_those_rows_rejected(fake, tmp_path, capsys):
    rows = [
        f"L1,CN_RIC,{BLIND}",
        f"L2,CN_RIC,{RIC}",  # a raw ID in the blind column
        "L3,CN_RIC,",
        f"L4,CN_RIC,{BLIND[:-2]}",  # 86 characters
        f"L5,CN_RIC,{BLIND[:-4]}AAAA",  # 88 characters of base64, but not 64 bytes
        f"L6,CN_RIC,{BLIND},{RIC}",  # a field more than the header
        f'L7,CN_RIC,"{BLIND}"x{RIC}',  # not valid CSV, as the exchange reads it (strict)
        ",,",
        f'L9,"CN_\nRIC",{BLIND}',
    ]
    (tmp_path / "f.csv").write_text("\nmember_reference,id_type,blind\n" + "\n".join(rows) + "\n")
    status, _out, err = upload(capsys, tmp_path / "f.csv")
    assert status == 0
    [sent] = fake.uploads
    assert RIC.encode() not in sent and RIC[:6].encode() not in sent
    assert sent.decode().split("\n") == [
        "",
        "member_reference,id_type,blind",
        f"L1,CN_RIC,{BLIND}",
        *[""] * 6,
        ",,",
        'L9,"CN_',
        f'RIC",{BLIND}',
        "",
    ]
    reported = [line for line in err.splitlines() if ": line " in line]
    assert [line.split(": ")[1:3] for line in reported] == [
        ["line 4", "blind"],
        ["line 5", "blind"],
        ["line 6", "blind"],
        ["line 7", "blind"],
        ["line 8", "row"],
        ["line 9", "row"],
    ]
    assert "6 rows rejected here and not sent" in err and RIC not in err and RIC[:6] not in err
    assert fake.evaluations() == []  # nothing to blind: no key, no evaluation


def test_a_blind_csv_that_is_all_well_formed_is_sent_byte_for_byte(fake, tmp_path, capsys):
    body = f"\ufeff,\r\nMember_Reference , blind ,ID_TYPE\r\nL1, {BLIND} ,CN_RIC\r\n\r\nL2,{BLIND},CN_RIC".encode()
    (tmp_path / "f.csv").write_bytes(body)
    assert upload(capsys, tmp_path / "f.csv")[0] == 0
    assert fake.uploads == [body]


# --- JSON Lines ----------------------------------------------------------------------------------


def test_json_lines_without_an_exact_id_number_or_a_blind_value_are_never_sent(fake, tmp_path, capsys):
    good = {"member_reference": "L1", "subject": {"id_type": "CN_RIC", "blind": BLIND, "name": "Zhang San"}}
    lines = [
        good,
        {"member_reference": "L2", "subject": {"id_type": "CN_RIC", "ID_NUMBER": RIC}},
        {"member_reference": "L3", "id_number": RIC, "subject": {"id_type": "CN_RIC", "blind": BLIND}},
        {"member_reference": "L4", "id_type": "CN_RIC", "id_number": RIC},
        {"member_reference": "L5", "subject": {"id_type": "CN_RIC", "blind": RIC}},
        {"member_reference": "L6", "subject": {"id_type": "CN_RIC", "blind": BLIND, "id": RIC}},
        {"member_reference": "L7", "subject": {"id_type": "CN_RIC"}},
        {"member_reference": "L8", "subject": {"id_type": "CN_RIC", "blind": BLIND}, "notes": {"id_number": RIC}},
        {"member_reference": "L9", "product": {"id_number": RIC}, "subject": {"id_type": "CN_RIC", "blind": BLIND}},
        {"member_reference": "L10", "subject": {"id_type": "CN_RIC", "blind": BLIND, "name": {"id": RIC}}},
        {"member_reference": "L11", "subject": {"id_type": "CN_RIC", "blind": f" {BLIND}"}},
        {RIC: 1, "subject": {"id_type": "CN_RIC", "blind": BLIND}},
        {"member_reference": "L13", "subject": {"id_type": "CN_RIC", "id_number": RIC}},
    ]
    (tmp_path / "f.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    status, _out, err = upload(capsys, tmp_path / "f.jsonl")
    assert status == 0
    [sent] = fake.uploads
    assert RIC.encode() not in sent and RIC[:6].encode() not in sent
    out = sent.decode().split("\n")
    assert out[0] == json.dumps(good) and out[1:12] == [""] * 11
    assert json.loads(out[12])["subject"] == {"id_type": "CN_RIC", "blind": fake.blind("CN_RIC", RIC)}
    reported = [line for line in err.splitlines() if ": line " in line]
    assert [line.split(": ")[1] for line in reported] == [f"line {n}" for n in range(2, 13)]
    assert [line.split(": ")[2] for line in reported] == [
        "subject",
        "row",
        "row",
        "subject.blind",
        "subject",
        "subject.id_number",
        "row",
        "product",
        "subject.name",
        "subject.blind",
        "row",
    ]
    assert RIC not in err and RIC[:6] not in err and "11 rejected here and not sent" in err


def test_a_lone_surrogate_or_a_huge_integer_rejects_its_line_not_the_upload(fake, tmp_path, capsys):
    subject = f'"subject": {{"id_type": "CN_RIC", "id_number": "{RIC}"'
    lines = [
        '{"member_reference": "L1", ' + subject + ', "name": "\\ud800"}}',
        '{"member_reference": "L2", "principal": ' + "9" * 5000 + ", " + subject + "}}",
        '{"member_reference": "L3", ' + subject + ', "name": "\\ud83d\\ude00 ok"}}',
        '{"member_reference": "L4", "subject": {"id_type": "CN_RIC", "blind": "' + BLIND + '", "name": "\\udfff"}}',
    ]
    (tmp_path / "f.jsonl").write_text("\n".join(lines) + "\n")
    status, _out, err = upload(capsys, tmp_path / "f.jsonl")
    assert status == 0 and "Traceback" not in err
    out = fake.uploads[0].decode().split("\n")
    assert out[0] == out[1] == out[3] == ""
    assert json.loads(out[2])["subject"]["name"] == "\U0001f600 ok"
    assert "line 1: row: holds an unpaired surrogate" in err and "line 4: row: holds an unpaired surrogate" in err
    assert "line 2: row: is not valid JSON (a number has too many digits)" in err
    assert RIC not in err
