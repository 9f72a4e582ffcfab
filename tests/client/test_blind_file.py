"""`cx blind-file`: a bulk CSV blinded row by row, in calls of 1,000, against the exchange."""

from __future__ import annotations

import base64
import csv
import io

import pytest
from cx_client import cli
from cx_client.api import Exchange
from cx_client.blindfile import BatchFailed, blind_file, blind_numbered_rows, blind_rows
from cx_client.blinding import BadAnswer, KeyPin

from core import oprf
from tests.client.transport import api_transport

HEADER = ["member_reference", "id_type", "id_number", "name", "country", "product", "principal"]


def mobile(n: int) -> str:
    return f"1390000{n:04d}"


def write_csv(path, rows, header=HEADER):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


@pytest.fixture
def counted(bank_a, tmp_path):
    """An Exchange over the test client that counts the elements of each evaluation call, and its pinned key."""
    exchange = Exchange(api_transport(bank_a))
    key = exchange.trusted_key(KeyPin(tmp_path / "pin.json"))
    calls = []
    original = exchange.transport
    exchange.transport = lambda r: calls.append(len(r.json["blinded"])) or original(r)
    return exchange, key, calls


def full_width(text: str) -> str:
    """As typed on a Chinese keyboard: the full-width forms (U+FF01-FF5E) of ASCII characters."""
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


def hub(id_type, id_number, country=""):
    return base64.b64encode(oprf.evaluate_subject(id_type, id_number, country)).decode()


def test_blind_values_equal_the_hubs_and_spellings_agree(counted, tmp_path):
    exchange, key, calls = counted
    rows = [
        ["L1", "CN_RIC", "11010519491231002X", "Zhang San", "", "credit_card", "30000.00"],
        ["L2", "CN_RIC", full_width("11010519491231002x"), "张三", "", "credit_card", "1"],
        ["L3", "CN_RIC", " 110105 19491231 002x ", "", "", "loan", "2"],
        ["L4", "PASSPORT", "E12345678", "", "us", "credit_card", "5000"],
        ["L5", "CN_MOBILE", "+86 139 0000 0001", "Li Si", "", "loan", "3"],
    ]
    write_csv(tmp_path / "in.csv", rows)
    err = io.StringIO()
    stats = blind_file(tmp_path / "in.csv", tmp_path / "out.csv", exchange, key, err=err)
    out = read_csv(tmp_path / "out.csv")
    assert out[0] == ["member_reference", "id_type", "blind", "name", "country", "product", "principal"]
    assert [r[0] for r in out[1:]] == ["L1", "L2", "L3", "L4", "L5"]
    ric = hub("CN_RIC", "11010519491231002X")
    assert [r[2] for r in out[1:4]] == [ric, ric, ric]
    assert out[4][2] == hub("PASSPORT", "E12345678", "US") and out[4][4] == "US"
    assert out[5][2] == hub("CN_MOBILE", "13900000001")
    assert [r[3] for r in out[1:]] == ["Zhang San", "张三", "", "", "Li Si"]  # the name as written
    assert [r[5:] for r in out[1:]] == [r[5:] for r in rows]
    assert "110105" not in (tmp_path / "out.csv").read_text()
    assert calls == [5] and stats.blinded == 5 and stats.rejected == 0
    assert "5 rows blinded" in err.getvalue()


