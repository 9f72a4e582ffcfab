"""Hostile input on every field of every write, every query parameter and path parameter, and the
headers the API reads: bad UTF-8, deep nesting, duplicate keys, huge numbers and strings, NUL
bytes, SQL and header injection, wrong types. Each is a clear 4xx problem and changes nothing."""

from __future__ import annotations

import copy
import json

import pytest
from django.db import connection

from exchange.models import Consent, Dispute, IdempotencyKey, Inquiry, Record, RecordVersion, Submission
from tests.factories import consent, record, subject

pytestmark = pytest.mark.django_db

# Free text (a loan reference, a name, a reason, a note) may hold quotes, markup or line breaks: it
# is stored as data (test_the_tables_survive_every_injection_attempt), never interpreted.
FREE_TEXT = {"member_reference", "name", "reason", "note"}
SQL = ["' OR '1'='1", "'; DROP TABLE exchange_record; --", '" OR ""="', "1; SELECT pg_sleep(5)--", "%' --"]
TEXT_AS_DATA = [
    *SQL,
    "line\r\nX-Injected: yes",
    "\u202e\ufeff\u200b",
    "../../../../etc/passwd",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
]
NEVER_VALID = ["NUL\x00byte", "\x00", "x" * 100_000, "\ud800", "a\udfffb"]  # NUL, huge, lone surrogates
WRONG_TYPES = [None, True, 0, -1, 10**30, 1.5, 1e308, "", [], {}, [{}], {"$gt": ""}]
HUGE_NUMBERS = [10**30, -(10**30), 1e308, -1e308, 1e-320]
ALLOWED_CODES = {
    "malformed_request",
    "validation_failed",
    "not_found",
    "consent_required",
    "conflict",
    "unsupported_media_type",
    "payload_too_large",
}
MODELS = (Record, RecordVersion, Consent, Inquiry, Dispute, Submission, IdempotencyKey)


def state(world) -> dict:
    """Every row count, plus the mutable fields of the owner's objects."""
    snapshot = {model.__name__: model.objects.count() for model in MODELS}
    record = Record.objects.get(pk=world.ids["record_id"])
    snapshot["record"] = (record.version, record.withdrawn_at, record.updated_at)
    snapshot["consent"] = Consent.objects.filter(pk=world.ids["consent_id"]).values_list("revoked_at").get()
    snapshot["dispute"] = Dispute.objects.filter(pk=world.ids["dispute_id"]).values_list("status", "note").get()
    return snapshot


def assert_refused(response, *, allowed=ALLOWED_CODES, case: object = None) -> None:
    assert 400 <= response.status_code < 500, (case, response.status_code, response.content[:500])
    assert response["Content-Type"] == "application/problem+json", response["Content-Type"]
    problem = response.json()
    assert problem["code"] in allowed, problem
    assert problem["status"] == response.status_code
    assert problem["detail"]


def valid_bodies(world) -> dict[str, dict]:
    return {
        "/api/v1/records": {"records": [record("HOSTILE-1", 21)]},
        "/api/v1/records/{record_id}/withdraw": {"reason": "sent in error"},
        "/api/v1/consents": consent(22),
        "/api/v1/inquiries": {
            "subject": subject(7),
            "consent_id": world.ids["consent_id"],
            "purpose": "credit_application",
        },
        "/api/v1/disputes": {"inquiry_id": world.ids["inquiry_id"], "line": 0, "reason": "again"},
        "/api/v1/disputes/{dispute_id}/resolve": {"outcome": "upheld", "note": "checked"},
    }


# Values of the lists above that are valid for a field: optional fields may be null (or empty), a
# count may be 0, money may be a whole number, a payment history may be a list of codes.
VALID = {
    "name": (None, ""),
    "country": (None, ""),
    "note": (None, ""),
    "currency": (None,),
    "settled_on": (None,),
    "payment_history": (None, "", []),
    "days_past_due": (0,),
    "principal": (0,),
    "amount_overdue": (0,),
}
# DRF's CharField turns a JSON number into a string: see test_a_number_is_not_free_text below.
NUMBER_AS_TEXT = {("/api/v1/records/{record_id}/withdraw", "reason"), ("/api/v1/disputes/{dispute_id}/resolve", "note")}


