"""Shared fixtures: member personas with keys, API clients, and test-only database helpers."""

from __future__ import annotations

import pytest
from django.db import connection
from hypothesis import settings as hypothesis_settings
from rest_framework.test import APIClient

from audit import triggers
from members.models import Member, Scope
from members.services import api_key_issue, member_create

# No time limit per generated example: tests check behaviour, never speed (benchmarks do that),
# and a shared CI machine can be slow at any moment.
hypothesis_settings.register_profile("exchange", deadline=None)
hypothesis_settings.load_profile("exchange")


def pytest_collection_modifyitems(config, items):
    """`@pytest.mark.postgres_only` skips the test on any other database (pytest.ini)."""
    if connection.vendor == "postgresql":
        return
    skip = pytest.mark.skip(reason="PostgreSQL only")
    for item in items:
        if item.get_closest_marker("postgres_only"):
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _allow_flush_of_audit_table():
    """Transactional tests end with a flush (TRUNCATE/DELETE of every table), which the
    append-only triggers refuse: for that flush alone, lift the triggers and put them back."""
    ops_class = type(connection.ops)
    original = ops_class.sql_flush

    def sql_flush(self, style, tables, **kwargs):
        sql = original(self, style, tables, **kwargs)
        if triggers.TABLE not in tables:
            return sql
        vendor = self.connection.vendor
        return triggers.statements(vendor, install=False) + list(sql) + triggers.statements(vendor, install=True)

    ops_class.sql_flush = sql_flush
    yield
    ops_class.sql_flush = original


@pytest.fixture(autouse=True)
def _submissions_in_tmp(settings, tmp_path_factory):
    """Uploaded files (raw IDs, even fake ones) go to a temporary folder, never the checkout's var/."""
    settings.EXCHANGE_SUBMISSIONS_DIR = tmp_path_factory.mktemp("submissions")


def bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


class Persona:
    def __init__(self, member: Member, key: str):
        self.member = member
        self.key = key
        self.client = bearer(key)

    @property
    def code(self) -> str:
        return self.member.code


def make_persona(code: str, name: str, scopes: list[str] | None = None) -> Persona:
    member, _api_key, full = member_create(code=code, name=name, kind="bank", actor="test")
    if scopes is not None and set(scopes) != {Scope.SUBMIT, Scope.QUERY}:
        _key, full = api_key_issue(member=member, scopes=scopes, actor="test")
    return Persona(member, full)


@pytest.fixture
def bank_a(db) -> Persona:
    """The owner of the data under test."""
    return make_persona("BANKA", "Bank A")


@pytest.fixture
def bank_b(db) -> Persona:
    """A peer member, who must never see bank_a's data."""
    return make_persona("BANKB", "Bank B")


@pytest.fixture
def outsider() -> APIClient:
    """No key at all."""
    return APIClient()


@pytest.fixture
def anon() -> APIClient:
    return APIClient()


def is_postgres() -> bool:
    return connection.vendor == "postgresql"
