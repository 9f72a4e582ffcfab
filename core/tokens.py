"""Keyed subject tokens and blind indexes: how the exchange finds a borrower without storing the ID.

A subject token (version 2) is HMAC-SHA256(EXCHANGE_SUBJECT_KEY, the subject's 64-byte VOPRF
output). A member obtains that output for a blind subject without the exchange seeing the ID; for
a raw ID the exchange evaluates the same function itself (core.oprf.evaluate_subject), so both
spellings of one borrower give one token. Version 1 was an HMAC of `id_type|country|id` and is
gone: tokens of one version never match the other's (docs/privacy.md, "Token versions").

A plain hash of a resident ID can be reversed by enumerating every valid ID, so both tokens and
blind indexes are HMACs under EXCHANGE_SUBJECT_KEY, which never sits in the database.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from core import oprf
from core.identifiers import ID_TYPES, normalize_subject
from core.keys import decode_key

TOKEN_VERSION = 2
_BLIND_TAG = "exchange.blind-index.v1"
_ID_TYPES = frozenset(ID_TYPES)


def _hexdigest(template: hmac.HMAC, message: bytes) -> str:
    # A copy of an HMAC already keyed: the key is processed once, not for every token.
    mac = template.copy()
    mac.update(message)
    return mac.hexdigest()


# Keyed HMACs, built on first use and dropped when the setting changes (override_settings and
# pytest-django's `settings` send setting_changed), so the key is not decoded per token.
_subject_hmac: hmac.HMAC | None = None
_blind_hmacs: dict[str, hmac.HMAC] = {}  # purpose -> HMAC under the key derived for it


@receiver(setting_changed)
def _forget_keys(*, setting: str, **kwargs) -> None:
    global _subject_hmac
    if setting == "EXCHANGE_SUBJECT_KEY":
        _subject_hmac = None
        _blind_hmacs.clear()


def _key() -> bytes:
    value = settings.EXCHANGE_SUBJECT_KEY
    if not value:
        raise ImproperlyConfigured("EXCHANGE_SUBJECT_KEY is not set")
    return decode_key("EXCHANGE_SUBJECT_KEY", value)


def _subject_template() -> hmac.HMAC:
    global _subject_hmac
    if _subject_hmac is None:
        _subject_hmac = hmac.new(_key(), digestmod=hashlib.sha256)
    return _subject_hmac


def _encode(tag: str, *fields: str) -> bytes:
    # Length-prefixed fields under a version tag: ("a", "bc") and ("ab", "c") never meet.
    return "|".join([tag, *(f"{len(field)}:{field}" for field in fields)]).encode()


def token_of_output(output: bytes) -> str:
    """The token (lowercase hex) of a subject's 64-byte VOPRF output, as a blind subject carries it."""
    if len(output) != oprf.OUTPUT_BYTES:
        raise ValueError(f"a VOPRF output has {oprf.OUTPUT_BYTES} bytes, not {len(output)}")
    return _hexdigest(_subject_hmac or _subject_template(), output)


def subject_token(id_type: str, normalized_id: str, country: str = "") -> str:
    """The token of an already normalised raw identifier: the exchange evaluates its VOPRF output
    (RFC 9497 Evaluate, one scalar multiplication), then keys it as for a blind subject."""
    if id_type not in _ID_TYPES:
        raise ValueError(f"unknown id_type {id_type!r}")
    return token_of_output(oprf.evaluate_subject(id_type, normalized_id, country))


def tokenize_subject(id_type: str, id_number: str, country: str | None = None) -> str:
    """Validate, normalise and tokenise a subject; raises core.identifiers.IdentifierError."""
    normalised, normalised_country = normalize_subject(id_type, id_number, country)
    return subject_token(id_type, normalised, normalised_country)


def _blind_template(purpose: str) -> hmac.HMAC:
    template = _blind_hmacs.get(purpose)
    if template is None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"{_BLIND_TAG}|{purpose}".encode())
        template = _blind_hmacs[purpose] = hmac.new(hkdf.derive(_key()), digestmod=hashlib.sha256)
    return template


def blind_index(purpose: str, scope: str, value: str) -> str:
    """A keyed, deterministic index of `value` within `scope` (lowercase hex), for looking up an
    encrypted column, e.g. blind_index("member_reference", str(member.id), reference).

    The key is derived per purpose, so an index of one purpose says nothing about another.
    """
    if not purpose:
        raise ValueError("blind_index needs a purpose")
    return _hexdigest(_blind_hmacs.get(purpose) or _blind_template(purpose), _encode(_BLIND_TAG, scope, value))


def keyed_digest(purpose: str, scope: str, sha256_hex: str) -> str:
    """A keyed digest of content already hashed with SHA-256 (a file, a request body), scoped, e.g.
    to a member: HMAC-SHA256 under the key derived for `purpose`. Unlike the SHA-256 itself, it
    cannot be checked against guessed content (a resident ID in a known file template) without
    the key. Built on the SHA-256 so that content is read once, in blocks."""
    return blind_index(purpose, scope, sha256_hex)


def lock_key(purpose: str, scope: str, value: str) -> int:
    """A PostgreSQL advisory lock key (signed 64 bits) for `value` within `scope`: a keyed digest,
    so what members send (an Idempotency-Key, an evidence hash) never shows unkeyed in pg_locks."""
    return int.from_bytes(bytes.fromhex(blind_index(purpose, scope, value))[:8], "big", signed=True)
