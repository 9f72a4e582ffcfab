"""`insert_audited`: a model row and its audit event, both or neither.

On PostgreSQL outside any transaction both rows go in one statement (`WITH o AS (INSERT ...)
INSERT INTO audit_auditevent ...`); elsewhere (SQLite, or inside a transaction) two inserts in
one atomic block. Either way the event names the row by its primary key and is sealed after commit.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest
from django.db import DatabaseError, DataError, IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import sealing, services
from audit.models import AuditEvent
from audit.services import insert_audited
from audit.verify import verify_chain
from core.context import reset_request_id, set_request_id
from exchange.models import Channel, Consent, IdempotencyKey, IdType, Purpose

EVENTS = AuditEvent._meta.db_table
CONSENTS = Consent._meta.db_table

# Longer than AuditEvent.object_type (max_length 32): PostgreSQL refuses it (SQLite does not check).
TOO_LONG_OBJECT_TYPE = "x" * (AuditEvent._meta.get_field("object_type").max_length + 1)


def new_consent(member, n: int = 1) -> Consent:
    now = timezone.now()
    return Consent(
        member=member,
        subject_token=f"{n:064x}",
        id_type=IdType.CN_RIC,
        purpose=Purpose.CREDIT_APPLICATION,
        channel=Channel.APP,
        evidence_sha256=hashlib.sha256(f"consent {n}".encode()).hexdigest(),
        granted_at=now - timedelta(days=1),
        expires_at=now + timedelta(days=90),
    )


def write(consent: Consent, **overrides) -> int:
    arguments = {
        "action": "consent.register",
        "actor": f"member:{consent.member.code}",
        "member_code": consent.member.code,
        "object_type": "consent",
        "subject_token": consent.subject_token,
        "details": {"purpose": consent.purpose, "channel": consent.channel},
    }
    arguments.update(overrides)
    return insert_audited(consent, **arguments)


def assert_stored(consent: Consent, event_id: int) -> AuditEvent:
    """Both rows are in the database and the event names the consent; returns the stored event."""
    assert consent._state.adding is False
    assert isinstance(event_id, int)
    stored_consent = Consent.objects.get(pk=consent.pk)
    assert stored_consent.member_id == consent.member_id
    assert stored_consent.subject_token == consent.subject_token
    assert stored_consent.evidence_sha256 == consent.evidence_sha256
    stored = AuditEvent.objects.get(pk=event_id)
    assert stored.object_id == str(consent.pk)
    assert stored.object_type == "consent"
    assert stored.action == "consent.register"
    assert stored.member_code == consent.member.code
    assert stored.subject_token == consent.subject_token
    assert stored.outcome == "ok"
    assert stored.details == {"purpose": consent.purpose, "channel": consent.channel}
    assert AuditEvent.objects.filter(object_id=str(consent.pk)).count() == 1
    return stored


def assert_sealed_and_verified(event: AuditEvent) -> None:
    sealing.seal_pending()  # the backstop: seals what is left and signs the newest event
    event.refresh_from_db()
    assert event.seq is not None
    assert event.hash and event.prev_hash
    report = verify_chain()
    assert report.ok, report.summary()
    assert report.unsealed == 0


# --- both databases --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_inside_a_transaction_it_stores_the_row_and_its_event_which_seals(bank_a):
    consent = new_consent(bank_a.member)
    event = write(consent)
    stored = assert_stored(consent, event)
    assert stored.seq is None  # sealed after commit, and the test's transaction does not commit
    assert_sealed_and_verified(stored)


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_it_stores_the_row_and_its_event_and_seals_it_after_commit(bank_a):
    # PostgreSQL: the one-statement path; SQLite: the atomic block, sealed by its on_commit hook.
    consent = new_consent(bank_a.member)
    event = write(consent)
    stored = assert_stored(consent, event)
    assert stored.seq is not None, "the event was not sealed after its commit"
    assert_sealed_and_verified(stored)


@pytest.mark.django_db(transaction=True)
def test_several_writes_in_a_row_each_get_their_own_event_in_one_verified_chain(bank_a):
    consents = [new_consent(bank_a.member, n) for n in range(1, 6)]
    events = [write(consent) for consent in consents]
    assert len(set(events)) == 5
    for consent, event in zip(consents, events, strict=True):
        assert_stored(consent, event)
    seqs = sorted(AuditEvent.objects.filter(pk__in=events).values_list("seq", flat=True))
    assert None not in seqs
    assert len(set(seqs)) == 5
    assert_sealed_and_verified(AuditEvent.objects.get(pk=events[-1]))


@pytest.mark.django_db
def test_in_a_transaction_a_failing_event_insert_takes_the_row_back_with_it(bank_a, monkeypatch):
    # The atomic path (every database, inside a transaction): the event's insert fails after the
    # row's succeeded; the block's savepoint undoes the row.
    def failing_event_insert(fields):
        raise DatabaseError("simulated failure of the audit insert")

    monkeypatch.setattr(services, "_insert_event", failing_event_insert)
    consent = new_consent(bank_a.member)
    events_before = AuditEvent.objects.count()
    with pytest.raises(DatabaseError, match="simulated"):
        write(consent)
    assert not Consent.objects.filter(pk=consent.pk).exists()
    assert AuditEvent.objects.count() == events_before


@pytest.mark.django_db(transaction=True)
def test_a_row_refused_by_a_deferred_foreign_key_check_leaves_no_event(bank_a):
    # Django's foreign keys are checked at commit (DEFERRABLE INITIALLY DEFERRED): the failure
    # comes at the end of the one statement on PostgreSQL, at the atomic block's commit on SQLite.
    consent = new_consent(bank_a.member)
    consent.member_id = uuid.uuid4()  # no such member
    events_before = AuditEvent.objects.count()
    with pytest.raises(IntegrityError):
        insert_audited(consent, action="consent.register", actor="test", member_code="BANKA", object_type="consent")
    assert not Consent.objects.filter(pk=consent.pk).exists()
    assert AuditEvent.objects.count() == events_before


@pytest.mark.django_db
def test_forbidden_details_are_refused_before_anything_is_written(bank_a):
    consent = new_consent(bank_a.member)
    with pytest.raises(ValueError, match="may not carry"):
        write(consent, details={"id_number": "110105198503140011"})
    assert not Consent.objects.filter(pk=consent.pk).exists()
    assert not AuditEvent.objects.filter(object_id=str(consent.pk)).exists()


# --- primary keys ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_model_with_an_auto_increment_primary_key_is_refused(bank_a):
    key = IdempotencyKey(member=bank_a.member)
    events_before = AuditEvent.objects.count()
    with pytest.raises(ValueError, match="primary key is set before saving"):
        insert_audited(key, action="test.write", actor="test", object_type="idempotency")
    assert AuditEvent.objects.count() == events_before
    assert not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_an_instance_without_a_primary_key_is_refused(bank_a):
    consent = new_consent(bank_a.member)
    consent.pk = None
    events_before = AuditEvent.objects.count()
    with pytest.raises(ValueError, match="primary key is set before saving"):
        write(consent)
    assert AuditEvent.objects.count() == events_before
    assert not Consent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_an_auto_increment_primary_key_is_refused_too(bank_a):
    with pytest.raises(ValueError, match="primary key is set before saving"):
        insert_audited(IdempotencyKey(member=bank_a.member), action="test.write", actor="test")
    assert not AuditEvent.objects.filter(action="test.write").exists()


# --- PostgreSQL: the one-statement path -----------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_in_autocommit_both_rows_go_in_one_statement(bank_a, monkeypatch):
    seals = []
    monkeypatch.setattr(sealing, "seal_after_commit", lambda: seals.append(1))  # keep its queries out
    consent = new_consent(bank_a.member)
    assert connection.get_autocommit() and not connection.in_atomic_block
    with CaptureQueriesContext(connection) as captured:
        event = write(consent)
    statements = [query["sql"] for query in captured.captured_queries]
    assert len(statements) == 1, statements
    sql = statements[0]
    assert sql.lstrip().upper().startswith("WITH")
    assert CONSENTS in sql and EVENTS in sql
    assert seals == [1], "the event was not handed to the sealer after the statement"
    stored = assert_stored(consent, event)
    assert stored.seq is None  # the sealer was replaced here
    assert_sealed_and_verified(stored)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_inside_a_transaction_it_takes_the_two_insert_path(bank_a, monkeypatch):
    monkeypatch.setattr(sealing, "seal_after_commit", lambda: None)
    consent = new_consent(bank_a.member)
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        event = write(consent)
    inserts = [q["sql"] for q in captured.captured_queries if "INSERT" in q["sql"].upper()]
    assert len(inserts) == 2, inserts
    assert not any(CONSENTS in sql and EVENTS in sql for sql in inserts)
    assert_stored(consent, event)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_the_one_statement_is_atomic_a_failing_event_leaves_no_row(bank_a, monkeypatch):
    seals = []
    monkeypatch.setattr(sealing, "seal_after_commit", lambda: seals.append(1))
    consent = new_consent(bank_a.member)
    events_before = AuditEvent.objects.count()
    with CaptureQueriesContext(connection) as captured, pytest.raises(DataError):
        write(consent, object_type=TOO_LONG_OBJECT_TYPE)
    # It was the one-statement path that failed (not the atomic block's two inserts).
    assert len(captured.captured_queries) == 1
    assert CONSENTS in captured.captured_queries[0]["sql"] and EVENTS in captured.captured_queries[0]["sql"]
    assert not Consent.objects.filter(pk=consent.pk).exists()
    assert AuditEvent.objects.count() == events_before
    assert not AuditEvent.objects.filter(object_id=str(consent.pk)).exists()
    assert seals == []
    assert consent._state.adding is True  # not marked saved
    # The connection is fine afterwards, and the same consent can be written properly.
    event = write(consent)
    assert_stored(consent, event)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_failing_row_leaves_no_event(bank_a):
    consent = new_consent(bank_a.member)
    consent.id_type = "X" * 13  # longer than Consent.id_type (max_length 12)
    events_before = AuditEvent.objects.count()
    with pytest.raises(DataError):
        write(consent)
    assert not Consent.objects.filter(pk=consent.pk).exists()
    assert AuditEvent.objects.count() == events_before


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_duplicate_primary_key_leaves_no_second_event(bank_a):
    consent = new_consent(bank_a.member)
    write(consent)
    again = new_consent(bank_a.member, 2)
    again.pk = consent.pk
    with pytest.raises(IntegrityError):
        write(again)
    assert AuditEvent.objects.filter(object_id=str(consent.pk)).count() == 1
    assert Consent.objects.get(pk=consent.pk).subject_token == consent.subject_token


def test_the_new_primary_key_is_a_uuid_set_at_construction():
    # What the tests above rely on: Consent's primary key exists before saving.
    assert isinstance(Consent().pk, uuid.UUID)


@pytest.mark.django_db(transaction=True)
def test_the_event_stores_its_time_actor_and_request_id_as_the_orm_would(bank_a):
    # Both paths (one statement on PostgreSQL, two inserts elsewhere) prepare the values themselves.
    consent = new_consent(bank_a.member)
    before = timezone.now()
    token = set_request_id("req-0123456789abcdef")
    try:
        event_id = write(consent, actor="a" * 200)
    finally:
        reset_request_id(token)
    stored = AuditEvent.objects.get(pk=event_id)
    assert stored.actor == "a" * 120
    assert stored.request_id == "req-0123456789abcdef"
    assert stored.occurred_at.tzinfo is not None
    assert before <= stored.occurred_at <= timezone.now()
    assert stored.object_id == str(consent.pk)
