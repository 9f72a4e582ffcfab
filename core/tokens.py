"""Keyed subject tokens and blind indexes: how the exchange finds a borrower without storing the ID.

A plain hash of a resident ID can be reversed by enumerating every valid ID, so both are HMACs
under EXCHANGE_SUBJECT_KEY, which never sits in the database (DESIGN.md, section 1).
"""

from __future__ import annotations

import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.env import decode_key
from core.identifiers import ID_TYPES, normalize_subject

_TOKEN_TAG = "exchange.subject-token.v1"  # noqa: S105 - a domain tag, not a secret
_BLIND_TAG = "exchange.blind-index.v1"
_ID_TYPES = frozenset(ID_TYPES)

# (setting value, decoded key); rebuilt when the setting changes (tests override it).
_subject_key: tuple[str, bytes] | None = None
# (setting value, purpose) -> derived key
_derived_keys: dict[tuple[str, str], bytes] = {}


def _key() -> bytes:
    global _subject_key
    value = settings.EXCHANGE_SUBJECT_KEY
    cached = _subject_key
    if cached is not None and (cached[0] is value or cached[0] == value):
        return cached[1]
    if not value:
        raise ImproperlyConfigured("EXCHANGE_SUBJECT_KEY is not set")
    key = decode_key("EXCHANGE_SUBJECT_KEY", value)
    _subject_key = (value, key)
    return key


def _encode(tag: str, *fields: str) -> bytes:
    # Length-prefixed fields under a version tag: ("a", "bc") and ("ab", "c") never meet.
    return "|".join([tag, *(f"{len(field)}:{field}" for field in fields)]).encode()


def subject_token(id_type: str, normalized_id: str, country: str = "") -> str:
    """HMAC-SHA256 (lowercase hex) of an already normalised identifier; see `tokenize_subject`."""
    if id_type not in _ID_TYPES:
        raise ValueError(f"unknown id_type {id_type!r}")
    message = f"{_TOKEN_TAG}|{len(id_type)}:{id_type}|{len(country)}:{country}|{len(normalized_id)}:{normalized_id}"
    return hmac.digest(_key(), message.encode(), "sha256").hex()


def tokenize_subject(id_type: str, id_number: str, country: str | None = None) -> str:
    """Validate, normalise and tokenise a subject; raises core.identifiers.IdentifierError."""
    normalised, normalised_country = normalize_subject(id_type, id_number, country)
    return subject_token(id_type, normalised, normalised_country)


def _derived_key(purpose: str) -> bytes:
    value = settings.EXCHANGE_SUBJECT_KEY
    cache_key = (value, purpose)
    key = _derived_keys.get(cache_key)
    if key is None:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=f"{_BLIND_TAG}|{purpose}".encode())
        key = hkdf.derive(_key())
        if len(_derived_keys) > 64:  # only settings overrides in tests grow it
            _derived_keys.clear()
        _derived_keys[cache_key] = key
    return key


def blind_index(purpose: str, scope: str, value: str) -> str:
    """A keyed, deterministic index of `value` within `scope` (lowercase hex), for looking up an
    encrypted column, e.g. blind_index("member_reference", str(member.id), reference).

    The key is derived per purpose, so an index of one purpose says nothing about another.
    """
    if not purpose:
        raise ValueError("blind_index needs a purpose")
    return hmac.digest(_derived_key(purpose), _encode(_BLIND_TAG, scope, value), "sha256").hex()
