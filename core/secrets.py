"""Generating the exchange's secrets, and the development key file that holds them locally."""

from __future__ import annotations

import base64
import fcntl
import os
import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SECRET_NAMES = (
    "SECRET_KEY",
    "EXCHANGE_SUBJECT_KEY",
    "EXCHANGE_FIELD_KEYS",
    "EXCHANGE_AUDIT_SIGNING_KEY",
    "EXCHANGE_OPRF_KEY",
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def new_field_key_id() -> str:
    return "k" + secrets.token_hex(4)


def new_signing_key() -> str:
    private = Ed25519PrivateKey.generate()
    raw = private.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return _b64(raw)


def generate_secrets(current_field_keys: str | None = None) -> dict[str, str]:
    """Fresh values for every secret; a new field key goes first, current ones are kept after it."""
    field_keys = f"{new_field_key_id()}:{_b64(secrets.token_bytes(32))}"
    if current_field_keys:
        field_keys = f"{field_keys},{current_field_keys}"
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "EXCHANGE_SUBJECT_KEY": _b64(secrets.token_bytes(32)),
        "EXCHANGE_FIELD_KEYS": field_keys,
        "EXCHANGE_AUDIT_SIGNING_KEY": new_signing_key(),
        "EXCHANGE_OPRF_KEY": _b64(secrets.token_bytes(32)),
    }


def load_dev_keys(path: Path) -> dict[str, str]:
    """Read the development key file, creating it (mode 0600) on first use.

    A secret the file lacks (a file from before that secret existed) is added to it. Writers hold a
    lock and re-read under it, so that processes starting together agree on one value.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except PermissionError:  # a read-only key file is used as it is
        return _read_key_file(path)
    with os.fdopen(fd, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        values = _read_key_file(path)
        missing = [name for name in SECRET_NAMES if not values.get(name)]
        if missing:
            if not path.stat().st_size:
                fh.write("# Development keys, generated once. Never use them in production.\n")
            fresh = generate_secrets()
            for name in missing:
                fh.write(f"{name}={fresh[name]}\n")
                values[name] = fresh[name]
    return values


def _read_key_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values
