"""API-key authentication, scopes, suspension and the problem+json shape of each refusal."""

import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from audit.models import AuditEvent
from members import limits
from members.keys import split_key
from members.models import ApiKey, Scope
from members.services import api_key_issue, api_key_revoke, member_set_status
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert PROBLEM_KEYS <= body.keys()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].startswith("https://")
    return body


def test_a_valid_key_answers_me(bank_a):
    response = bank_a.client.get("/api/v1/me")
    assert response.status_code == 200
    body = response.json()
    key = ApiKey.objects.get(member=bank_a.member)
    assert body == {
        "member": "BANKA",
        "name": "Bank A",
        "kind": "bank",
        "status": "active",
        "scopes": ["submit", "query"],
        "key_prefix": key.prefix,
        "key_expires_at": None,
    }
    assert response["X-Request-ID"]


def test_no_key_gets_401(outsider):
    body = assert_problem(outsider.get("/api/v1/me"), 401, "authentication_failed")
    assert "Bearer" in body["detail"]


@pytest.mark.parametrize(
    "header",
    ["Bearer cx_000000000000_" + "A" * 43, "Bearer not-a-key", "Basic dXNlcjpwYXNz", "Bearer "],
)
def test_unknown_or_malformed_keys_get_401(db, header):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/me")
    assert_problem(response, 401, "authentication_failed")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_key_with_the_right_prefix_but_wrong_secret_gets_401(bank_a):
    prefix = split_key(bank_a.key)
    forged = bearer(prefix + "_" + "B" * 43)
    assert_problem(forged.get("/api/v1/me"), 401, "authentication_failed")


def test_an_expired_key_gets_401(bank_a):
    key, full = api_key_issue(member=bank_a.member, scopes=["query"], expires_days=1, actor="test")
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    body = assert_problem(bearer(full).get("/api/v1/me"), 401, "authentication_failed")
    assert "expired" in body["detail"]


def test_a_revoked_key_stops_at_once(bank_a):
    assert bank_a.client.get("/api/v1/me").status_code == 200
    api_key_revoke(key=ApiKey.objects.get(member=bank_a.member), actor="test")
    body = assert_problem(bank_a.client.get("/api/v1/me"), 401, "authentication_failed")
    assert "revoked" in body["detail"]


def test_refused_authentication_is_audited_without_the_key(bank_a, monkeypatch):
    prefix = split_key(bank_a.key)
    bearer(prefix + "_" + "B" * 43).get("/api/v1/me")
    # Aggregated per address and minute (members/limits.py): one event once the minute is over.
    monkeypatch.setattr(limits, "clock", lambda: time.time() + 120)
    assert limits.flood_events_write() == 1
    event = AuditEvent.objects.filter(action="auth.authenticate").latest("id")
    assert event.outcome == "denied"
    assert event.details == {
        "why": "authentication_failed",
        "first_reason": "unknown",
        "prefix": prefix,
        "count": 1,
        "minute": event.details["minute"],
    }
    assert event.actor == "client:127.0.0.1"
    assert bank_a.key[len(split_key(bank_a.key)) + 1 :] not in str(event.__dict__)


def test_a_suspended_member_gets_403(bank_a):
    member_set_status(member=bank_a.member, status="suspended", actor="test")
    assert_problem(bank_a.client.get("/api/v1/me"), 403, "member_suspended")
    event = AuditEvent.objects.filter(action="api.access").latest("id")
    assert (event.outcome, event.details["why"], event.member_code) == ("denied", "member_suspended", "BANKA")
    member_set_status(member=bank_a.member, status="active", actor="test")
    assert bank_a.client.get("/api/v1/me").status_code == 200


def test_a_key_without_the_scope_gets_403(bank_a):
    """`me` accepts any scope; a scoped endpoint refuses a key that lacks its scope."""
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    class SubmitOnly(APIView):
        required_scope = Scope.SUBMIT

        def get(self, request):
            return Response({"ok": True})

    _key, query_only = api_key_issue(member=bank_a.member, scopes=["query"], actor="test")
    _key, submit_only = api_key_issue(member=bank_a.member, scopes=["submit"], actor="test")
    factory = APIRequestFactory()
    refused = SubmitOnly.as_view()(factory.get("/x", HTTP_AUTHORIZATION=f"Bearer {query_only}"))
    refused.render()
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/problem+json"
    assert refused.data["code"] == "scope_required"
    allowed = SubmitOnly.as_view()(factory.get("/x", HTTP_AUTHORIZATION=f"Bearer {submit_only}"))
    assert allowed.status_code == 200
    assert bearer(query_only).get("/api/v1/me").json()["scopes"] == ["query"]


def test_the_key_secret_appears_nowhere_in_the_database(bank_a):
    secret = bank_a.key[len(split_key(bank_a.key)) + 1 :]
    bank_a.client.get("/api/v1/me")
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        for table in tables:
            cursor.execute(f'SELECT * FROM "{table}"')
            for row in cursor.fetchall():
                assert secret not in repr(row), table
                assert bank_a.key not in repr(row), table


def test_last_used_time_is_recorded(bank_a):
    assert ApiKey.objects.get(member=bank_a.member).last_used_at is None
    bank_a.client.get("/api/v1/me")
    assert ApiKey.objects.get(member=bank_a.member).last_used_at is not None
