"""The hash chain's exact bytes: canonical JSON of an event and its SHA-256 link to the previous one.

Everything that hashes or re-hashes an event (the sealer, `insert_sealed`, the verifier, the
export checker) goes through here, so the database, an export file and an auditor's script all
agree byte for byte. `link_hash` is the reference; `sealed_hash` is the same bytes written field
by field for the sealing paths, held equal to it by a property test (tests/audit/test_chain.py).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from audit.triggers import IMMUTABLE_COLUMNS

GENESIS = "0" * 64
# The fields an event's hash covers: every column the triggers keep immutable, plus its chain position.
HASHED_FIELDS = (*IMMUTABLE_COLUMNS, "seq")
# What an export line carries: the hashed fields plus the two chain columns.
EXPORT_FIELDS = ("seq", *IMMUTABLE_COLUMNS, "prev_hash", "hash")
# The columns whole-table readers fetch with `.values()`.
ROW_COLUMNS = EXPORT_FIELDS

_HEX64 = re.compile(r"[0-9a-f]{64}")


class NotCanonical(ValueError):
    """A value that has no canonical form (a float, a naive datetime, a non-string key...)."""


def _check(value: Any) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return
    if isinstance(value, float):
        raise NotCanonical("floats have no canonical form")
    if isinstance(value, list):
        for item in value:
            _check(item)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical("object keys must be strings")
            _check(item)
        return
    raise NotCanonical(f"{type(value).__name__} has no canonical form")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, ASCII only; integers, strings, booleans, null, lists, objects."""
    _check(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def iso_utc(moment: datetime) -> str:
    """A timestamp as ISO-8601 in UTC, always with microseconds: 2026-01-02T03:04:05.000006Z."""
    if moment.tzinfo is None:
        raise NotCanonical("naive datetimes have no canonical form")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload(event: Any) -> dict[str, Any]:
    """The hashed fields of an AuditEvent (model instance) as canonical values."""
    return {
        "id": event.id,
        "seq": event.seq,
        "occurred_at": iso_utc(event.occurred_at),
        "actor": event.actor,
        "member_code": event.member_code,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "subject_token": event.subject_token,
        "outcome": event.outcome,
        "request_id": event.request_id,
        "details": event.details,
    }


def link_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """SHA-256(prev_hash as 32 raw bytes || canonical JSON of the hashed fields), as hex."""
    if not isinstance(prev_hash, str) or not _HEX64.fullmatch(prev_hash):
        raise NotCanonical("prev_hash is not 64 lower-case hex digits")
    body = {name: fields[name] for name in HASHED_FIELDS}
    # Only `details` is free-form; the other fields are typed columns, and a wrongly typed value
    # in a forged export line cannot encode to the same bytes as the right one anyway.
    _check(body["details"])
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(bytes.fromhex(prev_hash) + text.encode("ascii")).hexdigest()


# The encoder json.dumps builds for canonical_json's arguments, built once: the same class and
# options give the same text, without a new encoder per call.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
_string = json.encoder.encode_basestring_ascii


def _text(value: Any) -> str:
    return _string(value) if type(value) is str else _CANONICAL.encode(value)


def _integer(value: Any) -> str:
    return str(value) if type(value) is int else _CANONICAL.encode(value)


def canonical_details(details: Any) -> str:
    """canonical_json(details): also valid JSON text for the details column."""
    _check(details)
    return _CANONICAL.encode(details)


# The keys canonical_event writes, in its order: a column added to the hash must be added there too.
_EVENT_KEYS = ("action", "actor", "details", "id", "member_code", "object_id", "object_type", "occurred_at")
_EVENT_KEYS += ("outcome", "request_id", "seq", "subject_token")
if list(_EVENT_KEYS) != sorted(HASHED_FIELDS):
    raise RuntimeError("audit.chain: canonical_event does not write the hashed fields")


def canonical_event(fields: dict[str, Any], details_text: str | None = None) -> str:
    """The canonical JSON of the hashed fields that `link_hash` hashes, written in key order field
    by field (no dict of the body, no sort): the sealing paths hash every event with it.
    `details_text` is canonical_details(fields["details"]) when the caller made it already."""
    if details_text is None:
        details_text = canonical_details(fields["details"])
    return (
        f'{{"action":{_text(fields["action"])},"actor":{_text(fields["actor"])},"details":{details_text},'
        f'"id":{_integer(fields["id"])},"member_code":{_text(fields["member_code"])},'
        f'"object_id":{_text(fields["object_id"])},"object_type":{_text(fields["object_type"])},'
        f'"occurred_at":{_text(fields["occurred_at"])},"outcome":{_text(fields["outcome"])},'
        f'"request_id":{_text(fields["request_id"])},"seq":{_integer(fields["seq"])},'
        f'"subject_token":{_text(fields["subject_token"])}}}'
    )


def sealed_hash(prev_hash: str, fields: dict[str, Any], details_text: str | None = None) -> str:
    """link_hash(prev_hash, fields) by canonical_event, for a `prev_hash` the sealer made itself."""
    text = canonical_event(fields, details_text)
    return hashlib.sha256(bytes.fromhex(prev_hash) + text.encode("ascii")).hexdigest()


def row_fields(row: dict[str, Any]) -> dict[str, Any]:
    """Canonical values from a `.values()` row of AuditEvent (the fast path for whole-table work)."""
    fields = dict(row)
    fields["occurred_at"] = iso_utc(row["occurred_at"])
    return fields


def event_hash(event: Any, prev_hash: str) -> str:
    return link_hash(prev_hash, payload(event))
