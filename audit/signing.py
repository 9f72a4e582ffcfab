"""Ed25519 signatures over audit checkpoints and export manifests.

The private key comes from settings.EXCHANGE_AUDIT_SIGNING_KEY at call time (cached by value,
so a changed setting takes effect at once); verifying needs only the base64 public key.
"""

from __future__ import annotations

import base64
import binascii
import functools
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from audit.chain import canonical_json, iso_utc
from core.keys import decode_key

# Domain separation: a checkpoint signature can never pass for a manifest signature or vice versa.
CHECKPOINT_CONTEXT = b"exchange-audit-checkpoint-v1\n"
MANIFEST_CONTEXT = b"exchange-audit-export-manifest-v1\n"


@functools.lru_cache(maxsize=4)
def _private_key_from(value: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(decode_key("EXCHANGE_AUDIT_SIGNING_KEY", value))


def private_key() -> Ed25519PrivateKey:
    value = getattr(settings, "EXCHANGE_AUDIT_SIGNING_KEY", None)
    if not value:
        raise ImproperlyConfigured("EXCHANGE_AUDIT_SIGNING_KEY is not set")
    return _private_key_from(value)


def public_key_b64(key: Ed25519PrivateKey | None = None) -> str:
    """The base64 raw public key that verifies what this exchange signs."""
    raw = (key or private_key()).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode("ascii")


def load_public_key(value: str) -> Ed25519PublicKey:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise ValueError("not a base64 raw Ed25519 public key") from None


def _verify(public_key: str, signature: str, message: bytes) -> bool:
    try:
        key = load_public_key(public_key)
        key.verify(base64.b64decode(signature, validate=True), message)
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True


def checkpoint_message(*, seq: int, hash: str, signed_at: datetime) -> bytes:
    return CHECKPOINT_CONTEXT + canonical_json({"hash": hash, "seq": seq, "signed_at": iso_utc(signed_at)}).encode()


def sign_checkpoint(*, seq: int, hash: str, signed_at: datetime) -> tuple[str, str]:
    """Returns (public key, signature), both base64."""
    key = private_key()
    signature = key.sign(checkpoint_message(seq=seq, hash=hash, signed_at=signed_at))
    return public_key_b64(key), base64.b64encode(signature).decode("ascii")


def checkpoint_signature_valid(*, public_key: str, seq: int, hash: str, signed_at: datetime, signature: str) -> bool:
    return _verify(public_key, signature, checkpoint_message(seq=seq, hash=hash, signed_at=signed_at))


def manifest_message(manifest: dict[str, Any]) -> bytes:
    body = {name: value for name, value in manifest.items() if name != "signature"}
    return MANIFEST_CONTEXT + canonical_json(body).encode()


def sign_manifest(manifest: dict[str, Any]) -> str:
    return base64.b64encode(private_key().sign(manifest_message(manifest))).decode("ascii")


def manifest_signature_valid(manifest: dict[str, Any], public_key: str) -> bool:
    signature = manifest.get("signature")
    if not isinstance(signature, str):
        return False
    return _verify(public_key, signature, manifest_message(manifest))


def require_public_key(value: str) -> str:
    """Validate a public key given on a command line; returns it unchanged."""
    try:
        load_public_key(value)
    except ValueError:
        raise ImproperlyConfigured("the public key must be base64 of 32 raw Ed25519 bytes") from None
    return value.strip()
