"""API key format: `cx_<12 hex prefix>_<43 url-safe secret chars>`; stored as prefix + SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

KEY_RE = re.compile(r"^(cx_[0-9a-f]{12})_([A-Za-z0-9_-]{43})$")


def new_key() -> tuple[str, str, str]:
    """Return (full key, prefix, hash). The full key is shown once and never stored."""
    prefix = "cx_" + secrets.token_hex(6)
    key = f"{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, hash_key(key)


def hash_key(key: str) -> str:
    # A fast hash is right here: the key has 256 random bits, so no dictionary applies.
    return hashlib.sha256(key.encode()).hexdigest()


def split_key(key: str) -> str | None:
    """The lookup prefix of a well-formed key, or None."""
    match = KEY_RE.match(key)
    return match.group(1) if match else None


def key_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)
