"""Parsing the exchange's key settings: base64 keys of a fixed length and the field-key ring.

Here rather than in config/ so that core reads its own keys without importing settings code;
config/env.py uses the same helpers to check the environment.
"""

from __future__ import annotations

import base64
import binascii

from django.core.exceptions import ImproperlyConfigured


def decode_key(name: str, value: str, *, length: int = 32) -> bytes:
    """Decode a base64 key and check its length; the error never echoes the key."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{name} is not valid base64") from None
    if len(raw) != length:
        raise ImproperlyConfigured(f"{name} must decode to {length} bytes, not {len(raw)}")
    return raw


def parse_field_keys(value: str) -> list[tuple[str, bytes]]:
    """Parse EXCHANGE_FIELD_KEYS: comma-separated `keyid:base64`; the first one encrypts."""
    ring: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        key_id, sep, encoded = part.partition(":")
        if not sep or not key_id:
            raise ImproperlyConfigured("EXCHANGE_FIELD_KEYS entries must look like keyid:base64")
        if not (1 <= len(key_id.encode()) <= 32) or not key_id.replace("-", "").replace("_", "").isalnum():
            raise ImproperlyConfigured("EXCHANGE_FIELD_KEYS key ids must be 1-32 letters, digits, - or _")
        if key_id in seen:
            raise ImproperlyConfigured(f"EXCHANGE_FIELD_KEYS names key id {key_id!r} twice")
        seen.add(key_id)
        ring.append((key_id, decode_key(f"EXCHANGE_FIELD_KEYS[{key_id}]", encoded)))
    if not ring:
        raise ImproperlyConfigured("EXCHANGE_FIELD_KEYS holds no key")
    return ring
