"""The OPRF input of a borrower: `cx-subject-v1|<id_type>|<country>|<normalised id>`, UTF-8.

Members blind it; the exchange evaluates it directly for a raw ID. Both build it here, after the
same normalisation, so that two spellings of one ID give one input and so one output.
"""

from __future__ import annotations

from cx_client.identifiers import normalize_subject

INPUT_PREFIX = "cx-subject-v1"


def oprf_input(id_type: str, id_number: str, country: str | None = None) -> bytes:
    """Validate and normalise the identifier, then build its OPRF input; raises IdentifierError."""
    normalised, normalised_country = normalize_subject(id_type, id_number, country)
    return oprf_input_normalised(id_type, normalised, normalised_country)


def oprf_input_normalised(id_type: str, normalised_id: str, country: str = "") -> bytes:
    """The OPRF input of an identifier already normalised (country empty except for passports)."""
    # No field can hold "|": id types are fixed names, countries two letters, normalised IDs letters and digits.
    return f"{INPUT_PREFIX}|{id_type}|{country}|{normalised_id}".encode()
