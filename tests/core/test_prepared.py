"""core.prepared pinned against the ORM: every prepared query and hand-built INSERT gives what its
queryset, or the ORM's own save, gives on the same data, on whichever database the run uses.

The queries are the product's own (members/authentication.py, exchange/inquiries.py,
audit/sealing.py, audit/services.py), so a change to one of them, to its queryset or to Django's
compiler that makes the two paths disagree fails here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from audit import sealing
from audit import services as audit_services
from audit.models import AuditEvent
from core.prepared import PreparedQuery, insert_one, insert_statement
from core.tokens import tokenize_subject
from exchange import inquiries as exchange_inquiries
from exchange.models import Consent, Dispute, Inquiry, Record
from members import authentication
from members.models import ApiKey
from tests.factories import consent, record, ric, subject

pytestmark = pytest.mark.django_db


def fields_of(instance) -> dict:
    """Every concrete field's value as the instance holds it (encrypted ones decrypted)."""
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


def run(query: PreparedQuery, **values) -> list[list]:
    """A prepared query's rows, bound, run and converted as its users do."""
    sql, params = query.bind(**values)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return query.convert(cursor.fetchall())


def submit(persona, *records) -> None:
    response = persona.client.post("/api/v1/records", {"records": list(records)}, format="json")
    assert response.status_code == 201, response.content


