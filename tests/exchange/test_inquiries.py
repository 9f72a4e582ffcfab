"""Inquiries: consent enforcement, reciprocity, the summary field by field, counts, isolation, cost."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit.models import AuditEvent
from exchange.models import Consent, Inquiry, Record
from members.services import api_key_issue
from tests.conftest import bearer, make_persona
from tests.factories import consent, record, ric, subject

pytestmark = pytest.mark.django_db


def submit(persona, *records):
    response = persona.client.post("/api/v1/records", {"records": list(records)}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["results"]


def grant(persona, n: int, purpose: str = "credit_application") -> str:
    response = persona.client.post("/api/v1/consents", consent(n, purpose), format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def inquire(persona, n: int, consent_id: str, purpose: str = "credit_application"):
    body = {"subject": subject(n), "consent_id": consent_id, "purpose": purpose}
    return persona.client.post("/api/v1/inquiries", body, format="json")


@pytest.fixture
def bank_c(db):
    return make_persona("BANKC", "Bank C")


def test_the_summary_is_exact_on_a_three_member_case(bank_a, bank_b, bank_c):
    submit(
        bank_a,
        record(
            "A-1",
            7,
            product="credit_line",
            days_past_due=95,
            amount_overdue="5000.00",
            delinquent_since="2026-08-01",
            payment_history="NN1234",
        ),
    )
    submit(
        bank_b,
        record("B-1", 7, status="restructured", days_past_due=30, amount_overdue="300", delinquent_since="2026-05-01"),
        record("B-2", 7, days_past_due=400, amount_overdue="999.99"),
    )
    withdrawn = Record.objects.get(member=bank_b.member, version=1, days_past_due=400)
    bank_b.client.post(f"/api/v1/records/{withdrawn.pk}/withdraw", {"reason": "error"}, format="json")
    submit(
        bank_c,
        record(
            "C-1",
            7,
            status="settled",
            settled_on="2026-06-01",
            amount_overdue="0",
            days_past_due=0,
            delinquent_since="2025-12-01",
            as_of="2026-06-01",
            notice_sent_on="2025-12-05",
            payment_history="N123C",
        ),
        record(
            "C-2",
            7,
            currency="USD",
            status="written_off",
            settled_on="2026-02-01",
            amount_overdue="100",
            days_past_due=200,
            opened_on="2024-01-01",
            delinquent_since="2025-10-01",
            as_of="2026-02-01",
            notice_sent_on="2025-10-02",
        ),
        record("C-3", 8, days_past_due=500),  # another borrower
    )
    # Earlier inquiries: two by bank_b this week, one by bank_c 40 days ago, one by bank_a itself.
    consent_b = grant(bank_b, 7)
    assert inquire(bank_b, 7, consent_b).status_code == 200
    assert inquire(bank_b, 7, consent_b).status_code == 200
    consent_c = grant(bank_c, 7)
    old = inquire(bank_c, 7, consent_c).json()["id"]
    Inquiry.objects.filter(pk=old).update(created_at=timezone.now() - timedelta(days=40))
    consent_a = grant(bank_a, 7)
    assert inquire(bank_a, 7, consent_a).status_code == 200

    response = inquire(bank_a, 7, consent_a)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["subject_found"] is True
    assert body["summary"] == {
        "open_delinquencies": 2,
        "institutions_with_open": 2,
        "worst_days_past_due": 95,
        "total_amount_overdue": [{"currency": "CNY", "amount": "5300.00"}],
        "settled_count": 1,
        "written_off_count": 1,
        "max_days_past_due_24m": 200,
        "last_delinquent_since": "2026-08-01",
        "disputed_count": 0,
    }
    assert body["inquiries"] == {
        "last_7_days": 2,
        "last_30_days": 2,
        "last_90_days": 3,
        "institutions_last_90_days": 2,
    }
    lines = body["records"]
    assert [(line["line"], line["status"], line["reported_by_you"]) for line in lines] == [
        (0, "delinquent", True),
        (1, "restructured", False),
        (2, "settled", False),
        (3, "written_off", False),
    ]
    assert lines[0] == {
        "line": 0,
        "product": "credit_line",
        "status": "delinquent",
        "days_past_due": 95,
        "currency": "CNY",
        "amount_overdue": "5000.00",
        "opened_on": "2025-01-10",
        "delinquent_since": "2026-08-01",
        "as_of": "2026-09-15",
        "settled_on": None,
        "disputed": False,
        "reported_by_you": True,
    }
    assert lines[2]["settled_on"] == "2026-06-01"
    text = response.content.decode()
    for secret in ("BANKB", "Bank B", "BANKC", "Bank C", "B-1", "C-1", "Zhang San", ric(7), str(withdrawn.pk)):
        assert secret not in text
    # The report can be read again as it was answered.
    again = bank_a.client.get(f"/api/v1/inquiries/{body['id']}").json()
    assert again["summary"] == body["summary"] and again["records"] == lines


def test_the_worst_payment_code_counts_in_the_24_month_maximum(bank_a):
    submit(bank_a, record("A-1", 3, days_past_due=10, payment_history="N4NN"))
    body = inquire(bank_a, 3, grant(bank_a, 3)).json()
    assert (body["summary"]["worst_days_past_due"], body["summary"]["max_days_past_due_24m"]) == (10, 120)


def test_an_unknown_subject_is_not_found_with_an_empty_summary(bank_a):
    body = inquire(bank_a, 42, grant(bank_a, 42)).json()
    assert body["subject_found"] is False
    assert body["records"] == []
    assert body["summary"]["open_delinquencies"] == 0
    assert body["summary"]["total_amount_overdue"] == []
    assert body["summary"]["last_delinquent_since"] is None


def test_another_spelling_of_the_same_id_finds_the_same_subject(bank_a):
    submit(bank_a, record("A-1", 5))
    consent_id = grant(bank_a, 5)
    spelled = {"id_type": "CN_RIC", "id_number": " ".join(ric(5)[i : i + 6] for i in range(0, 18, 6)).lower()}
    response = bank_a.client.post(
        "/api/v1/inquiries",
        {"subject": spelled, "consent_id": consent_id, "purpose": "credit_application"},
        format="json",
    )
    assert response.json()["subject_found"] is True


def _refusal(response, why: str):
    assert response.status_code == 403, response.content
    assert response.json()["code"] == "consent_required"
    event = AuditEvent.objects.filter(action="inquiry.create").latest("id")
    assert (event.outcome, event.details["why"]) == ("denied", why)
    assert len(event.subject_token) == 64
    assert ric(1) not in str(event.details)


def test_an_inquiry_without_a_consent_is_refused_and_audited(bank_a):
    _refusal(inquire(bank_a, 1, str(uuid.uuid4())), "consent_not_found")
    assert Inquiry.objects.count() == 0


def test_another_members_consent_is_refused(bank_a, bank_b):
    _refusal(inquire(bank_a, 1, grant(bank_b, 1)), "consent_not_found")


def test_a_revoked_consent_is_refused(bank_a):
    consent_id = grant(bank_a, 1)
    bank_a.client.post(f"/api/v1/consents/{consent_id}/revoke")
    _refusal(inquire(bank_a, 1, consent_id), "consent_revoked")


def test_an_expired_consent_is_refused(bank_a):
    consent_id = grant(bank_a, 1)
    Consent.objects.filter(pk=consent_id).update(expires_at=timezone.now() - timedelta(minutes=1))
    _refusal(inquire(bank_a, 1, consent_id), "consent_expired")


def test_a_consent_for_another_subject_is_refused(bank_a):
    _refusal(inquire(bank_a, 1, grant(bank_a, 2)), "consent_other_subject")


def test_a_consent_for_another_purpose_is_refused(bank_a):
    consent_id = grant(bank_a, 1, "guarantee_review")
    _refusal(inquire(bank_a, 1, consent_id, "credit_application"), "consent_other_purpose")


def test_reciprocity_refuses_members_that_furnish_nothing(bank_a, settings):
    settings.EXCHANGE_RECIPROCITY_DAYS = 30
    consent_id = grant(bank_a, 1)
    response = inquire(bank_a, 1, consent_id)
    assert (response.status_code, response.json()["code"]) == (403, "reciprocity_required")
    event = AuditEvent.objects.filter(action="inquiry.create").latest("id")
    assert event.details["why"] == "reciprocity_required"
    submit(bank_a, record("A-1", 9))
    assert inquire(bank_a, 1, consent_id).status_code == 200


def test_withdrawn_records_leave_inquiry_results(bank_a):
    record_id = submit(bank_a, record("A-1", 1))[0]["id"]
    consent_id = grant(bank_a, 1)
    assert len(inquire(bank_a, 1, consent_id).json()["records"]) == 1
    bank_a.client.post(f"/api/v1/records/{record_id}/withdraw", {"reason": "paid"}, format="json")
    assert inquire(bank_a, 1, consent_id).json()["records"] == []


def test_a_new_version_replaces_the_old_one_in_results(bank_a):
    submit(bank_a, record("A-1", 1, days_past_due=10))
    submit(bank_a, record("A-1", 1, days_past_due=70))
    lines = inquire(bank_a, 1, grant(bank_a, 1)).json()["records"]
    assert [line["days_past_due"] for line in lines] == [70]


def test_members_see_only_their_own_inquiries(bank_a, bank_b):
    inquiry_id = inquire(bank_a, 1, grant(bank_a, 1)).json()["id"]
    assert [i["id"] for i in bank_a.client.get("/api/v1/inquiries").json()["results"]] == [inquiry_id]
    assert bank_b.client.get("/api/v1/inquiries").json()["results"] == []
    response = bank_b.client.get(f"/api/v1/inquiries/{inquiry_id}")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")


def test_inquiries_need_the_query_scope(bank_a):
    consent_id = grant(bank_a, 1)
    _key, submit_only = api_key_issue(member=bank_a.member, scopes=["submit"], actor="test")
    body = {"subject": subject(1), "consent_id": consent_id, "purpose": "credit_application"}
    response = bearer(submit_only).post("/api/v1/inquiries", body, format="json")
    assert (response.status_code, response.json()["code"]) == (403, "scope_required")


def test_an_inquiry_is_audited_with_the_token_only(bank_a):
    inquiry_id = inquire(bank_a, 1, grant(bank_a, 1)).json()["id"]
    event = AuditEvent.objects.get(action="inquiry.create", outcome="ok")
    assert event.object_id == inquiry_id
    assert event.subject_token == Inquiry.objects.get(pk=inquiry_id).subject_token
    assert ric(1) not in repr(event.__dict__)


@pytest.mark.parametrize(
    "body",
    [
        {
            "subject": {"id_type": "CN_RIC", "id_number": "1"},
            "consent_id": str(uuid.uuid4()),
            "purpose": "credit_application",
        },
        {"subject": subject(1), "consent_id": "nope", "purpose": "credit_application"},
        {"subject": subject(1), "consent_id": str(uuid.uuid4()), "purpose": "fun"},
        {"subject": subject(1)},
    ],
)
def test_invalid_inquiries_get_422(bank_a, body):
    response = bank_a.client.post("/api/v1/inquiries", body, format="json")
    assert (response.status_code, response.json()["code"]) == (422, "validation_failed")
    assert ric(1) not in response.content.decode()


def test_the_inquiry_costs_a_fixed_number_of_queries_whatever_the_records(bank_a, bank_b):
    consent_id = grant(bank_a, 1)
    submit(bank_b, record("B-0", 1))
    inquire(bank_a, 1, consent_id)  # warm the key's last-used time
    with CaptureQueriesContext(connection) as few:
        assert inquire(bank_a, 1, consent_id).status_code == 200
    submit(bank_b, *[record(f"B-{i}", 1) for i in range(1, 40)])
    with CaptureQueriesContext(connection) as many:
        assert len(inquire(bank_a, 1, consent_id).json()["records"]) == 40
    assert len(few) == len(many)
    # key, consent, the inquiry quota's one upsert (members/limits.py), records with the inquiry
    # counts, then the write: BEGIN (here a savepoint), inquiry, audit event, COMMIT.
    assert len(many) <= 8, [q["sql"][:80] for q in many]


@pytest.mark.django_db(transaction=True)
def test_no_identifier_name_or_reference_is_in_the_database(bank_a):
    secrets = {"id": ric(77), "name": "Li Siwei-Unique", "reference": "LOAN-REF-8841-XYZ"}
    submit(bank_a, record(secrets["reference"], 77, subject={**subject(77), "name": secrets["name"]}))
    grant(bank_a, 77)
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        env = {**os.environ, "PGPASSWORD": db.get("PASSWORD") or ""}
        dump = subprocess.run(
            [
                os.path.join(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"), "pg_dump"),
                "-h",
                db["HOST"] or "localhost",
                "-p",
                str(db["PORT"] or 5432),
                "-U",
                db["USER"],
                db["NAME"],
            ],
            capture_output=True,
            env=env,
            check=True,
        ).stdout
    else:
        dump = connection.connection.serialize()
    assert len(dump) > 10_000
    assert Record.objects.count() == 1  # the record is there, in a form that reveals none of these
    for value in secrets.values():
        assert value.encode() not in dump
        assert value.encode("utf-16-le") not in dump


def test_the_inquiry_answer_is_what_the_output_serializer_gives(bank_a, bank_b):
    from exchange.api.inquiries import InquiryOutput, inquiry_body

    consent_id = grant(bank_a, 1)
    submit(bank_b, record("B-0", 1), record("B-1", 1, status="settled", settled_on="2026-09-01"))
    answer = inquire(bank_a, 1, consent_id).json()
    inquiry = Inquiry.objects.get(pk=answer["id"])
    assert inquiry_body(inquiry) == InquiryOutput(inquiry).data
    assert answer == json.loads(json.dumps(InquiryOutput(inquiry).data))
