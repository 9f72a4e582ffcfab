"""The member client's path (cx_client.voprf) against RFC 9497's ristretto255-SHA512 vectors."""

from __future__ import annotations

import pytest
from cx_client import voprf

from tests.client.vectors import suite, vectors

VOPRF = suite("voprf")
OPRF = suite("oprf")


def test_derive_key_pair_gives_the_rfc_keys():
    pair = voprf.derive_key_pair(VOPRF["Seed"], VOPRF["KeyInfo"], voprf.VOPRF)
    assert pair.secret == VOPRF["skSm"]
    assert pair.public == VOPRF["pkSm"]
    assert voprf.derive_key_pair(OPRF["Seed"], OPRF["KeyInfo"], voprf.OPRF).secret == OPRF["skSm"]


@pytest.mark.parametrize("vector", vectors("voprf"), ids=["A.1.2.1", "A.1.2.2", "A.1.2.3-batch2"])
def test_voprf_client_blinds_verifies_and_finalises_like_the_rfc(vector):
    blinded = [
        voprf.blind(inp, blind, voprf.VOPRF)[1] for inp, blind in zip(vector["Input"], vector["Blind"], strict=True)
    ]
    assert blinded == vector["BlindedElement"]
    outputs = voprf.finalize_batch(
        vector["Input"],
        vector["Blind"],
        vector["EvaluationElement"],
        blinded,
        VOPRF["pkSm"],
        vector["Proof"],
        voprf.VOPRF,
    )
    assert outputs == vector["Output"]
    assert all(len(output) == voprf.OUTPUT_BYTES for output in outputs)


@pytest.mark.parametrize("vector", vectors("voprf"), ids=["A.1.2.1", "A.1.2.2", "A.1.2.3-batch2"])
def test_the_client_refuses_the_rfc_proof_under_another_key_or_with_a_changed_element(vector):
    other = voprf.derive_key_pair(bytes(32), b"another key", voprf.VOPRF).public
    args = (vector["BlindedElement"], vector["EvaluationElement"], vector["Proof"], voprf.VOPRF)
    assert voprf.verify_proof(VOPRF["pkSm"], *args)
    assert not voprf.verify_proof(other, *args)
    swapped = list(reversed(vector["EvaluationElement"]))
    if len(swapped) > 1:
        assert not voprf.verify_proof(VOPRF["pkSm"], vector["BlindedElement"], swapped, vector["Proof"])
    tampered = vector["Proof"][:-1] + bytes([vector["Proof"][-1] ^ 1])
    assert not voprf.verify_proof(VOPRF["pkSm"], vector["BlindedElement"], vector["EvaluationElement"], tampered)
    with pytest.raises(voprf.InvalidProof):
        voprf.finalize_batch(
            vector["Input"],
            vector["Blind"],
            vector["EvaluationElement"],
            vector["BlindedElement"],
            other,
            vector["Proof"],
        )


@pytest.mark.parametrize("vector", vectors("oprf"), ids=["A.1.1.1", "A.1.1.2"])
def test_oprf_mode_client_path_matches_the_rfc(vector):
    for inp, blind, blinded, evaluated, output in zip(
        vector["Input"],
        vector["Blind"],
        vector["BlindedElement"],
        vector["EvaluationElement"],
        vector["Output"],
        strict=True,
    ):
        assert voprf.blind(inp, blind, voprf.OPRF)[1] == blinded
        assert voprf.unblind(inp, blind, evaluated) == output
