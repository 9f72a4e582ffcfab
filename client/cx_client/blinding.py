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
import tempfile
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


class BadPin(Exception):
    """The pin file exists but cannot be read as a pinned key (corrupt, edited, unreadable)."""


class KeyPin:
    """The public key a member trusts, kept in a small JSON file (mode 0600, replaced atomically)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def load(self) -> PinnedKey | None:
        """The pinned key; None when there is no pin file. Raises BadPin for one that cannot be read."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise self._bad(getattr(exc, "strerror", None) or "not UTF-8 text") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise self._bad("not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("key_id"), str):
            raise self._bad("no key_id")
        try:
            public = unb64(data.get("public_key"), voprf.ELEMENT_BYTES, "public_key")
            voprf.check_element(public)
        except (BadAnswer, voprf.InvalidElement):
            raise self._bad("public_key is not a ristretto255 element in base64") from None
        return PinnedKey(key_id=data["key_id"], public_key=public)

    def _bad(self, reason: str) -> BadPin:
        return BadPin(
            f"the pinned OPRF key in {self.path} cannot be read ({reason}): remove the file and run "
            "cx key to pin the exchange's key again (confirm it with the exchange), or pass --accept-new-key"
        )

    def save(self, key: PinnedKey) -> None:
        """Write the pin atomically: a temporary file beside it (0600), synced, renamed onto it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        body = json.dumps({"suite": voprf.SUITE, "key_id": key.key_id, "public_key": b64(key.public_key)}) + "\n"
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                os.fchmod(fh.fileno(), 0o600)
                fh.write(body)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(name, self.path)
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        try:  # the rename itself, made durable
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    def check(self, served: PinnedKey, *, accept_new: bool = False) -> PinnedKey:
        """The key to verify against: the pinned one; the served one is pinned when none is yet
        (trust on first use) or when `accept_new` says the member accepts a changed key (or
        replaces a pin file that cannot be read; without it, that raises BadPin)."""
        try:
            pinned = self.load()
        except BadPin:
            if not accept_new:
                raise
            self.save(served)
            return served
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