def is_valid(path: str, name, value) -> bool:
    if (path, name) in NUMBER_AS_TEXT and isinstance(value, int | float) and not isinstance(value, bool):
        return True
    return any(value == valid and type(value) is type(valid) for valid in VALID.get(name, ()))


def leaves(body, prefix=()):
    """Paths to every value in a JSON body (dicts and lists walked)."""
    if isinstance(body, dict):
        for key, value in body.items():
            yield (*prefix, key)
            yield from leaves(value, (*prefix, key))
    elif isinstance(body, list):
        for index, value in enumerate(body):
            yield from leaves(value, (*prefix, index))


def replaced(body, path, value):
    body = copy.deepcopy(body)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return body


def post_raw(world, path: str, raw: bytes, content_type: str = "application/json", **headers):
    return world.owner.client.generic("POST", world.path(path), raw, content_type=content_type, **headers)


def encode(body) -> bytes:
    # surrogatepass keeps a lone surrogate as its JSON escape, as a hostile client would send it
    return json.dumps(body, ensure_ascii=True).encode("utf-8", "surrogatepass")


def test_the_valid_bodies_used_below_really_are_accepted(world):
    """Guards the tests below: each refusal there is caused by the one field changed."""
    bodies = valid_bodies(world)
    # the owner's dispute on that line is open: a second one is a conflict, so its body is valid
    assert post_raw(world, "/api/v1/disputes", encode(bodies["/api/v1/disputes"])).status_code == 409
    order = [
        "/api/v1/records",
        "/api/v1/consents",
        "/api/v1/inquiries",
        "/api/v1/disputes/{dispute_id}/resolve",
        "/api/v1/records/{record_id}/withdraw",
    ]
    for path in order:
        response = post_raw(world, path, encode(bodies[path]))
        assert response.status_code in (200, 201), (path, response.content)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/records",
        "/api/v1/records/{record_id}/withdraw",
        "/api/v1/consents",
        "/api/v1/inquiries",
        "/api/v1/disputes",
        "/api/v1/disputes/{dispute_id}/resolve",
    ],
)
def test_every_field_of_every_write_refuses_wrong_types_and_hostile_strings(world, path):
    body = valid_bodies(world)[path]
    before = state(world)
    for field in leaves(body):
        hostile = NEVER_VALID if field[-1] in FREE_TEXT else [*TEXT_AS_DATA, *NEVER_VALID]
        for value in [*WRONG_TYPES, *hostile]:
            if is_valid(path, field[-1], value):
                continue
            response = post_raw(world, path, encode(replaced(body, field, value)))
            assert_refused(response, case=(field, repr(value)[:40]))
        # an unknown field next to it is refused too
        if isinstance(field[-1], str):
            parent = field[:-1]
            sibling = (*parent, "unknown' OR 1=1 --")
            response = post_raw(world, path, encode(replaced(body, sibling, "x")))
            assert_refused(response)
    assert state(world) == before


