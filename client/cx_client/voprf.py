"""RFC 9497 VOPRF (mode 0x01) and OPRF (mode 0x00) over ristretto255-SHA512, on libsodium's ristretto255.

One implementation for both sides: the member client blinds, verifies and finalises; the exchange
derives its key, evaluates a batch with one batched DLEQ proof, and evaluates raw inputs directly.
Function names follow the RFC. Elements and scalars travel as their 32-byte encodings; scalars are
little-endian and reduced. Group operations on secrets go through libsodium; plain Python integers
handle only public scalars (the composite weights and the challenge).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

import pysodium

SUITE = "ristretto255-SHA512"
MODE_OPRF = 0x00
MODE_VOPRF = 0x01
ELEMENT_BYTES = 32
SCALAR_BYTES = 32
OUTPUT_BYTES = 64
PROOF_BYTES = 2 * SCALAR_BYTES
MAX_INPUT_BYTES = 0xFFFF

# The order of the ristretto255 group.
ORDER = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = bytes(ELEMENT_BYTES)


class VoprfError(ValueError):
    """Input that RFC 9497 refuses: an invalid or identity element, a proof that does not verify."""


class InvalidElement(VoprfError):
    """Not the canonical encoding of a ristretto255 element, or the identity."""


class InvalidElements(InvalidElement):
    """Elements of a batch refused, by their index in it."""

    def __init__(self, indices: list[int]):
        super().__init__(f"{len(indices)} elements are not canonical, non-identity ristretto255 elements")
        self.indices = indices


class InvalidProof(VoprfError):
    """The evaluator's proof does not verify against the public key."""


def _i2osp2(n: int) -> bytes:
    return n.to_bytes(2, "big")


def _lv(data: bytes) -> bytes:
    """A length-prefixed field, as every RFC 9497 transcript writes its inputs."""
    return _i2osp2(len(data)) + data


@dataclass(frozen=True)
class Context:
    """The domain-separation strings of one mode (RFC 9497 section 3.1, `contextString`)."""

    mode: int

    @property
    def context_string(self) -> bytes:
        return b"OPRFV1-" + bytes([self.mode]) + b"-" + SUITE.encode()

    @property
    def hash_to_group_dst(self) -> bytes:
        return b"HashToGroup-" + self.context_string

    @property
    def hash_to_scalar_dst(self) -> bytes:
        return b"HashToScalar-" + self.context_string


VOPRF = Context(MODE_VOPRF)
OPRF = Context(MODE_OPRF)

_Z_PAD = hashlib.sha512(bytes(128))  # expand_message_xmd's first block, hashed once and copied


