"""Records: batch submission, validation, versions, idempotency, listing, withdrawal, isolation."""

from __future__ import annotations

import copy
import uuid
from datetime import date, timedelta

import pytest
from django.db import connection, transaction

from audit.models import AuditEvent
from exchange.models import Record, RecordVersion
from members.services import api_key_issue
from tests.conftest import bearer
from tests.factories import record, ric

pytestmark = pytest.mark.django_db


def submit(persona, *records, **headers):
    return persona.client.post("/api/v1/records", {"records": list(records)}, format="json", **headers)


def error_fields(response) -> set[tuple[int | None, str | None]]:
    assert response.status_code == 422, response.content
    body = response.json()
    assert body["code"] == "validation_failed"
    return {(e["index"], e["field"]) for e in body["errors"]}


def test_it_stores_a_batch_and_answers_one_result_per_record(bank_a):
    response = submit(bank_a, record("L-1", 1), record("L-2", 2))
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert [(r["index"], r["member_reference"], r["version"], r["created"]) for r in results] == [
        (0, "L-1", 1, True),
        (1, "L-2", 1, True),
    ]
    stored = Record.objects.get(pk=results[0]["id"])
    assert stored.member == bank_a.member
    assert stored.member_reference == "L-1"
    assert stored.name == "Zhang San"
    assert (stored.principal, stored.amount_overdue) == (1_000_000, 150_050)
    assert RecordVersion.objects.filter(record=stored).count() == 1


def test_a_known_reference_becomes_a_new_version_and_history_keeps_both(bank_a):
    first = submit(bank_a, record("L-1", 1)).json()["results"][0]
    second = submit(bank_a, record("L-1", 1, days_past_due=75, amount_overdue="2000")).json()["results"][0]
    assert (second["id"], second["version"], second["created"]) == (first["id"], 2, False)
    history = bank_a.client.get(f"/api/v1/records/{first['id']}/history").json()["results"]
    assert [(v["version"], v["days_past_due"], v["amount_overdue"]) for v in history] == [
        (1, 45, "1500.50"),
        (2, 75, "2000.00"),
    ]
    detail = bank_a.client.get(f"/api/v1/records/{first['id']}").json()
    assert (detail["version"], detail["days_past_due"]) == (2, 75)


def test_one_invalid_record_rejects_the_whole_batch_listing_every_error(bank_a):
    bad_subject = record("L-2", 2)
    bad_subject["subject"]["id_number"] = ric(2)[:-1] + ("0" if ric(2)[-1] != "0" else "1")
    response = submit(
        bank_a,
        record("L-1", 1),
        bad_subject,
        record("L-3", 3, principal="-1", status="bogus", opened_on="2026-13-01"),
    )
    assert error_fields(response) >= {
        (1, "subject.id_number"),
        (2, "principal"),
        (2, "status"),
        (2, "opened_on"),
    }
    assert Record.objects.count() == 0
    body = response.json()
    assert ric(2) not in response.content.decode()
    assert "nothing was stored" in body["detail"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"member_reference": ""}, "member_reference"),
        ({"member_reference": "x" * 65}, "member_reference"),
        ({"product": "yacht"}, "product"),
        ({"currency": "XXQ"}, "currency"),
        ({"principal": "10.123"}, "principal"),
        ({"principal": 10.5}, "principal"),
        ({"amount_overdue": "-5"}, "amount_overdue"),
        ({"days_past_due": -1}, "days_past_due"),
        ({"days_past_due": True}, "days_past_due"),
        ({"status": "paid"}, "status"),
        ({"as_of": (date.today() + timedelta(days=3)).isoformat()}, "as_of"),
        ({"opened_on": "2026-08-02", "delinquent_since": "2026-08-01"}, "delinquent_since"),
        ({"delinquent_since": "2026-09-16"}, "as_of"),
        ({"notice_sent_on": "2026-09-16"}, "notice_sent_on"),
        ({"status": "settled"}, "settled_on"),
        ({"status": "written_off"}, "settled_on"),
        ({"settled_on": "2026-09-01"}, "settled_on"),
        ({"payment_history": "NNQ"}, "payment_history"),
        ({"payment_history": "N" * 25}, "payment_history"),
        ({"opened_on": "01/10/2025"}, "opened_on"),
        ({"unexpected": 1}, None),
        ({"subject": {"id_type": "CN_RIC", "id_number": "110105198503140013", "110105198503140021": 1}}, "subject"),
        ({"subject": {"id_type": "CN_RIC"}}, "subject.id_number"),
        ({"subject": {"id_type": "SSN", "id_number": "1"}}, "subject.id_type"),
        ({"subject": "110105"}, "subject"),
        ({"subject": {"id_type": "PASSPORT", "id_number": "E1234567"}}, "subject.country"),
    ],
)
def test_each_record_rule_is_enforced(bank_a, overrides, field):
    response = submit(bank_a, record("L-1", 1, **overrides))
    assert (0, field) in error_fields(response)
    assert Record.objects.count() == 0


