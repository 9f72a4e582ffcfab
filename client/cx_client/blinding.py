"""Blind subjects on the member's side: blind a batch, check the exchange's proof against the
pinned public key, finalise, and encode each output as the `blind` value a subject carries.

Nothing here talks to the network: cx_client.api carries the requests; this module is the
cryptography and the key pinning, so it can be checked on its own.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cx_client import voprf

BATCH_SIZE = 1000  # the most one evaluation call accepts


class KeyChanged(Exception):
    """The exchange answered with a public key other than the pinned one; accept it explicitly or stop."""


class BadAnswer(Exception):
    """The exchange's answer is malformed or its proof does not verify: no output is produced."""


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def unb64(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, str):
        raise BadAnswer(f"{what} is not a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadAnswer(f"{what} is not valid base64") from None
    if len(raw) != length:
        raise BadAnswer(f"{what} must decode to {length} bytes, not {len(raw)}")
    return raw


@dataclass(frozen=True)
class PinnedKey:
    key_id: str
    public_key: bytes

    @classmethod
    def from_answer(cls, answer: dict) -> PinnedKey:
        """From `GET /api/v1/oprf/key`; refuses another suite or mode, or an invalid element."""
        if answer.get("suite") != voprf.SUITE or answer.get("mode") != "VOPRF":
            raise BadAnswer(f"the exchange offers {answer.get('suite')}/{answer.get('mode')}, not {voprf.SUITE}/VOPRF")
        public = unb64(answer.get("public_key"), voprf.ELEMENT_BYTES, "public_key")
        try:
            voprf.check_element(public)
        except voprf.InvalidElement:
            raise BadAnswer("public_key is not a valid ristretto255 element") from None
        return cls(key_id=str(answer.get("key_id", "")), public_key=public)

    def same_as(self, other: PinnedKey) -> bool:
        return hmac.compare_digest(self.public_key, other.public_key)


class KeyPin:
    """The public key a member trusts, kept in a small JSON file (written 0600)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> PinnedKey | None:
        if not self.path.exists():
            return None
        data = json.loads(self.path.read_text())
        return PinnedKey(key_id=data["key_id"], public_key=base64.b64decode(data["public_key"]))

    def save(self, key: PinnedKey) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"suite": voprf.SUITE, "key_id": key.key_id, "public_key": b64(key.public_key)}, fh)
            fh.write("\n")

    def check(self, served: PinnedKey, *, accept_new: bool = False) -> PinnedKey:
        """The key to verify against: the pinned one; the served one is pinned when none is yet
        (trust on first use) or when `accept_new` says the member accepts a changed key."""
        pinned = self.load()
        if pinned is None or (accept_new and not pinned.same_as(served)):
            self.save(served)
            return served
        if not pinned.same_as(served):
            raise KeyChanged(
                f"the exchange's OPRF key changed (pinned {pinned.key_id}, served {served.key_id}); "
                "confirm with the exchange out of band, then accept it explicitly"
            )
        return pinned


@dataclass
class Batch:
    """Up to 1,000 inputs blinded for one evaluation call; the blinds never leave the member."""

    inputs: list[bytes]
    blinds: list[bytes]
    blinded: list[bytes]

    @classmethod
    def blind(cls, inputs: Sequence[bytes]) -> Batch:
        if not 1 <= len(inputs) <= BATCH_SIZE:
            raise ValueError(f"a batch holds 1 to {BATCH_SIZE} inputs")
        blinds, blinded = [], []
        for inp in inputs:
            blind, element = voprf.blind(inp)
            blinds.append(blind)
            blinded.append(element)
        return cls(list(inputs), blinds, blinded)

    def request_body(self) -> dict:
        return {"blinded": [b64(e) for e in self.blinded]}

    def finalize(self, answer: dict, key: PinnedKey) -> list[bytes]:
        """Verify the answer's batched proof against `key` and return the 64-byte outputs, in order."""
        evaluated = answer.get("evaluated")
        if not isinstance(evaluated, list) or len(evaluated) != len(self.blinded):
            raise BadAnswer("the answer does not hold one evaluated element per blinded one")
        elements = [unb64(e, voprf.ELEMENT_BYTES, f"evaluated[{i}]") for i, e in enumerate(evaluated)]
        proof = unb64(answer.get("proof"), voprf.PROOF_BYTES, "proof")
        try:
            return voprf.finalize_batch(self.inputs, self.blinds, elements, self.blinded, key.public_key, proof)
        except voprf.VoprfError as exc:
            raise BadAnswer(f"the exchange's proof does not verify against key {key.key_id}: {exc}") from None