def expand_message_xmd(msg: bytes, dst: bytes, length: int = 64) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-512, for the 64-byte outputs this suite needs (one block)."""
    if length != 64 or len(dst) > 255:
        raise ValueError("this suite expands to 64 bytes with a DST of at most 255 bytes")
    dst_prime = dst + bytes([len(dst)])
    b0 = _Z_PAD.copy()
    b0.update(msg + length.to_bytes(2, "big") + b"\x00" + dst_prime)
    return hashlib.sha512(b0.digest() + b"\x01" + dst_prime).digest()


def hash_to_group(msg: bytes, ctx: Context = VOPRF) -> bytes:
    """HashToGroup: hash_to_ristretto255 (RFC 9380 appendix B, RFC 9496 one-way map)."""
    return pysodium.crypto_core_ristretto255_from_hash(expand_message_xmd(msg, ctx.hash_to_group_dst))


def hash_to_scalar_int(msg: bytes, dst: bytes) -> int:
    """HashToScalar as an integer: 64 uniform bytes read little-endian, reduced modulo the order."""
    return int.from_bytes(expand_message_xmd(msg, dst), "little") % ORDER


def scalar_bytes(n: int) -> bytes:
    return (n % ORDER).to_bytes(SCALAR_BYTES, "little")


def scalar_int(encoded: bytes) -> int:
    """A canonical scalar encoding (reduced, 32 bytes) as an integer; anything else is refused."""
    if len(encoded) != SCALAR_BYTES:
        raise VoprfError("a scalar is 32 bytes")
    n = int.from_bytes(encoded, "little")
    if n >= ORDER:
        raise VoprfError("a scalar must be reduced modulo the group order")
    return n


def check_element(encoded: bytes) -> bytes:
    """DeserializeElement: a canonical ristretto255 encoding that is not the identity."""
    if (
        not isinstance(encoded, bytes)
        or len(encoded) != ELEMENT_BYTES
        or hmac.compare_digest(encoded, _IDENTITY)
        or not pysodium.crypto_core_ristretto255_is_valid_point(encoded)
    ):
        raise InvalidElement("not a canonical, non-identity ristretto255 element")
    return encoded


def _mult(scalar: bytes, element: bytes) -> bytes:
    """scalar * element; libsodium refuses an invalid element and an identity result."""
    try:
        return pysodium.crypto_scalarmult_ristretto255(scalar, element)
    except ValueError:
        raise InvalidElement("scalar multiplication gave the identity or met an invalid element") from None


def _add(p: bytes, q: bytes) -> bytes:
    return pysodium.crypto_core_ristretto255_add(p, q)


# --- keys ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    secret: bytes  # skS, 32-byte little-endian scalar
    public: bytes  # pkS = skS * G, 32-byte element


def derive_key_pair(seed: bytes, info: bytes, ctx: Context = VOPRF) -> KeyPair:
    """DeriveKeyPair (RFC 9497 section 3.2.1): a deterministic key pair from a 32-byte seed and an info string."""
    if len(seed) != 32:
        raise ValueError("the seed is 32 bytes")
    derive_input = seed + _lv(info)
    dst = b"DeriveKeyPair" + ctx.context_string
    for counter in range(256):
        sk = hash_to_scalar_int(derive_input + bytes([counter]), dst)
        if sk:
            secret = scalar_bytes(sk)
            return KeyPair(secret=secret, public=pysodium.crypto_scalarmult_ristretto255_base(secret))
    raise VoprfError("DeriveKeyPair found no key")  # pragma: no cover - probability 2^-2000


# --- the client ---------------------------------------------------------------------------


def blind(inp: bytes, blind_scalar: bytes | None = None, ctx: Context = VOPRF) -> tuple[bytes, bytes]:
    """Blind: (blind, blindedElement). `blind_scalar` is for test vectors only; normally it is random."""
    if len(inp) > MAX_INPUT_BYTES:
        raise VoprfError("an input is at most 65535 bytes")
    if blind_scalar is None:
        blind_scalar = pysodium.crypto_core_ristretto255_scalar_random()
    elif not scalar_int(blind_scalar):
        raise VoprfError("the blind must not be zero")
    element = hash_to_group(inp, ctx)
    if hmac.compare_digest(element, _IDENTITY):
        raise VoprfError("the input maps to the identity element")  # pragma: no cover - negligible
    return blind_scalar, _mult(blind_scalar, element)


def _finalize_hash(inp: bytes, unblinded: bytes) -> bytes:
    return hashlib.sha512(_lv(inp) + _lv(unblinded) + b"Finalize").digest()


def unblind(inp: bytes, blind_scalar: bytes, evaluated: bytes) -> bytes:
    """The last step of Finalize, once the proof has been checked: Hash(input, blind^-1 * evaluated)."""
    inverse = pysodium.crypto_core_ristretto255_scalar_invert(blind_scalar)
    return _finalize_hash(inp, _mult(inverse, check_element(evaluated)))


def finalize_batch(
    inputs: Sequence[bytes],
    blinds: Sequence[bytes],
    evaluated: Sequence[bytes],
    blinded: Sequence[bytes],
    public_key: bytes,
    proof: bytes,
    ctx: Context = VOPRF,
) -> list[bytes]:
    """Finalize for a batch (RFC 9497 section 3.3.2): verify the batched proof, then unblind each.

    Raises InvalidProof if the evaluator did not use the key behind `public_key`.
    """
    if not len(inputs) == len(blinds) == len(evaluated) == len(blinded):
        raise VoprfError("inputs, blinds, evaluated and blinded elements must be as many")
    if not verify_proof(public_key, blinded, evaluated, proof, ctx):
        raise InvalidProof("the proof does not verify against the pinned public key")
    return [unblind(i, b, e) for i, b, e in zip(inputs, blinds, evaluated, strict=True)]


# --- the server ---------------------------------------------------------------------------


def evaluate(secret: bytes, inp: bytes, ctx: Context = VOPRF) -> bytes:
    """Evaluate (RFC 9497 section 3.3.3): the PRF output of an input the server knows."""
    if len(inp) > MAX_INPUT_BYTES:
        raise VoprfError("an input is at most 65535 bytes")
    element = hash_to_group(inp, ctx)
    return _finalize_hash(inp, _mult(secret, element))


def blind_evaluate(secret: bytes, blinded: bytes) -> bytes:
    """BlindEvaluate of one element without a proof (OPRF mode); the element must have passed check_element."""
    return _mult(secret, blinded)


def blind_evaluate_batch(
    key: KeyPair, blinded: Sequence[bytes | None], ctx: Context = VOPRF, *, proof_random: bytes | None = None
) -> tuple[list[bytes], bytes]:
    """BlindEvaluate of a batch with one proof: (evaluated elements, proof `c || s`).

    The multiplication checks each element: libsodium refuses a non-canonical encoding, and the
    identity (the only element whose product is the identity). InvalidElements lists the refused
    indices (None entries count as refused). `proof_random` is for test vectors only.
    """
    if not blinded:
        raise VoprfError("a batch holds at least one element")
    evaluated: list[bytes] = []
    bad: list[int] = []
    for index, element in enumerate(blinded):
        if element is None or len(element) != ELEMENT_BYTES:
            bad.append(index)
            continue
        try:
            evaluated.append(_mult(key.secret, element))
        except InvalidElement:
            bad.append(index)
    if bad:
        raise InvalidElements(bad)
    return evaluated, generate_proof(key, blinded, evaluated, ctx, proof_random=proof_random)


def _composites(
    public_key: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes], ctx: Context, secret: bytes | None
) -> tuple[bytes, bytes]:
    """ComputeCompositesFast (with the secret key) or ComputeComposites (without): (M, Z)."""
    seed_dst = b"Seed-" + ctx.context_string
    seed = hashlib.sha512(_lv(public_key) + _lv(seed_dst)).digest()
    prefix = _lv(seed)
    dst = ctx.hash_to_scalar_dst
    m = z = None
    for i, (c, d) in enumerate(zip(blinded, evaluated, strict=True)):
        di = scalar_bytes(hash_to_scalar_int(prefix + _i2osp2(i) + _lv(c) + _lv(d) + b"Composite", dst))
        term = _mult(di, c)
        m = term if m is None else _add(m, term)
        if secret is None:
            term = _mult(di, d)
            z = term if z is None else _add(z, term)
    if m is None:
        raise VoprfError("a batch holds at least one element")
    if secret is not None:
        z = _mult(secret, m)
    return m, z


def _challenge(public_key: bytes, m: bytes, z: bytes, t2: bytes, t3: bytes, ctx: Context) -> int:
    transcript = _lv(public_key) + _lv(m) + _lv(z) + _lv(t2) + _lv(t3) + b"Challenge"
    return hash_to_scalar_int(transcript, ctx.hash_to_scalar_dst)


def generate_proof(
    key: KeyPair,
    blinded: Sequence[bytes],
    evaluated: Sequence[bytes],
    ctx: Context = VOPRF,
    *,
    proof_random: bytes | None = None,
) -> bytes:
    """GenerateProof (RFC 9497 section 2.2.1): the batched DLEQ proof `c || s` that log_G(pkS) = log_C(D)."""
    m, z = _composites(key.public, blinded, evaluated, ctx, key.secret)
    r = proof_random if proof_random is not None else pysodium.crypto_core_ristretto255_scalar_random()
    t2 = pysodium.crypto_scalarmult_ristretto255_base(r)
    t3 = _mult(r, m)
    c = scalar_bytes(_challenge(key.public, m, z, t2, t3, ctx))
    s = pysodium.crypto_core_ristretto255_scalar_sub(r, pysodium.crypto_core_ristretto255_scalar_mul(c, key.secret))
    return c + s


def verify_proof(
    public_key: bytes, blinded: Sequence[bytes], evaluated: Sequence[bytes], proof: bytes, ctx: Context = VOPRF
) -> bool:
    """VerifyProof (RFC 9497 section 2.2.2) for a batch; False on any malformed part."""
    if len(proof) != PROOF_BYTES or not blinded or len(blinded) != len(evaluated):
        return False
    try:
        c, s = proof[:SCALAR_BYTES], proof[SCALAR_BYTES:]
        scalar_int(c)
        scalar_int(s)
        for element in (public_key, *blinded, *evaluated):
            check_element(element)
        m, z = _composites(public_key, blinded, evaluated, ctx, None)
        # t2 = s*G + c*pkS and t3 = s*M + c*Z; libsodium refuses a zero scalar, which an honest proof
        # reaches only with negligible probability.
        t2 = _add(pysodium.crypto_scalarmult_ristretto255_base(s), _mult(c, public_key))
        t3 = _add(_mult(s, m), _mult(c, z))
    except (VoprfError, ValueError):
        return False
    return hmac.compare_digest(scalar_bytes(_challenge(public_key, m, z, t2, t3, ctx)), c)
