"""The cx command's edges (review 22): argparse never prints a misplaced ID back, `-` reads the
ID from stdin, and a pin file that cannot be read is a clear error, the pin written atomically."""

from __future__ import annotations

import io
import json
import os
import stat

import pytest
from cx_client import cli
from cx_client.blinding import BadPin, KeyPin, PinnedKey

from tests.client.fakes import FakeExchange
from tests.client.test_cli_commands import CONSENT, RIC, run

INQUIRE = ["--consent-id", CONSENT, "--purpose", "credit_application"]


@pytest.mark.parametrize(
    "argv",
    [
        ["blind", RIC, "CN_RIC"],  # swapped
        ["blind", "CN_RIC", RIC[:6], RIC[6:]],  # typed with a space
        ["consent", RIC, "CN_RIC", "--purpose", "credit_application", "--channel", "app", "--evidence", "e"],
        ["inquire", "CN_RIC", "--purpose", RIC, "--consent-id", CONSENT, RIC],
        [RIC, "blind", "CN_RIC"],
    ],
)
def test_argparse_never_prints_a_misplaced_id(fake, capsys, argv):
    try:
        status = cli.main(argv)
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    assert status == 2 and (err.startswith("usage: cx") or "id_type: must be one of" in err)
    assert RIC[:6] not in out + err and RIC[6:] not in out + err
    assert not [r for r in fake.requests if r.path != "oprf/key"]


def test_a_wrong_id_type_is_refused_by_the_command_without_the_value(fake, capsys):
    status, _out, err = run(capsys, "blind", "CN_RICX", RIC)
    assert status == 2 and "id_type: must be one of CN_RIC, CN_USCC, CN_MOBILE, PASSPORT" in err
    assert "CN_RICX" not in err and fake.requests == []


@pytest.mark.parametrize("typed", [f"{RIC}\n", f"  {RIC.lower()}  \r\n", RIC])
def test_dash_reads_the_id_from_stdin_for_blind_consent_and_inquire(fake, tmp_path, capsys, monkeypatch, typed):
    (tmp_path / "e.pdf").write_bytes(b"doc")
    fake.routes["POST", "consents"] = (201, {"id": CONSENT})
    fake.routes["POST", "inquiries"] = (200, {"id": "i1"})
    blind = {"id_type": "CN_RIC", "blind": fake.blind("CN_RIC", RIC)}
    for argv in (
        ["blind", "CN_RIC", "-"],
        ["consent", "CN_RIC", "-", "--purpose", "credit_application", "--channel", "app", "--evidence", "e.pdf"],
        ["inquire", "CN_RIC", "-", *INQUIRE],
    ):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr("sys.stdin", io.StringIO(typed + ("not read\n" if typed.endswith("\n") else "")))
        status, out, err = run(capsys, *argv)
        assert status == 0, err
        sent = json.loads(out) if argv[0] == "blind" else fake.requests[-1].json["subject"]
        assert sent == blind and RIC not in out + err
    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    assert run(capsys, "inquire", "CN_RIC", "-", *INQUIRE, "--raw")[0] == 0
    assert fake.requests[-1].json["subject"]["id_number"] == typed.strip()


def test_dash_with_nothing_on_stdin_exits_2(fake, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    status, _out, err = run(capsys, "blind", "CN_RIC", "-")
    assert status == 2 and "stdin gave none" in err and fake.requests == []


@pytest.mark.parametrize(
    "content",
    [
        "{",
        "[]",
        '{"key_id": "o1"}',
        '{"key_id": "o1", "public_key": "not base64"}',
        '{"key_id": "o1", "public_key": "' + "A" * 43 + '="}',
        '{"key_id": 7, "public_key": ""}',
    ],
)
def test_a_pin_file_that_cannot_be_read_exits_2_without_a_traceback(fake, tmp_path, capsys, content):
    (tmp_path / "pin.json").write_text(content)
    status, out, err = run(capsys, "blind", "CN_RIC", RIC)
    assert status == 2 and f"the pinned OPRF key in {tmp_path / 'pin.json'} cannot be read" in err
    assert "--accept-new-key" in err and out == "" and fake.evaluations() == []
    # accepting the served key replaces the pin
    status, out, _err = run(capsys, "blind", "CN_RIC", RIC, "--accept-new-key")
    assert status == 0 and json.loads(out)["blind"] == fake.blind("CN_RIC", RIC)
    assert KeyPin(tmp_path / "pin.json").load() == PinnedKey("ofake", fake.pair.public)


def test_a_pin_that_is_a_directory_is_bad_too(tmp_path):
    (tmp_path / "pin.json").mkdir()
    with pytest.raises(BadPin):
        KeyPin(tmp_path / "pin.json").load()


def test_the_pin_is_written_atomically_0600_whatever_was_there(tmp_path, monkeypatch):
    path = tmp_path / "cx" / "pin.json"
    pin = KeyPin(path)
    key = PinnedKey("o1", FakeExchange().pair.public)
    pin.save(key)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and pin.load() == key
    path.chmod(0o644)
    replaced = []
    original = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: replaced.append((src, dst)) or original(src, dst))
    other = PinnedKey("o2", FakeExchange(b"o" * 32).pair.public)
    pin.save(other)
    [(src, dst)] = replaced
    assert os.path.dirname(src) == str(path.parent) and dst == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and pin.load() == other
    assert os.listdir(path.parent) == ["pin.json"]  # no temporary file left

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        pin.save(key)
    assert pin.load() == other and os.listdir(path.parent) == ["pin.json"]
