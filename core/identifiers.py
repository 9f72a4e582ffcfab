"""Borrower identifiers: the one implementation lives in the member client package (client/cx_client),
so that the exchange and its members normalise and validate an ID the same way."""

from cx_client.identifiers import (
    COUNTRY_CODES,
    ID_TYPES,
    IdentifierError,
    normalize_country,
    normalize_subject,
    ric_check_character,
    uscc_check_character,
)

__all__ = [
    "COUNTRY_CODES",
    "ID_TYPES",
    "IdentifierError",
    "normalize_country",
    "normalize_subject",
    "ric_check_character",
    "uscc_check_character",
]
