"""The borrower's report in the admin console: staff only, complete, audited, and the identifier kept nowhere."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.utils import timezone

from audit.models import AuditEvent
from exchange.disputes import dispute_open_by_staff
from exchange.models import Dispute, Record
from tests.factories import consent, record, ric, subject

pytestmark = pytest.mark.django_db

URL = "/admin/borrower-report/"
IDENTIFIER = ric(1)


def submit(persona, *records):
    response = persona.client.post("/api/v1/records", {"records": list(records)}, format="json")
    assert response.status_code == 201, response.content
    return [r["id"] for r in response.json()["results"]]


def staff_client(username: str = "alice", *, staff: bool = True, permission: bool = True) -> Client:
    user = User.objects.create_user(username=username, password="a long passphrase 42", is_staff=staff)
    if permission:
        user.user_permissions.add(Permission.objects.get(codename="view_record", content_type__app_label="exchange"))
    client = Client()
    client.force_login(user)
    return client


def look_up(client: Client, id_number: str = IDENTIFIER, id_type: str = "CN_RIC"):
    return client.post(URL, {"id_type": id_type, "id_number": id_number, "country": ""})


@pytest.fixture
def borrower(bank_a, bank_b):
    """Subject 1: a record of bank_a under an overdue dispute, a withdrawn one of bank_b, an inquiry by bank_b;
    subject 2 (another borrower) has a record of bank_a that must not show."""
    [disputed] = submit(bank_a, record("A-1", 1, amount_overdue="1234.56"))
    submit(bank_a, record("A-OTHER", 2, amount_overdue="9876.54"))
    [withdrawn] = submit(bank_b, record("B-1", 1, product="credit_card", amount_overdue="777.00"))
    withdrawal = bank_b.client.post(f"/api/v1/records/{withdrawn}/withdraw", {"reason": "sent in error"}, format="json")
    assert withdrawal.status_code == 200
    granted = bank_b.client.post("/api/v1/consents", consent(1, "credit_line_review"), format="json").json()
    body = {"subject": subject(1), "consent_id": granted["id"], "purpose": "credit_line_review"}
    assert bank_b.client.post("/api/v1/inquiries", body, format="json").status_code == 200
    dispute = dispute_open_by_staff(record=Record.objects.get(pk=disputed), reason="not mine", actor="staff:bob")
    Dispute.objects.filter(pk=dispute.pk).update(due_at=timezone.now() - timedelta(days=1))
    return Record.objects.get(pk=disputed).subject_token


def test_staff_see_every_record_and_inquiry_on_the_borrower(borrower):
    response = look_up(staff_client(), id_number=IDENTIFIER[:6] + " " + IDENTIFIER[6:].lower())
    assert response.status_code == 200
    page = response.content.decode()
    records = page[page.index('id="records"') : page.index('id="inquiries"')]
    assert "Bank A" in records and "Bank B" in records
    assert "1234.56" in records and "777.00" in records
    assert "9876.54" not in page  # another borrower
    assert "withdrawn" in records and "suppressed" in records and "overdue" in records
    assert "staff:bob" in records
    inquiries = page[page.index('id="inquiries"') :]
    assert "Bank B" in inquiries and "Credit line review" in inquiries
    assert borrower in page
    assert 'media="print"' in page


def test_the_identifier_is_never_echoed_stored_or_logged(borrower, caplog):
    client = staff_client()
    with caplog.at_level(logging.DEBUG):
        response = look_up(client)
        refused = look_up(client, id_number=IDENTIFIER[:-1] + ("0" if IDENTIFIER[-1] != "0" else "1"))
    assert response.status_code == 200 and refused.status_code == 200
    assert "check character" in refused.content.decode()
    for answer in (response, refused):
        assert IDENTIFIER not in answer.content.decode()
        assert IDENTIFIER[:-1] not in answer.content.decode()
    assert IDENTIFIER not in caplog.text
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                assert IDENTIFIER not in repr(row), table
                assert IDENTIFIER[:-1] not in repr(row), table


def test_each_lookup_is_audited_with_the_token_only(borrower):
    look_up(staff_client("carol"))
    event = AuditEvent.objects.get(action="borrower_report.view")
    assert (event.actor, event.outcome, event.subject_token) == ("staff:carol", "ok", borrower)
    assert event.details == {"records": 2, "inquiries": 1}
    assert IDENTIFIER not in repr(AuditEvent.objects.filter(pk=event.pk).values().get())


def test_an_empty_form_is_shown_and_nothing_is_audited_before_a_lookup(db):
    response = staff_client().get(URL)
    assert response.status_code == 200
    assert 'name="id_number"' in response.content.decode()
    assert not AuditEvent.objects.filter(action="borrower_report.view").exists()


def test_an_unknown_borrower_gets_an_empty_report(db):
    response = look_up(staff_client(), id_number=ric(9))
    assert response.status_code == 200
    assert "holds no record" in response.content.decode()
    assert AuditEvent.objects.get(action="borrower_report.view").details == {"records": 0, "inquiries": 0}


@pytest.mark.parametrize(("staff", "permission"), [(False, True), (True, False)])
def test_users_without_staff_status_and_permission_are_refused_and_audited(borrower, staff, permission):
    client = staff_client("mallory", staff=staff, permission=permission)
    response = look_up(client)
    assert response.status_code == 403
    assert "Bank A" not in response.content.decode()
    event = AuditEvent.objects.get(action="borrower_report.view")
    assert (event.actor, event.outcome, event.subject_token) == ("staff:mallory", "denied", "")


def test_a_superuser_may_look_up(borrower):
    User.objects.create_superuser("root", password="a long passphrase 42")
    client = Client()
    client.login(username="root", password="a long passphrase 42")
    assert look_up(client).status_code == 200


def test_an_anonymous_visitor_is_sent_to_the_login_page(borrower):
    response = look_up(Client())
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert not AuditEvent.objects.filter(action="borrower_report.view").exists()
