"""The exchange's side of blind subjects (RFC 9497 VOPRF, ristretto255-SHA512): its key, batch
evaluation with one batched DLEQ proof, and direct evaluation of a raw ID.

The group and protocol code is the member client's (cx_client.voprf): one implementation, tested
against the RFC's vectors on both paths. The key is derived from EXCHANGE_OPRF_KEY, a 32-byte seed,
with RFC 9497 DeriveKeyPair and the info string below (docs/privacy.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cx_client import voprf
from cx_client.subjects import oprf_input_normalised
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from core.keys import decode_key

KEY_INFO = b"cx-oprf-v1"
SUITE = voprf.SUITE
MODE = "VOPRF"
MAX_ELEMENTS = 1000
OUTPUT_BYTES = voprf.OUTPUT_BYTES  # a finalised output: SHA-512


@dataclass(frozen=True)
class OprfKey:
    pair: voprf.KeyPair
    key_id: str  # names the public key: "o" + the first 8 bytes of its SHA-256, hex

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.pair.public).decode("ascii")


def key_from_seed(seed: bytes) -> OprfKey:
    pair = voprf.derive_key_pair(seed, KEY_INFO, voprf.VOPRF)
    return OprfKey(pair=pair, key_id="o" + hashlib.sha256(pair.public).hexdigest()[:16])


_key: OprfKey | None = None


@receiver(setting_changed)
def _forget_key(*, setting: str, **kwargs) -> None:
    global _key
    if setting == "EXCHANGE_OPRF_KEY":
        _key = None


def oprf_key() -> OprfKey:
    """The key pair from EXCHANGE_OPRF_KEY, derived on first use."""
    global _key
    if _key is None:
        value = settings.EXCHANGE_OPRF_KEY
        if not value:
            raise ImproperlyConfigured("EXCHANGE_OPRF_KEY is not set")
        _key = key_from_seed(decode_key("EXCHANGE_OPRF_KEY", value))
    return _key


class BadElements(ValueError):
    """Elements refused, as (index, message) pairs in order; none of the batch was evaluated."""

    def __init__(self, errors: list[tuple[int, str]]):
        super().__init__(f"{len(errors)} elements refused")
        self.errors = errors


def _decode(values: Sequence[object], errors: list[tuple[int, str]]) -> list[bytes | None]:
    """Base64 strings to 32-byte strings; None (and an error) where that fails."""
    raw: list[bytes | None] = []
    for index, value in enumerate(values):
        decoded = None
        if not isinstance(value, str):
            errors.append((index, "must be a base64 string"))
        else:
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                errors.append((index, "is not valid base64"))
            else:
                if len(decoded) != voprf.ELEMENT_BYTES:
                    errors.append((index, f"must decode to {voprf.ELEMENT_BYTES} bytes, not {len(decoded)}"))
                    decoded = None
        raw.append(decoded)
    return raw


@dataclass(frozen=True)
class Evaluation:
    key_id: str
    evaluated: list[bytes]
    proof: bytes  # c || s, 64 bytes


def evaluate_encoded(
    values: Sequence[object], key: OprfKey | None = None, *, proof_random: bytes | None = None
) -> Evaluation:
    """BlindEvaluate base64 elements with one batched proof over all of them, in order.

    Every element must be the canonical encoding of a ristretto255 element other than the
    identity; otherwise BadElements lists every bad one by index and nothing is answered.
    `proof_random` fixes the proof's random scalar, for the RFC's test vectors only.
    """
    key = key or oprf_key()
    errors: list[tuple[int, str]] = []
    raw = _decode(values, errors)
    try:
        evaluated, proof = voprf.blind_evaluate_batch(key.pair, raw, voprf.VOPRF, proof_random=proof_random)
    except voprf.InvalidElements as exc:
        message = "is not a canonical, non-identity ristretto255 element"
        errors.extend((index, message) for index in exc.indices if raw[index] is not None)
    if errors:
        raise BadElements(sorted(errors))
    return Evaluation(key_id=key.key_id, evaluated=evaluated, proof=proof)


def evaluate_subject(id_type: str, normalised_id: str, country: str = "", key: OprfKey | None = None) -> bytes:
    """The 64-byte OPRF output of a raw, already normalised ID (RFC 9497 Evaluate): what a member
    would obtain by blinding the same ID, so that raw and blind spellings meet in one subject."""
    return evaluate_input(oprf_input_normalised(id_type, normalised_id, country), key)


def evaluate_input(inp: bytes, key: OprfKey | None = None) -> bytes:
    """RFC 9497 Evaluate of any input under the exchange's key."""
    key = key or oprf_key()
    return voprf.evaluate(key.pair.secret, inp, voprf.VOPRF)
