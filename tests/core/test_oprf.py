"""The exchange's VOPRF (core.oprf): RFC 9497 vectors on the server path, element checks, the key setting."""

from __future__ import annotations

import base64

import pytest
from cx_client import voprf
from cx_client.subjects import oprf_input

from core import oprf
from core.secrets import SECRET_NAMES, load_dev_keys
from tests.client.vectors import suite, vectors
from tests.testenv import TEST_OPRF_KEY

VOPRF = suite("voprf")


def _rfc_key() -> oprf.OprfKey:
    pair = voprf.derive_key_pair(VOPRF["Seed"], VOPRF["KeyInfo"], voprf.VOPRF)
    assert (pair.secret, pair.public) == (VOPRF["skSm"], VOPRF["pkSm"])
    return oprf.OprfKey(pair=pair, key_id="rfc")


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize("vector", vectors("voprf"), ids=["A.1.2.1", "A.1.2.2", "A.1.2.3-batch2"])
def test_the_server_evaluates_the_rfc_vectors_with_the_rfc_proof(vector):
    key = _rfc_key()
    encoded = [_b64(e) for e in vector["BlindedElement"]]
    result = oprf.evaluate_encoded(encoded, key, proof_random=vector["ProofRandomScalar"])
    assert result.evaluated == vector["EvaluationElement"]
    assert result.proof == vector["Proof"]
    # with a fresh random scalar the proof differs but still verifies
    fresh = oprf.evaluate_encoded(encoded, key)
    assert fresh.evaluated == vector["EvaluationElement"]
    assert fresh.proof != vector["Proof"]
    assert voprf.verify_proof(key.pair.public, vector["BlindedElement"], fresh.evaluated, fresh.proof)


@pytest.mark.parametrize("vector", vectors("voprf"), ids=["A.1.2.1", "A.1.2.2", "A.1.2.3-batch2"])
def test_the_servers_direct_evaluate_gives_the_rfc_output(vector):
    key = _rfc_key()
    assert [oprf.evaluate_input(inp, key) for inp in vector["Input"]] == vector["Output"]


def test_a_raw_id_evaluated_by_the_hub_equals_the_members_blind_path():
    key = oprf.oprf_key()
    inp = oprf_input("CN_RIC", "11010519491231002x")
    blind, blinded = voprf.blind(inp)
    result = oprf.evaluate_encoded([_b64(blinded)], key)
    [output] = voprf.finalize_batch([inp], [blind], result.evaluated, [blinded], key.pair.public, result.proof)
    assert output == oprf.evaluate_subject("CN_RIC", "11010519491231002X")
    assert len(output) == 64


def test_bad_elements_are_listed_by_index_and_nothing_is_evaluated():
    good = _b64(voprf.blind(b"x")[1])
    values = [
        good,
        _b64(bytes(32)),  # the identity
        _b64(b"\xff" * 32),  # not canonical (above the field prime)
        _b64(b"\x01" + bytes(31)),  # a "negative" field element: not a ristretto255 encoding
        "not base64!",
        _b64(b"short"),
        7,
        good,
    ]
    with pytest.raises(oprf.BadElements) as caught:
        oprf.evaluate_encoded(values)
    assert [index for index, _ in caught.value.errors] == [1, 2, 3, 4, 5, 6]


def test_the_key_comes_from_the_setting_with_the_documented_info_string(settings):
    expected = voprf.derive_key_pair(TEST_OPRF_KEY, b"cx-oprf-v1", voprf.VOPRF)
    assert oprf.oprf_key().pair == expected
    settings.EXCHANGE_OPRF_KEY = _b64(b"n" * 32)
    assert oprf.oprf_key().pair.public != expected.public
    assert oprf.oprf_key().key_id.startswith("o") and len(oprf.oprf_key().key_id) == 17


def test_an_old_dev_key_file_gains_the_new_secret_once(tmp_path):
    path = tmp_path / "dev-keys.env"
    path.write_text("SECRET_KEY=x\nEXCHANGE_SUBJECT_KEY=y\n")
    first = load_dev_keys(path)
    assert set(first) == set(SECRET_NAMES)
    assert first["SECRET_KEY"] == "x"
    assert load_dev_keys(path) == first
    assert path.read_text().count("EXCHANGE_OPRF_KEY=") == 1