def test_invalid_rows_are_reported_by_line_and_not_sent(counted, tmp_path):
    exchange, key, calls = counted
    rows = [
        ["L1", "CN_MOBILE", mobile(1), "", "", "loan", "1"],
        ["L2", "CN_RIC", "110105194912310021", "", "", "loan", "1"],  # wrong check character
        ["L3", "CN_MOBILE", 'multi\nline"', "", "", "loan", "1"],  # spans two physical lines
        ["L4", "PASSPORT", "E12345678", "", "", "loan", "1"],  # no country
        ["L5", "CN_MOBILE", mobile(5), "", "", "loan"],  # a field short
        ["L6", "NATIONAL_ID", "123", "", "", "loan", "1"],
        ["L7", "CN_MOBILE", mobile(7), "", "", "loan", "1"],
    ]
    write_csv(tmp_path / "in.csv", rows)
    err = io.StringIO()
    stats = blind_file(tmp_path / "in.csv", tmp_path / "out.csv", exchange, key, err=err, rejects=tmp_path / "rej.csv")
    assert [r[0] for r in read_csv(tmp_path / "out.csv")[1:]] == ["L1", "L7"]
    assert calls == [2] and stats.rejected == 5
    messages = [line for line in err.getvalue().splitlines() if "line " in line]
    assert [m.split(":")[1].strip() for m in messages] == ["line 3", "line 4", "line 6", "line 7", "line 8"]
    assert "check character" in messages[0] and "country" in messages[2] and "fields" in messages[3]
    assert "110105194912310021" not in err.getvalue()
    rejected = read_csv(tmp_path / "rej.csv")
    assert rejected[0] == ["line", *HEADER, "error"]
    assert [r[:2] for r in rejected[1:]] == [["3", "L2"], ["4", "L3"], ["6", "L4"], ["7", "L5"], ["8", "L6"]]
    assert rejected[1][3] == "110105194912310021"  # the member's own file keeps the row as read


def test_2500_rows_take_three_calls_in_order(counted, tmp_path):
    exchange, key, calls = counted
    write_csv(tmp_path / "in.csv", ([f"L{n}", "CN_MOBILE", mobile(n), "", "", "loan", "1"] for n in range(2500)))
    blind_file(tmp_path / "in.csv", tmp_path / "out.csv", exchange, key, err=io.StringIO())
    out = read_csv(tmp_path / "out.csv")
    assert calls == [1000, 1000, 500]
    assert len(out) == 2501 and [r[0] for r in out[1:]] == [f"L{n}" for n in range(2500)]
    assert [out[1 + n][2] for n in (0, 999, 1000, 2499)] == [hub("CN_MOBILE", mobile(n)) for n in (0, 999, 1000, 2499)]


def test_rows_are_read_lazily_at_most_three_batches_held(counted):
    exchange, key, calls = counted
    header = ["id_type", "id_number"]
    state = {"read": 0, "written": 0, "most": 0}
    margin = 2

    def source():
        for n in range(5600):
            held = state["read"] - state["written"]
            state["most"] = max(state["most"], held)
            if held >= 3000 + margin:
                raise AssertionError(f"read {state['read']} rows with only {state['written']} written")
            state["read"] += 1
            yield n + 2, ["CN_MOBILE", mobile(n)]

    for _row in blind_rows(header, source(), exchange, key, on_reject=pytest.fail):
        state["written"] += 1
    assert state["read"] == state["written"] == 5600 and calls == [1000] * 5 + [600]


def test_batches_in_flight_fail_in_order_and_nothing_after_the_failed_one_is_yielded(counted):
    """The pipeline: a batch whose proof does not verify (the second) raises BatchFailed naming
    its lines, after the first batch's rows and before any later row; a failed call (the
    first) is the last call made."""
    exchange, key, _calls = counted
    header = ["id_type", "id_number"]
    original = exchange.transport
    sent = []

    def bad_proof_on_second(request):
        status, answer = original(request)
        if request.json:
            sent.append(len(request.json["blinded"]))
            if len(sent) == 2:
                answer = {**answer, "proof": base64.b64encode(bytes(64)).decode()}
        return status, answer

    exchange.transport = bad_proof_on_second
    lines = []
    rows = ((n + 2, ["CN_MOBILE", mobile(n)]) for n in range(4500))
    with pytest.raises(BatchFailed) as caught:
        for line, _row in blind_numbered_rows(header, rows, exchange, key, on_reject=pytest.fail):
            lines.append(line)
    assert (caught.value.first_line, caught.value.last_line) == (1002, 2001)
    assert isinstance(caught.value.cause, BadAnswer)
    assert lines == list(range(2, 1002)) and len(sent) <= 3

    def failing_first(request):
        if request.json:
            sent.append(len(request.json["blinded"]))
            return 503, {"code": "unavailable", "detail": "try later"}
        return original(request)

    exchange.transport, sent[:], lines[:] = failing_first, [], []
    rows = ((n + 2, ["CN_MOBILE", mobile(n)]) for n in range(4500))
    with pytest.raises(BatchFailed) as caught:
        for line, _row in blind_numbered_rows(header, rows, exchange, key, on_reject=pytest.fail):
            lines.append(line)
    assert (caught.value.first_line, caught.value.last_line) == (2, 1001) and sent == [1000] and lines == []