@pytest.mark.parametrize("path", ["/api/v1/records", "/api/v1/consents", "/api/v1/disputes"])
def test_huge_numbers_in_numeric_fields_are_validation_errors(world, path):
    body = valid_bodies(world)[path]
    numeric = {"/api/v1/records": ["principal", "amount_overdue", "days_past_due"], "/api/v1/consents": []}
    fields = numeric.get(path, ["line"])
    before = state(world)
    for name in fields:
        for value in HUGE_NUMBERS:
            changed = (
                {"records": [{**body["records"][0], name: value}]}
                if path == "/api/v1/records"
                else {**body, name: value}
            )
            assert_refused(post_raw(world, path, encode(changed)))
    # numbers too long to parse at all, and exponents that overflow a float
    for raw in (b'{"records": [{"days_past_due": ' + b"9" * 5000 + b"}]}", b'{"line": 1e999999}'):
        assert_refused(post_raw(world, path, raw))
    assert state(world) == before


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe\xfd",
        b'{"reason": "\xc3\x28"}',  # invalid 2-byte sequence
        b'{"reason": "\xed\xa0\x80"}',  # an encoded surrogate
        b'{"reason": "\xf8\x88\x80\x80\x80"}',  # a 5-byte form
        b"\xef\xbb\xbf{}",  # a UTF-8 byte-order mark
        b'{"a": ' * 10_000 + b"1" + b"}" * 10_000,
        b"[" * 100_000,
        b'{"reason": "x", "reason": "y"}',
        b'{"records": [{"subject": {"id_type": "CN_RIC", "id_type": "PASSPORT"}}]}',
        b"NaN",
        b'{"reason": -Infinity}',
        b"",
        b"null",
        b"[]",
        b'"a string"',
        b"12",
        b"{'single': 'quotes'}",
        b'{"reason": "unterminated',
        b'{"reason": "x"} trailing',
        b"\x00",
    ],
)
def test_malformed_bodies_are_400_or_422_on_every_json_write(world, raw):
    before = state(world)
    for path in valid_bodies(world):
        assert_refused(post_raw(world, path, raw), allowed={"malformed_request", "validation_failed"})
    assert state(world) == before


def test_bodies_of_other_media_types_are_415(world):
    before = state(world)
    for path in valid_bodies(world):
        for content_type in ("text/plain", "application/xml", "multipart/form-data; boundary=x", "text/csv"):
            response = post_raw(world, path, b"<a>1</a>", content_type=content_type)
            assert_refused(response, allowed={"unsupported_media_type"})
    assert state(world) == before


@pytest.mark.parametrize("value", [*SQL, "NUL\x00", "x" * 5000, "\r\nSet-Cookie: a=b", "%00", "-1", "9" * 400])
def test_hostile_query_parameters_are_refused_or_ignored(world, value):
    before = state(world)
    client = world.owner.client
    gets = [
        ("/api/v1/records", "status"),
        ("/api/v1/records", "member_reference"),
        ("/api/v1/records", "updated_since"),
        ("/api/v1/records", "page_size"),
        ("/api/v1/records", "cursor"),
        ("/api/v1/consents", "cursor"),
        ("/api/v1/inquiries", "page_size"),
        ("/api/v1/disputes", "status"),
        ("/api/v1/disputes", "role"),
        ("/api/v1/submissions", "cursor"),
    ]
    for path, name in gets:
        response = client.get(path, {name: value})
        if response.status_code == 200:
            # a free-text filter may match nothing, a page size be clamped, and DRF's cursor decoding
            # (lenient base64) may read junk as the first page: harmless, nothing of anyone else's
            assert name in ("member_reference", "page_size", "cursor"), (path, name, response.content[:300])
            if name == "member_reference":
                assert response.json()["results"] == []
        else:
            assert_refused(response, allowed={"malformed_request", "validation_failed"})
    assert state(world) == before


