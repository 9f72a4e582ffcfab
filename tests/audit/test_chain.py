"""The canonical encoding and the hash link: exact, and unchanged by a database round trip."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.chain import (
    GENESIS,
    HASHED_FIELDS,
    NotCanonical,
    canonical_event,
    canonical_json,
    event_hash,
    iso_utc,
    link_hash,
    payload,
    sealed_hash,
)
from audit.models import AuditEvent
from audit.sealing import seal_pending
from audit.services import audit_write, insert_sealed
from audit.verify import verify_chain

# What JSON can hold exactly on both databases: no floats, no NUL (jsonb refuses it), no lone surrogates.
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=20)
# Prefixed keys: audit details refuse personal-data key names such as "name", at any depth.
_key = _text.map(lambda text: "k" + text)
_scalars = st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | _text
_json = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_key, children, max_size=4),
    max_leaves=12,
)


def test_canonical_json_is_sorted_compact_and_ascii():
    assert canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["\\u00e9",null,true],"b":1}'


@pytest.mark.parametrize("value", [1.5, {"a": 0.0}, [float("nan")], {1: "int key"}, b"bytes"])
def test_canonical_json_refuses_what_has_no_exact_form(value):
    with pytest.raises(NotCanonical):
        canonical_json(value)


def test_timestamps_are_utc_with_microseconds():
    plus8 = timezone(timedelta(hours=8))
    assert iso_utc(datetime(2026, 1, 2, 11, 4, 5, tzinfo=plus8)) == "2026-01-02T03:04:05.000000Z"
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
    with pytest.raises(NotCanonical):
        iso_utc(datetime(2026, 1, 2))  # naive: the point of the test


def test_link_hash_is_sha256_of_raw_prev_hash_and_canonical_fields():
    fields = {
        "id": 7,
        "seq": 1,
        "occurred_at": "2026-01-02T03:04:05.000006Z",
        "actor": "cli:ops:x",
        "member_code": "",
        "action": "member.create",
        "object_type": "",
        "object_id": "",
        "subject_token": "",
        "outcome": "ok",
        "request_id": "",
        "details": {},
    }
    expected = hashlib.sha256(bytes(32) + canonical_json(fields).encode()).hexdigest()
    assert link_hash(GENESIS, fields) == expected
    assert link_hash(GENESIS, {**fields, "seq": 2}) != expected
    with pytest.raises(NotCanonical):
        link_hash("not hex", fields)


@pytest.mark.django_db
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(details=st.dictionaries(_key, _json))
def test_a_sealed_hash_survives_the_database_round_trip(details):
    event = audit_write(action="test.roundtrip", actor="test", details={"data": details})
    seal_pending()
    stored = AuditEvent.objects.get(pk=event.pk)
    assert stored.hash == event_hash(stored, stored.prev_hash)
    assert payload(stored)["details"] == {"data": details}
    assert verify_chain().ok


# Arbitrary events as the sealing paths hash them: any text in the text columns (actors, codes,
# tokens; unicode, quotes, control characters), any positions, any details.
_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)
_moments = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)).map(
    iso_utc
)
_events = st.fixed_dictionaries(
    {
        "id": st.integers(min_value=1, max_value=2**63 - 1),
        "seq": st.integers(min_value=1, max_value=2**63 - 1),
        "occurred_at": _moments,
        "actor": _any_text,
        "member_code": _any_text,
        "action": _any_text,
        "object_type": _any_text,
        "object_id": _any_text,
        "subject_token": _any_text,
        "outcome": _any_text,
        "request_id": _any_text,
        "details": st.dictionaries(_key, _json) | _json,
    }
)
_hex64 = st.binary(min_size=32, max_size=32).map(bytes.hex)


@settings(max_examples=500, deadline=None)
@given(event=_events, prev=_hex64)
def test_the_sealers_encoder_hashes_the_bytes_of_link_hash(event, prev):
    assert canonical_event(event) == canonical_json({name: event[name] for name in HASHED_FIELDS})
    assert sealed_hash(prev, event) == link_hash(prev, event)


@pytest.mark.parametrize("details", [{"amount": 1.5}, {"a": [float("inf")]}, {"nested": {1: "int key"}}])
def test_the_sealers_encoder_refuses_what_link_hash_refuses(details):
    event = dict.fromkeys(HASHED_FIELDS, "")
    event.update(id=1, seq=1, details=details)
    with pytest.raises(NotCanonical):
        link_hash(GENESIS, event)
    with pytest.raises(NotCanonical):
        sealed_hash(GENESIS, event)


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(details=st.lists(st.dictionaries(_key, _json), min_size=1, max_size=5), actor=_text)
def test_events_inserted_already_sealed_verify_between_events_sealed_after_commit(details, actor):
    with transaction.atomic():
        audit_write(action="test.before", actor="test")  # unsealed until the commit
        insert_sealed([{"action": "test.sealed", "actor": actor, "details": {"data": d}} for d in details])
    with transaction.atomic():
        audit_write(action="test.after", actor="test")
    seal_pending()
    stored = AuditEvent.objects.filter(action="test.sealed").order_by("-id")[: len(details)]
    assert [event.details["data"] for event in reversed(stored)] == details
    assert not AuditEvent.objects.filter(seq__isnull=True).exists()
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_events_are_inserted_sealed_only_inside_a_transaction():
    with pytest.raises(RuntimeError):
        insert_sealed([{"action": "test.sealed", "actor": "test"}])