def test_missing_required_fields_are_each_named(bank_a):
    response = submit(bank_a, {"member_reference": "L-1"})
    fields = {f for _, f in error_fields(response)}
    assert fields >= {"subject", "product", "principal", "amount_overdue", "days_past_due", "status", "as_of"}


def test_settled_records_need_settled_on_and_accept_it(bank_a):
    response = submit(bank_a, record("L-1", 1, status="settled", settled_on="2026-09-10", amount_overdue="0"))
    assert response.status_code == 201, response.content


def test_a_reference_repeated_in_one_batch_is_an_error(bank_a):
    assert (1, "member_reference") in error_fields(submit(bank_a, record("L-1", 1), record("L-1", 2)))


@pytest.mark.parametrize("count", [0, 1001])
def test_a_batch_holds_1_to_1000_records(bank_a, count):
    response = submit(bank_a, *[record(f"L-{i}", i) for i in range(count)])
    assert (None, "records") in error_fields(response)


@pytest.mark.parametrize("body", [[1, 2], {"records": "x"}, {"record": []}])
def test_a_wrong_shape_is_malformed(bank_a, body):
    response = bank_a.client.post("/api/v1/records", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"


def test_invalid_json_is_malformed(bank_a):
    response = bank_a.client.post("/api/v1/records", b'{"records": [', content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "malformed_request")


def test_a_non_json_body_is_unsupported(bank_a):
    response = bank_a.client.post("/api/v1/records", b"a,b", content_type="text/csv")
    assert (response.status_code, response.json()["code"]) == (415, "unsupported_media_type")


def test_a_retry_with_the_same_idempotency_key_replays_and_stores_nothing(bank_a):
    first = submit(bank_a, record("L-1", 1), HTTP_IDEMPOTENCY_KEY="batch-0001")
    again = submit(bank_a, record("L-1", 1), HTTP_IDEMPOTENCY_KEY="batch-0001")
    assert first.status_code == again.status_code == 201
    assert again.content == first.content  # the same bytes, key order included
    assert again["Idempotent-Replayed"] == "true"
    assert RecordVersion.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_refused(bank_a):
    submit(bank_a, record("L-1", 1), HTTP_IDEMPOTENCY_KEY="batch-0001")
    response = submit(bank_a, record("L-2", 2), HTTP_IDEMPOTENCY_KEY="batch-0001")
    assert (response.status_code, response.json()["code"]) == (422, "idempotency_key_reused")
    assert Record.objects.count() == 1


def test_idempotency_keys_are_per_member(bank_a, bank_b):
    submit(bank_a, record("L-1", 1), HTTP_IDEMPOTENCY_KEY="batch-0001")
    response = submit(bank_b, record("L-9", 9), HTTP_IDEMPOTENCY_KEY="batch-0001")
    assert response.status_code == 201
    assert response.json()["results"][0]["member_reference"] == "L-9"


def test_a_rejected_batch_does_not_burn_its_idempotency_key(bank_a):
    assert submit(bank_a, record("L-1", 1, status="nope"), HTTP_IDEMPOTENCY_KEY="k-000001").status_code == 422
    response = submit(bank_a, record("L-1", 1), HTTP_IDEMPOTENCY_KEY="k-000001")
    assert response.status_code == 201


def test_a_claimed_idempotency_key_without_a_live_request(bank_a):
    from django.utils import timezone

    from exchange.idempotency import fingerprint
    from exchange.models import IdempotencyKey

    body = {"records": [record("L-1", 1)]}
    # Simulate the first request still running: its claim exists, not completed, lock fresh.
    from rest_framework.test import APIRequestFactory

    request = APIRequestFactory().post("/api/v1/records", body, format="json")
    IdempotencyKey.objects.create(
        member=bank_a.member,
        key="k-inflight",
        fingerprint=fingerprint(request, bank_a.member),
        locked_until=timezone.now() + timedelta(minutes=5),
    )
    response = bank_a.client.post("/api/v1/records", body, format="json", HTTP_IDEMPOTENCY_KEY="k-inflight")
    if connection.vendor == "postgresql":
        # No request holds the key's advisory lock, so the claim was abandoned: it is taken over.
        assert response.status_code == 201
        assert Record.objects.count() == 1
    else:
        assert (response.status_code, response.json()["code"]) == (409, "idempotency_in_progress")
        assert Record.objects.count() == 0


def test_listing_shows_own_records_newest_first_with_filters_and_cursor(bank_a, bank_b):
    for i in range(5):
        submit(bank_a, record(f"L-{i}", i, status="delinquent" if i % 2 else "restructured"))
    submit(bank_b, record("B-1", 1))
    page = bank_a.client.get("/api/v1/records?page_size=2").json()
    assert set(page) == {"results", "next"}
    assert [r["member_reference"] for r in page["results"]] == ["L-4", "L-3"]
    rest = bank_a.client.get(page["next"]).json()
    assert [r["member_reference"] for r in rest["results"]] == ["L-2", "L-1"]
    first = page["results"][0]
    assert first["subject"] == {"id_type": "CN_RIC"}
    assert set(first) >= {"id", "version", "withdrawn", "disputed", "created_at", "updated_at", "principal"}
    statuses = bank_a.client.get("/api/v1/records?status=restructured").json()["results"]
    assert sorted(r["member_reference"] for r in statuses) == ["L-0", "L-2", "L-4"]
    by_ref = bank_a.client.get("/api/v1/records?member_reference=L-3").json()["results"]
    assert [r["member_reference"] for r in by_ref] == ["L-3"]
    assert bank_b.client.get("/api/v1/records?member_reference=L-3").json()["results"] == []
    future = bank_a.client.get("/api/v1/records?updated_since=2999-01-01").json()["results"]
    assert future == []
    assert bank_a.client.get("/api/v1/records?status=zzz").status_code == 422
    assert bank_a.client.get("/api/v1/records?updated_since=yesterday").status_code == 422
    assert bank_a.client.get("/api/v1/records?cursor=garbage").status_code == 400


def test_another_members_record_is_not_found_everywhere(bank_a, bank_b):
    record_id = submit(bank_a, record("L-1", 1)).json()["results"][0]["id"]
    for path in (f"/api/v1/records/{record_id}", f"/api/v1/records/{record_id}/history"):
        response = bank_b.client.get(path)
        assert (response.status_code, response.json()["code"]) == (404, "not_found")
    response = bank_b.client.post(f"/api/v1/records/{record_id}/withdraw", {"reason": "x"}, format="json")
    assert response.status_code == 404
    assert Record.objects.get(pk=record_id).withdrawn_at is None
    # The same answer as for an id that does not exist at all.
    unknown = bank_b.client.get(f"/api/v1/records/{uuid.uuid4()}")
    assert unknown.json() == response.json() | {"detail": unknown.json()["detail"]}
    # A peer's resubmission of the same reference creates its own record, never a version of bank_a's.
    peer = submit(bank_b, record("L-1", 1)).json()["results"][0]
    assert peer["id"] != record_id and peer["created"] is True


def test_withdrawal_keeps_history_and_is_audited(bank_a):
    record_id = submit(bank_a, record("L-1", 1)).json()["results"][0]["id"]
    response = bank_a.client.post(f"/api/v1/records/{record_id}/withdraw", {"reason": "sent in error"}, format="json")
    assert response.status_code == 200
    assert response.json()["withdrawn"] is True
    assert len(bank_a.client.get(f"/api/v1/records/{record_id}/history").json()["results"]) == 1
    event = AuditEvent.objects.filter(action="record.withdraw").get()
    assert event.object_id == record_id
    assert "sent in error" not in str(event.details)
    assert bank_a.client.post(f"/api/v1/records/{record_id}/withdraw", {}, format="json").status_code == 422


def test_a_submit_scope_is_needed(bank_a):
    _key, query_only = api_key_issue(member=bank_a.member, scopes=["query"], actor="test")
    client = bearer(query_only)
    assert client.get("/api/v1/records").json()["code"] == "scope_required"
    assert client.post("/api/v1/records", {"records": [record("L-1")]}, format="json").status_code == 403
    assert Record.objects.count() == 0


def test_every_stored_version_is_audited_with_the_token_and_never_the_identifier(bank_a):
    submit(bank_a, record("L-1", 1), record("L-2", 2))
    events = list(AuditEvent.objects.filter(action="record.submit"))
    assert len(events) == 2
    assert all(len(e.subject_token) == 64 for e in events)
    dump = repr([e.__dict__ for e in events])
    for secret in (ric(1), ric(2), "Zhang San", "L-1", "L-2"):
        assert secret not in dump


def test_a_rejected_batch_is_audited_as_denied(bank_a):
    submit(bank_a, record("L-1", 1, status="nope"))
    event = AuditEvent.objects.get(action="record.submit")
    assert (event.outcome, event.details["why"], event.details["errors"]) == ("denied", "validation_failed", 1)


def test_a_withdrawn_record_resubmitted_is_reinstated_as_a_new_version(bank_a):
    record_id = submit(bank_a, record("L-1", 1)).json()["results"][0]["id"]
    bank_a.client.post(f"/api/v1/records/{record_id}/withdraw", {"reason": "error"}, format="json")
    result = submit(bank_a, copy.deepcopy(record("L-1", 1))).json()["results"][0]
    assert (result["id"], result["version"]) == (record_id, 2)
    assert bank_a.client.get(f"/api/v1/records/{record_id}").json()["withdrawn"] is False


def test_refusals_to_withdraw_or_revoke_anothers_objects_are_audited(bank_a, bank_b):
    from tests.factories import consent

    record_id = submit(bank_a, record("L-1", 1)).json()["results"][0]["id"]
    consent_id = bank_a.client.post("/api/v1/consents", consent(1), format="json").json()["id"]
    assert (
        bank_b.client.post(f"/api/v1/records/{record_id}/withdraw", {"reason": "x"}, format="json").status_code == 404
    )
    assert bank_b.client.post(f"/api/v1/consents/{consent_id}/revoke").status_code == 404
    denied = AuditEvent.objects.filter(outcome="denied", member_code="BANKB")
    assert {(e.action, e.object_id) for e in denied} == {("record.withdraw", record_id), ("consent.revoke", consent_id)}


def test_a_batchs_events_are_stored_already_sealed_in_its_transaction(bank_a):
    # One writer, one sealer: on either database a batch's record.submit events go in sealed (no
    # sealer pass after the commit needed), each naming its record and version.
    from audit.sealing import seal_pending
    from audit.verify import verify_chain
    from exchange.records import records_store
    from exchange.validation import parse_record

    submit(bank_a, record("L-1", 1))
    parsed = [parse_record(record("L-1", 1, days_past_due=80)), parse_record(record("L-2", 2))]
    with transaction.atomic():
        stored = records_store(member=bank_a.member, actor="test", records=parsed)
        events = list(AuditEvent.objects.filter(action="record.submit", actor="test").order_by("seq"))
    assert [(e.object_id, e.details["version"], e.details["created"]) for e in events] == [
        (s["id"], s["version"], s["created"]) for s in stored
    ]
    assert [s["version"] for s in stored] == [2, 1]
    assert all(e.seq is not None for e in events)
    seal_pending()  # the personas' own events, and a checkpoint
    assert verify_chain().ok