@pytest.mark.parametrize("value", [*SQL, "%00", "..%2f..%2fadmin", "1 OR 1=1", "9" * 400, "%E2%80%AE", "%FF"])
def test_hostile_path_parameters_are_404(world, value):
    before = state(world)
    client = world.owner.client
    for template in (
        "/api/v1/records/{}",
        "/api/v1/records/{}/history",
        "/api/v1/consents/{}",
        "/api/v1/inquiries/{}",
        "/api/v1/disputes/{}",
        "/api/v1/submissions/{}",
        "/api/v1/submissions/{}/errors",
    ):
        if value == "%00" and template.startswith("/api/v1/disputes/"):
            continue  # a known 500 on PostgreSQL: test_a_nul_byte_in_a_dispute_id_is_a_404
        assert_refused(client.get(template.format(value)), allowed={"not_found"})
    for template in ("/api/v1/records/{}/withdraw", "/api/v1/consents/{}/revoke", "/api/v1/disputes/{}/resolve"):
        if value == "%00" and template.startswith("/api/v1/disputes/"):
            continue
        response = client.post(template.format(value), {"reason": "x", "outcome": "upheld"}, format="json")
        assert_refused(response, allowed={"not_found", "validation_failed"})
    assert state(world) == before


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer ' OR '1'='1",
        "Bearer cx_000000000000_' OR 1=1 --" + "a" * 20,
        "Bearer \x00",
        "Bearer x\r\nX-Injected: yes",
        "Bearer " + "a" * 100_000,
        "Basic YWRtaW46YWRtaW4=",
        "bearer",
        "Bearer  ",
        "Token abc",
        "Bearer cx_" + "f" * 12 + "_" + "A" * 43,  # well formed, unknown
    ],
)
def test_hostile_authorization_headers_are_401(world, authorization):
    from rest_framework.test import APIClient

    before = state(world)
    response = APIClient().post(
        "/api/v1/records",
        {"records": [record("HOSTILE-AUTH", 31)]},
        format="json",
        HTTP_AUTHORIZATION=authorization,
    )
    assert_refused(response, allowed={"authentication_failed"})
    assert response.status_code == 401
    assert state(world) == before


@pytest.mark.parametrize("key", ["", "\x00", "a\r\nb", "\x7f", "k" * 256, "\u0085"])
def test_hostile_idempotency_keys_are_refused(world, key):
    before = state(world)
    response = post_raw(
        world, "/api/v1/records", encode({"records": [record("HOSTILE-IK", 32)]}), HTTP_IDEMPOTENCY_KEY=key
    )
    assert_refused(response, allowed={"malformed_request"})
    assert state(world) == before


def test_hostile_request_ids_are_replaced_and_never_echoed(world):
    for value in ("x\r\nSet-Cookie: a=b", "' OR 1=1 --", "a" * 200, "\x00abcdefgh"):
        response = world.owner.client.get("/api/v1/me", HTTP_X_REQUEST_ID=value)
        assert response.status_code == 200
        assert response["X-Request-ID"] != value
        assert len(response["X-Request-ID"]) == 32


def test_the_tables_survive_every_injection_attempt(world):
    """After the attempts above in this run, the schema is intact and queries still work."""
    for value in SQL:
        world.owner.client.get("/api/v1/records", {"member_reference": value})
        post_raw(world, "/api/v1/records", encode({"records": [record(value, 33)]}))
    tables = set(connection.introspection.table_names())
    assert {"exchange_record", "exchange_consent", "exchange_inquiry", "audit_auditevent"} <= tables
    # a reference full of quotes is stored as data (encrypted), found again by its blind index
    response = world.owner.client.get("/api/v1/records", {"member_reference": SQL[1]})
    assert [item["member_reference"] for item in response.json()["results"]] == [SQL[1]]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/records/{record_id}/withdraw", {"reason": 0}),
        ("/api/v1/disputes/{dispute_id}/resolve", {"outcome": "upheld", "note": 1.5}),
    ],
)
def test_a_number_is_not_free_text(world, path, body):
    before = state(world)
    assert_refused(post_raw(world, path, encode(body)), allowed={"validation_failed"})
    assert state(world) == before


@pytest.mark.parametrize("path", ["/api/v1/disputes/%00", "/api/v1/disputes/a%00b/resolve"])
def test_a_nul_byte_in_a_dispute_id_is_a_404(world, path):
    client = world.owner.client
    response = (
        client.get(path) if not path.endswith("resolve") else client.post(path, {"outcome": "upheld"}, format="json")
    )
    assert_refused(response, allowed={"not_found"})