def grant(persona, n: int) -> str:
    response = persona.client.post("/api/v1/consents", consent(n), format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


@pytest.fixture
def exchange_data(bank_a, bank_b):
    """Records of two subjects and two members: plain, disputed, suppressed (an overdue dispute),
    withdrawn and settled ones; consents and inquiries on them."""
    submit(
        bank_a,
        record("A-1", 1, delinquent_since="2026-08-01"),
        record("A-2", 1, product="credit_line", days_past_due=120, delinquent_since="2026-02-01"),
        record("A-3", 1, days_past_due=10, delinquent_since="2026-09-01"),
        record("A-4", 2),
    )
    submit(
        bank_b,
        record(
            "B-1",
            1,
            status="settled",
            settled_on="2026-06-01",
            amount_overdue="0",
            days_past_due=0,
            delinquent_since="2025-12-01",
            as_of="2026-06-01",
            notice_sent_on="2025-12-05",
        ),
        record("B-2", 1, days_past_due=400, amount_overdue="999.99"),
    )
    withdrawn = Record.objects.get(member=bank_b.member, days_past_due=400)
    response = bank_b.client.post(f"/api/v1/records/{withdrawn.pk}/withdraw", {"reason": "error"}, format="json")
    assert response.status_code == 200, response.content
    consent_id = grant(bank_b, 1)
    inquiry = bank_b.client.post(
        "/api/v1/inquiries",
        {"subject": subject(1), "consent_id": consent_id, "purpose": "credit_application"},
        format="json",
    )
    assert inquiry.status_code == 200, inquiry.content
    inquiry_id = inquiry.json()["id"]
    reason = "I repaid this loan in full, receipt no. 4711"
    for line in (0, 1):
        body = {"inquiry_id": inquiry_id, "line": line, "reason": reason}
        filed = bank_b.client.post("/api/v1/disputes", body, format="json")
        assert filed.status_code == 201, filed.content
    # One of the two disputes is overdue: its record is suppressed from reports.
    overdue = Dispute.objects.get(line=0)
    Dispute.objects.filter(pk=overdue.pk).update(due_at=timezone.now() - timedelta(days=1))
    grant(bank_a, 1)
    return {"token": tokenize_subject("CN_RIC", ric(1)), "other_token": tokenize_subject("CN_RIC", ric(2))}


# --- prepared reads ---------------------------------------------------------------------------


def test_the_api_key_lookup_is_the_querysets(bank_a, bank_b):
    for key in ApiKey.objects.all():
        prepared = authentication._KEY_BY_PREFIX.first(prefix=key.prefix)
        orm = ApiKey.objects.select_related("member").get(prefix=key.prefix)
        assert fields_of(prepared) == fields_of(orm)
        assert fields_of(prepared.member) == fields_of(orm.member)  # select_related, no query
        assert prepared._state.adding is False and prepared._state.db == orm._state.db
    assert authentication._KEY_BY_PREFIX.first(prefix="cx_nosuchprefix") is None


def test_the_consent_lookup_is_the_querysets(exchange_data):
    for pk in Consent.objects.values_list("pk", flat=True):
        prepared = exchange_inquiries._CONSENT_BY_ID.first(pk=pk)
        assert fields_of(prepared) == fields_of(Consent.objects.get(pk=pk))
    assert exchange_inquiries._CONSENT_BY_ID.first(pk=uuid.uuid4()) is None


@pytest.mark.parametrize("later", [timedelta(0), timedelta(days=30)])
def test_the_visible_records_are_the_querysets(exchange_data, later):
    now = timezone.now() + later  # later: the other dispute is overdue too
    fields = exchange_inquiries._LINE_FIELDS
    for token in (exchange_data["token"], exchange_data["other_token"], "0" * 64):
        rows = run(exchange_inquiries._VISIBLE_RECORDS, token=token, now=now)
        prepared = [dict(zip(fields, row, strict=True)) for row in rows]
        orm = list(Record.objects.visible_for_inquiry(token, now).values(*fields))
        key = lambda row: row["id"]  # noqa: E731 - the prepared query has no ORDER BY
        assert sorted(prepared, key=key) == sorted(orm, key=key)
        if token == exchange_data["token"]:
            # The data covers what the query decides: a suppressed record, a disputed one.
            assert len(orm) == (2 if later else 3)
            assert [row["disputed"] for row in orm].count(True) == (0 if later else 1)


def test_the_report_rows_are_the_visible_records_and_the_inquiry_counts(exchange_data, bank_a, bank_b):
    now = timezone.now()
    for member in (bank_a.member, bank_b.member):
        for token in (exchange_data["token"], exchange_data["other_token"], "0" * 64):
            rows, counts = exchange_inquiries._report_rows(member=member, subject_token=token, now=now)
            orm = list(
                Record.objects.visible_for_inquiry(token, now)
                .values(*exchange_inquiries._LINE_FIELDS)
                .order_by("-delinquent_since", "id")
            )
            assert rows == orm
            assert counts == exchange_inquiries.inquiry_counts(member=member, subject_token=token, now=now)
    rows, counts = exchange_inquiries._report_rows(member=bank_a.member, subject_token=exchange_data["token"], now=now)
    assert len(rows) >= 3 and counts["last_90_days"] == 1  # the data is not trivially empty


def test_the_sealers_reads_are_the_querysets(exchange_data):
    def newest():
        return [
            list(row)
            for row in AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash")[:1]
        ]

    def unsealed():
        return [
            list(row)
            for row in AuditEvent.objects.filter(seq__isnull=True)
            .order_by("id")
            .values_list(*sealing.IMMUTABLE_COLUMNS)[: sealing.BATCH_SIZE]
        ]

    assert run(sealing._UNSEALED) == unsealed() != []
    assert run(sealing._NEWEST_SEALED) == newest()
    sealing.seal_pending(checkpoint=False)
    audit_services.audit_write(action="auth.authenticate", actor="test", details={"why": "pinned"})
    assert run(sealing._NEWEST_SEALED) == newest() != []
    assert run(sealing._UNSEALED) == unsealed() != []


# --- hand-built INSERTs -----------------------------------------------------------------------


def _stored(model, pk) -> dict:
    """The row as the ORM reads it back, without its primary key."""
    row = model.objects.filter(pk=pk).values().get()
    row.pop(model._meta.pk.attname)
    return row


def _inquiry(member, consent_obj) -> Inquiry:
    return Inquiry(
        member=member,
        subject_token=consent_obj.subject_token,
        consent=consent_obj,
        purpose="credit_application",
        created_at=datetime(2026, 11, 29, 3, 58, 15, 157262, tzinfo=UTC),
        result={"subject_found": True, "records": [{"amount": "1.50", "text": "\u5f20\u4e09"}], "n": None},
        line_records=[str(uuid.uuid4())],
    )


def _copy(instance):
    values = {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields if not f.primary_key}
    return type(instance)(**values)


def test_insert_one_stores_what_the_orm_saves(exchange_data, bank_a):
    consent_obj = Consent.objects.filter(member=bank_a.member).get()
    for instance in (_inquiry(bank_a.member, consent_obj), _copy(consent_obj)):
        twin = _copy(instance)
        with transaction.atomic():
            insert_one(instance)
        twin.save(force_insert=True)
        assert instance.pk != twin.pk
        assert _stored(type(instance), instance.pk) == _stored(type(twin), twin.pk)
        assert instance._state.adding is False


@pytest.mark.django_db(transaction=True)
def test_insert_audited_stores_what_the_orm_saves_and_its_event_is_the_orms(bank_a):
    # Transactional: on PostgreSQL in autocommit, insert_audited is one `WITH ... INSERT` statement.
    consent_obj = Consent.objects.get(pk=grant(bank_a, 3))
    instance = _inquiry(bank_a.member, consent_obj)
    twin = _copy(instance)
    event_id = audit_services.insert_audited(
        instance, action="inquiry.create", actor="test", member_code="BANKA", object_type="inquiry", details={"n": 1}
    )
    twin.save(force_insert=True)
    assert _stored(Inquiry, instance.pk) == _stored(Inquiry, twin.pk)
    inserted = audit_services._INSERTED
    event = AuditEvent.objects.filter(pk=event_id).values(*inserted).get()
    assert event["object_id"] == str(instance.pk) and event["details"] == {"n": 1}
    orm_event = AuditEvent.objects.create(**event)
    assert AuditEvent.objects.filter(pk=orm_event.pk).values(*inserted).get() == event


def test_audit_writes_store_what_the_orm_saves():
    fields = audit_services._fields(
        action="auth.authenticate",
        actor="key:cx_test",
        outcome="denied",
        member_code="BANKA",
        object_type="key",
        object_id=uuid.uuid4(),
        subject_token="t" * 64,
        details={"why": "unknown", "nested": {"list": [1, "\u5f20"]}},
    )
    with transaction.atomic():
        event_id = audit_services._insert_event(fields)
        orm = AuditEvent.objects.create(**fields)
    inserted = audit_services._INSERTED
    assert (
        AuditEvent.objects.filter(pk=event_id).values(*inserted).get()
        == AuditEvent.objects.filter(pk=orm.pk).values(*inserted).get()
    )


def test_insert_statement_names_every_column_but_the_auto_one_and_is_built_once():
    for model in (Inquiry, Consent, AuditEvent):
        sql, fields, auto = insert_statement(model)
        assert auto is model._meta.auto_field
        assert [f.attname for f in fields] == [f.attname for f in model._meta.local_concrete_fields if f is not auto]
        returning = f" RETURNING {connection.ops.quote_name(auto.column)}" if auto is not None else ""
        assert sql.endswith(f"VALUES ({', '.join(['%s'] * len(fields))}){returning}")
        assert insert_statement(model) is insert_statement(model)
