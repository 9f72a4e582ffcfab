"""docs/integration.md's worked example of blind subjects is recomputed here, line by line."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from cx_client import voprf
from cx_client.subjects import oprf_input

DOC = Path(__file__).resolve().parents[2] / "docs" / "integration.md"


def _example() -> dict[str, bytes]:
    block = DOC.read_text().split("<!-- oprf-worked-example -->", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    return {name: bytes.fromhex(value) for name, value in re.findall(r"^(\w+) = ([0-9a-f]+)$", block, re.M)}


def test_the_worked_example_is_what_the_code_computes():
    ex = _example()
    assert len(ex) == 11
    assert ex["KeyInfo"] == b"cx-oprf-v1"
    assert ex["Input"] == oprf_input("CN_RIC", "11010519491231002x")
    pair = voprf.derive_key_pair(ex["Seed"], ex["KeyInfo"])
    assert (pair.secret, pair.public) == (ex["skS"], ex["pkS"])
    _, blinded = voprf.blind(ex["Input"], ex["Blind"])
    assert blinded == ex["BlindedElement"]
    evaluated, proof = voprf.blind_evaluate_batch(pair, [blinded], proof_random=ex["ProofRandomScalar"])
    assert evaluated == [ex["EvaluationElement"]] and proof == ex["Proof"]
    [output] = voprf.finalize_batch([ex["Input"]], [ex["Blind"]], evaluated, [blinded], pair.public, proof)
    assert output == ex["Output"] == voprf.evaluate(pair.secret, ex["Input"])
    text = DOC.read_text()
    for raw in (pair.public, blinded, evaluated[0], proof, output):
        assert base64.b64encode(raw).decode() in text
