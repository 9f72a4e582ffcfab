"""The published OpenAPI schema says what the server does: paging on every list, refusals of
unknown fields, UUID ids, enums for closed sets, integrator descriptions; and authentication
speaks before content negotiation."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from tests.exchange.test_submissions import csv_file, csv_row, process, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/api/v1/schema?format=json")
    assert response.status_code == 200
    return response.json()


def operations(schema: dict):
    for path, item in schema["paths"].items():
        if path.startswith("/api/v1/") and path != "/api/v1/schema":
            for method, operation in item.items():
                yield method, path, operation


def resolve(schema: dict, node: dict) -> dict:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def test_every_list_declares_a_cursor_and_a_bounded_page_size(schema):
    lists = 0
    for method, path, operation in operations(schema):
        ok = operation["responses"].get("200", {}).get("content", {}).get("application/json", {})
        page = resolve(schema, ok.get("schema", {}))
        if method != "get" or set(page.get("properties", {})) != {"results", "next"}:
            continue
        lists += 1
        parameters = {p["name"]: p for p in operation["parameters"] if p["in"] == "query"}
        assert parameters["cursor"]["schema"] == {"type": "string"}, path
        bounds = parameters["page_size"]["schema"]
        assert (bounds["minimum"], bounds["maximum"]) == (1, settings.EXCHANGE_MAX_PAGE_SIZE), path
    # records, history, consents, inquiries, disputes, submissions, evidence requests
    assert lists == 7


@pytest.mark.parametrize("value", ["0", "-5", "abc", "501", "1.5", "", "٣"])
def test_a_page_size_outside_the_schema_is_422(bank_a, value):
    response = bank_a.client.get("/api/v1/consents", {"page_size": value})
    assert (response.status_code, response.json()["errors"][0]["field"]) == (422, "page_size")


def test_page_sizes_within_bounds_answer(bank_a):
    for value in ("1", str(settings.EXCHANGE_MAX_PAGE_SIZE)):
        assert bank_a.client.get("/api/v1/inquiries", {"page_size": value}).status_code == 200


def test_a_records_history_is_paged_oldest_first(bank_a):
    from tests.factories import record

    for days in (10, 20, 30):
        body = {"records": [record("L-1", 1, days_past_due=days)]}
        assert bank_a.client.post("/api/v1/records", body, format="json").status_code == 201
    record_id = bank_a.client.get("/api/v1/records").json()["results"][0]["id"]
    first = bank_a.client.get(f"/api/v1/records/{record_id}/history", {"page_size": 2}).json()
    assert [v["version"] for v in first["results"]] == [1, 2]
    rest = bank_a.client.get(first["next"]).json()
    assert ([v["version"] for v in rest["results"]], rest["next"]) == ([3], None)


@pytest.mark.parametrize("position", ["p=abc", "p=2026-13-45", "r=1&p=x", "p=" + "9" * 50, "o=abc"])
def test_a_made_up_cursor_is_400_never_a_500(bank_a, position):
    import base64

    from tests.factories import record

    assert bank_a.client.post("/api/v1/records", {"records": [record("L-1", 1)]}, format="json").status_code == 201
    record_id = bank_a.client.get("/api/v1/records").json()["results"][0]["id"]
    cursor = base64.b64encode(position.encode()).decode()
    for path in ("/api/v1/records", "/api/v1/disputes", f"/api/v1/records/{record_id}/history"):
        response = bank_a.client.get(path, {"cursor": cursor})
        assert (response.status_code, response.json()["code"]) == (400, "malformed_request"), path


def test_inputs_refuse_unknown_fields_and_bodies_are_required(schema):
    inputs = [name for name in schema["components"]["schemas"] if name.endswith("Request")]
    assert len(inputs) >= 9
    for name in inputs:
        component = schema["components"]["schemas"][name]
        if "oneOf" in component:  # a subject is raw or blind: each of the two is strict
            assert [c["$ref"] for c in component["oneOf"]] == [
                "#/components/schemas/RawSubjectRequest",
                "#/components/schemas/BlindSubjectRequest",
            ], name
            continue
        assert component["additionalProperties"] is False, name
    for method, path, operation in operations(schema):
        if "requestBody" in operation:
            assert operation["requestBody"]["required"] is True, (method, path)


def test_ids_are_uuids_and_no_header_openapi_ignores_is_declared(schema):
    for _method, path, operation in operations(schema):
        for parameter in operation.get("parameters", []):
            if parameter["in"] == "path":
                assert parameter["schema"] == {"type": "string", "format": "uuid"}, path
            assert parameter["name"].lower() not in ("accept", "content-type", "authorization"), path


def test_closed_sets_are_enums_and_always_present_fields_required(schema):
    components = schema["components"]["schemas"]

    def enum_of(component: str, field: str) -> list:
        return resolve(schema, components[component]["properties"][field])["enum"]

    purposes = ["credit_application", "credit_line_review", "post_loan_management", "guarantee_review"]
    assert enum_of("ConsentOutput", "purpose") == purposes
    assert enum_of("ConsentOutput", "channel") == ["app", "web", "paper", "recorded_call"]
    assert enum_of("ConsentOutput", "status") == ["active", "expired", "revoked"]
    assert "bnpl" in enum_of("LineOutput", "product") and "written_off" in enum_of("LineOutput", "status")
    assert "microlender" in enum_of("Me", "kind")
    assert enum_of("RawSubjectRequest", "id_type") == ["CN_RIC", "CN_USCC", "CN_MOBILE", "PASSPORT"]
    assert enum_of("BlindSubjectRequest", "id_type") == ["CN_RIC", "CN_USCC", "CN_MOBILE", "PASSPORT"]
    submission = components["SubmissionOutput"]
    assert set(submission["required"]) == set(submission["properties"])
    assert components["MoneyOutput"]["properties"]["amount"]["pattern"] == r"^[0-9]+\.[0-9]{2}$"
    records = components["RecordBatchInputRequest"]["properties"]["records"]
    assert (records["minItems"], records["maxItems"], records["items"]) == (
        1,
        1000,
        {"$ref": "#/components/schemas/RecordInputRequest"},
    )


def test_the_idempotency_key_and_updated_since_have_their_rules(schema):
    create = schema["paths"]["/api/v1/records"]["post"]
    key = next(p for p in create["parameters"] if p["name"] == "Idempotency-Key")["schema"]
    assert (key["minLength"], key["maxLength"]) == (1, 255) and key["pattern"]
    listing = schema["paths"]["/api/v1/records"]["get"]
    since = next(p for p in listing["parameters"] if p["name"] == "updated_since")["schema"]
    assert since == {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]}


def test_descriptions_are_for_integrators(schema):
    text = str(schema)
    for internal in ("Base for member endpoints", "Refuses fields it does not know", "deep copy", "Only documents"):
        assert internal not in text
    for method, path, operation in operations(schema):
        assert operation.get("summary") and operation.get("description"), (method, path)


def test_the_upload_is_a_multipart_form_with_the_raw_bodies_beside_it(schema):
    body = schema["paths"]["/api/v1/submissions"]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]
    assert resolve(schema, form["schema"])["properties"]["file"] == {
        "type": "string",
        "format": "binary",
        "description": resolve(schema, form["schema"])["properties"]["file"]["description"],
    }
    assert set(body["x-raw-bodies"]) == {"text/csv", "application/x-ndjson"}


@pytest.mark.parametrize("accept", ["text/html", "application/xml", "image/png"])
def test_without_a_valid_key_it_is_401_whatever_the_accept_header(client, accept):
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer cx_nope_nope"}):
        response = client.get("/api/v1/records", HTTP_ACCEPT=accept, **headers)
        assert (response.status_code, response.json()["code"]) == (401, "authentication_failed")
        assert response["WWW-Authenticate"]
    assert client.get("/api/v1/submissions/x/errors?format=xml").status_code == 401


def test_with_a_valid_key_an_unacceptable_accept_is_406_naming_what_is_available(bank_a):
    response = bank_a.client.get("/api/v1/records", HTTP_ACCEPT="text/html")
    assert (response.status_code, response.json()["detail"]) == (406, "Only application/json responses are available.")
    response = bank_a.client.get("/api/v1/submissions/x/errors", HTTP_ACCEPT="text/html")
    assert response.json()["detail"] == "Only application/x-ndjson or application/json responses are available."


def test_a_refusal_before_negotiation_is_audited_once(bank_a):
    from audit.models import AuditEvent
    from members.services import member_set_status

    member_set_status(member=bank_a.member, status="suspended", actor="test")
    response = bank_a.client.get("/api/v1/records", HTTP_ACCEPT="text/html")
    assert (response.status_code, response.json()["code"]) == (403, "member_suspended")
    assert AuditEvent.objects.filter(action="api.access", outcome="denied").count() == 1


def test_submission_errors_are_json_lines_unless_json_is_asked_for(bank_a, settings, tmp_path):
    settings.EXCHANGE_SUBMISSIONS_DIR = tmp_path
    response = upload(bank_a, csv_file(csv_row("L-1", 1, status="paid")))
    submission = process(response.json()["id"])
    path = f"/api/v1/submissions/{submission.pk}/errors"
    lines = bank_a.client.get(path)
    assert lines["Content-Type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in b"".join(lines.streaming_content).decode().splitlines()]
    assert [(row["line"], row["field"]) for row in rows] == [(2, "status")]
    expected = {"results": rows}
    for asked in ({"HTTP_ACCEPT": "application/json"}, {"data": {"format": "json"}}):
        answer = bank_a.client.get(path, **asked)
        assert answer["Content-Type"] == "application/json"
        assert answer.json() == expected
    assert bank_a.client.get(path, {"format": "jsonl"})["Content-Type"].startswith("application/x-ndjson")
    assert bank_a.client.get(path, {"format": ""}).status_code == 404


def test_the_days_past_due_pattern_is_the_validation_rule():
    import re

    from exchange.api.records import DaysInput
    from exchange.validation import MAX_DAYS_PAST_DUE, _non_negative_int

    spec = DaysInput._spectacular_annotation["field"]
    integer, text = spec["anyOf"]
    assert integer["maximum"] == MAX_DAYS_PAST_DUE
    pattern = re.compile(text["pattern"])
    for value in [
        "0",
        "7",
        "00045",
        "99999",
        "100000",
        "000000100000",
        "100001",
        "999999",
        "1" * 13,
        "0" * 13,
        "",
        "-1",
    ]:
        try:
            accepted = _non_negative_int(value) >= 0
        except ValueError:
            accepted = False
        assert bool(pattern.fullmatch(value)) == accepted, value
