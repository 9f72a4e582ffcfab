"""Staff personas of the admin console, one per role, and a small data set to work on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from exchange.disputes import dispute_open_by_staff
from exchange.models import Dispute, Record
from members.roles import AUDITOR, COMPLIANCE, OPERATOR
from tests.factories import consent, record, subject

PASSWORD = "a long passphrase 42"
BORROWER_NAME = "Zhang San"
REFERENCE = "LOAN-A-1"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Staff logins here are created per test: a deliberately slow hash would dominate the run."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def make_staff(username: str, role: str | None) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def operator(db) -> Client:
    return logged_in(make_staff("olivia", OPERATOR))


@pytest.fixture
def compliance(db) -> Client:
    return logged_in(make_staff("carl", COMPLIANCE))


@pytest.fixture
def auditor(db) -> Client:
    return logged_in(make_staff("audrey", AUDITOR))


@pytest.fixture
def no_role(db) -> Client:
    return logged_in(make_staff("nobody", None))


def submit(persona, *records) -> list[str]:
    response = persona.client.post("/api/v1/records", {"records": list(records)}, format="json")
    assert response.status_code == 201, response.content
    return [r["id"] for r in response.json()["results"]]


class Data:
    def __init__(self, record: Record, other: Record, dispute: Dispute, overdue: Dispute):
        self.record = record
        self.other = other
        self.dispute = dispute
        self.overdue = overdue


@pytest.fixture
def data(bank_a, bank_b) -> Data:
    """bank_a's record on borrower 1 (with the name and reference to keep masked) under an open
    dispute, bank_b's record on the same borrower under an overdue one, and an inquiry by bank_b."""
    [mine] = submit(bank_a, record(REFERENCE, 1, subject=subject(1, name=BORROWER_NAME)))
    [theirs] = submit(bank_b, record("LOAN-B-1", 1, product="credit_card"))
    granted = bank_b.client.post("/api/v1/consents", consent(1), format="json").json()
    body = {"subject": subject(1), "consent_id": granted["id"], "purpose": "credit_application"}
    assert bank_b.client.post("/api/v1/inquiries", body, format="json").status_code == 200
    dispute = dispute_open_by_staff(record=Record.objects.get(pk=mine), reason="not my loan", actor="staff:setup")
    overdue = dispute_open_by_staff(record=Record.objects.get(pk=theirs), reason="paid already", actor="staff:setup")
    Dispute.objects.filter(pk=overdue.pk).update(due_at=timezone.now() - timedelta(days=2))
    return Data(Record.objects.get(pk=mine), Record.objects.get(pk=theirs), dispute, overdue)