def test_output_appears_only_by_rename_and_a_failed_batch_leaves_nothing(counted, tmp_path, monkeypatch):
    exchange, key, _calls = counted
    write_csv(tmp_path / "in.csv", ([f"L{n}", "CN_MOBILE", mobile(n), "", "", "loan", "1"] for n in range(1500)))
    renames = []
    real_replace = __import__("os").replace
    monkeypatch.setattr("cx_client.blindfile.os.replace", lambda a, b: renames.append((a, b)) or real_replace(a, b))
    blind_file(tmp_path / "in.csv", tmp_path / "out.csv", exchange, key, err=io.StringIO())
    [(tmp, final)] = renames
    assert tmp.parent == tmp_path and tmp.name.startswith(".out.csv.") and final == tmp_path / "out.csv"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv", "pin.json"]

    # the second call fails: no out2.csv, no temporary file, the row range named
    original = exchange.transport
    sent = []

    def failing(request):
        sent.append(len(request.json["blinded"]))
        return (500, {"code": "internal", "detail": "boom"}) if len(sent) == 2 else original(request)

    exchange.transport = failing
    with pytest.raises(BatchFailed) as caught:
        blind_file(tmp_path / "in.csv", tmp_path / "out2.csv", exchange, key, err=io.StringIO())
    assert (caught.value.first_line, caught.value.last_line) == (1002, 1501)
    assert "lines 1002-1501" in str(caught.value) and sent == [1000, 500] and sent == [1000, 500]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv", "pin.json"]


def failing_evaluation(transport):
    def send(request):
        return (503, {"code": "unavailable", "detail": "try later"}) if request.json else transport(request)

    return send


def test_cx_blind_file_command_and_a_changed_key_refused(bank_a, tmp_path, monkeypatch, capsys, settings):
    monkeypatch.setenv("CX_URL", "https://exchange.example")
    monkeypatch.setenv("CX_API_KEY", "unused")
    monkeypatch.setenv("CX_PIN_FILE", str(tmp_path / "pin.json"))
    monkeypatch.setattr(cli, "http_transport", lambda url, key: api_transport(bank_a))
    write_csv(
        tmp_path / "in.csv",
        [["L1", "CN_MOBILE", mobile(1), "", "", "loan", "1"], ["L2", "CN_MOBILE", "12", "", "", "loan", "1"]],
    )
    assert cli.main(["blind-file", str(tmp_path / "in.csv"), str(tmp_path / "out.csv")]) == 0
    err = capsys.readouterr().err
    assert "line 3: id_number" in err and "1 rows blinded into" in err and "1 rejected" in err
    assert read_csv(tmp_path / "out.csv")[1][2] == hub("CN_MOBILE", mobile(1))
    assert "\rcx: 1 rows blinded, 1 rejected" in err  # the progress line

    # a failed call: exit 1, the row range named, no file
    monkeypatch.setattr(cli, "http_transport", lambda url, key: failing_evaluation(api_transport(bank_a)))
    assert cli.main(["blind-file", str(tmp_path / "in.csv"), str(tmp_path / "new.csv")]) == 1
    assert "lines 2-2 failed" in capsys.readouterr().err
    assert not (tmp_path / "new.csv").exists()
    monkeypatch.setattr(cli, "http_transport", lambda url, key: api_transport(bank_a))

    # the exchange's key changes: refused before any row is sent, no output
    settings.EXCHANGE_OPRF_KEY = base64.b64encode(b"n" * 32).decode()
    assert cli.main(["blind-file", str(tmp_path / "in.csv"), str(tmp_path / "new.csv")]) == 3
    assert "key changed" in capsys.readouterr().err
    assert not (tmp_path / "new.csv").exists()

    # a file without an id_number column
    write_csv(tmp_path / "bad.csv", [["x"]], header=["member_reference"])
    assert cli.main(["blind-file", str(tmp_path / "bad.csv"), str(tmp_path / "new.csv"), "--accept-new-key"]) == 2
    assert "no id_type and no id_number column" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv", "in.csv", "out.csv", "pin.json"]
