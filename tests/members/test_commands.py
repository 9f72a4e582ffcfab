"""The member commands print exactly what the contract says, and each change is audited."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditEvent
from members.models import ApiKey, Member
from tests.conftest import bearer

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_member_prints_the_member_and_a_working_key_of_both_scopes():
    printed = json.loads(run("create_member", "LENDER1", "--name", "Lender One", "--kind", "fintech"))
    assert set(printed) == {"member", "api_key"}
    assert printed["member"] == "LENDER1"
    me = bearer(printed["api_key"]).get("/api/v1/me").json()
    assert (me["member"], me["kind"], me["scopes"]) == ("LENDER1", "fintech", ["submit", "query"])
    assert AuditEvent.objects.filter(action="member.create", member_code="LENDER1").count() == 1
    with pytest.raises(CommandError, match="already exists"):
        run("create_member", "LENDER1", "--name", "Again")


def test_issue_api_key_with_scopes_and_expiry():
    run("create_member", "LENDER1", "--name", "Lender One")
    printed = json.loads(run("issue_api_key", "LENDER1", "--scopes", "query", "--expires-days", "30"))
    assert set(printed) == {"api_key", "prefix"}
    assert printed["api_key"].startswith(printed["prefix"] + "_")
    me = bearer(printed["api_key"]).get("/api/v1/me").json()
    assert me["scopes"] == ["query"] and me["key_expires_at"] is not None
    with pytest.raises(CommandError):
        run("issue_api_key", "LENDER1", "--scopes", "admin")
    with pytest.raises(CommandError, match="no member"):
        run("issue_api_key", "NOBODY")


def test_revoke_api_key_stops_it_at_once():
    key = json.loads(run("create_member", "LENDER1", "--name", "Lender One"))["api_key"]
    prefix = ApiKey.objects.get().prefix
    run("revoke_api_key", prefix)
    assert bearer(key).get("/api/v1/me").status_code == 401
    assert AuditEvent.objects.filter(action="api_key.revoke").count() == 1


def test_set_member_status_suspends_and_reactivates():
    key = json.loads(run("create_member", "LENDER1", "--name", "Lender One"))["api_key"]
    run("set_member_status", "LENDER1", "suspended")
    assert Member.objects.get().status == "suspended"
    assert bearer(key).get("/api/v1/me").json()["code"] == "member_suspended"
    run("set_member_status", "LENDER1", "active")
    assert bearer(key).get("/api/v1/me").status_code == 200
    events = AuditEvent.objects.filter(action="member.set_status").order_by("id")
    assert [e.details for e in events] == [{"from": "active", "to": "suspended"}, {"from": "suspended", "to": "active"}]


def test_seed_demo_prints_working_keys_and_can_run_twice():
    first = run("seed_demo")
    keys = [line.split(": ", 1)[1] for line in first.splitlines() if line.startswith("  DEMO_")]
    assert len(keys) == 2
    for key in keys:
        assert bearer(key).get("/api/v1/me").status_code == 200
    assert Member.objects.count() == 5
    second = run("seed_demo")
    assert "already present" in second
    assert Member.objects.count() == 5
