"""The member client against the exchange: pinning the key, blinding in batches, refusing a bad answer."""

from __future__ import annotations

import base64
import json

import pytest
from cx_client import cli, voprf
from cx_client.api import ApiError, Exchange
from cx_client.blinding import BadAnswer, Batch, KeyChanged, KeyPin, PinnedKey
from cx_client.subjects import oprf_input

from core import oprf
from tests.client.transport import api_transport


def test_the_first_key_is_pinned_and_a_changed_key_is_refused_unless_accepted(bank_a, tmp_path, settings):
    exchange = Exchange(api_transport(bank_a))
    pin = KeyPin(tmp_path / "pin.json")
    first = exchange.trusted_key(pin)
    assert first.public_key == oprf.oprf_key().pair.public
    assert (tmp_path / "pin.json").stat().st_mode & 0o777 == 0o600
    assert exchange.trusted_key(pin).same_as(first)

    settings.EXCHANGE_OPRF_KEY = base64.b64encode(b"n" * 32).decode()
    with pytest.raises(KeyChanged):
        exchange.trusted_key(pin)
    assert pin.load().same_as(first)  # still the old one
    accepted = exchange.trusted_key(pin, accept_new=True)
    assert not accepted.same_as(first) and pin.load().same_as(accepted)


def test_blind_values_come_in_calls_of_1000_and_equal_the_hubs_own_evaluation(bank_a, tmp_path):
    exchange = Exchange(api_transport(bank_a))
    key = exchange.trusted_key(KeyPin(tmp_path / "pin.json"))
    ids = [f"1390000{n:04d}" for n in range(1001)]
    calls = []
    original = exchange.transport
    exchange.transport = lambda r: calls.append(len(r.json["blinded"]) if r.json else 0) or original(r)
    values = list(exchange.blind_values((oprf_input("CN_MOBILE", i) for i in ids), key))
    assert calls == [1000, 1]
    assert len(values) == 1001
    expected = [oprf.evaluate_subject("CN_MOBILE", ids[n]) for n in (0, 1000)]
    assert [base64.b64decode(values[n]) for n in (0, 1000)] == expected


def test_an_answer_under_another_key_or_tampered_is_refused(bank_a):
    batch = Batch.blind([b"a", b"b"])
    answer = bank_a.client.post("/api/v1/oprf/evaluate", batch.request_body(), format="json").json()
    served = PinnedKey(key_id="k", public_key=oprf.oprf_key().pair.public)
    assert len(batch.finalize(answer, served)) == 2
    other = PinnedKey(key_id="x", public_key=voprf.derive_key_pair(bytes(32), b"x").public)
    with pytest.raises(BadAnswer):
        batch.finalize(answer, other)
    swapped = {**answer, "evaluated": list(reversed(answer["evaluated"]))}
    with pytest.raises(BadAnswer):
        batch.finalize(swapped, served)
    with pytest.raises(BadAnswer):
        batch.finalize({**answer, "evaluated": answer["evaluated"][:1]}, served)


def test_a_problem_answer_raises_api_error(bank_a):
    exchange = Exchange(api_transport(bank_a))
    with pytest.raises(ApiError) as caught:
        exchange._call("POST", "oprf/evaluate", {"blinded": [base64.b64encode(bytes(32)).decode()]})
    assert caught.value.status == 422 and caught.value.problem["errors"][0]["index"] == 0


def test_cx_key_and_cx_blind(bank_a, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CX_URL", "https://exchange.example")
    monkeypatch.setenv("CX_API_KEY", "unused")
    monkeypatch.setenv("CX_PIN_FILE", str(tmp_path / "pin.json"))
    monkeypatch.setattr(cli, "http_transport", lambda url, key: api_transport(bank_a))
    assert cli.main(["key"]) == 0
    assert json.loads(capsys.readouterr().out)["public_key"] == base64.b64encode(oprf.oprf_key().pair.public).decode()
    assert cli.main(["blind", "CN_RIC", "11010519491231002x"]) == 0
    out = capsys.readouterr().out
    subject = json.loads(out)
    assert subject["id_type"] == "CN_RIC"
    assert base64.b64decode(subject["blind"]) == oprf.evaluate_subject("CN_RIC", "11010519491231002X")
    assert "110105" not in out
    assert cli.main(["blind", "CN_RIC", "110105194912310021"]) == 2  # wrong check character: nothing sent
    assert "check character" in capsys.readouterr().err
