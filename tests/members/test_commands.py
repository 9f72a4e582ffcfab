"""The member commands print exactly what the contract says, and each change is audited."""

from __future__ import annotations

import base64
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


def test_seed_demo_prints_working_keys_and_can_run_twice(tmp_path):
    env_file = tmp_path / "demo.env"
    first = run("seed_demo", "--env-file", str(env_file))
    keys = [line.split(": ", 1)[1] for line in first.splitlines() if line.startswith("  DEMO_")]
    assert len(keys) == 2
    for key in keys:
        assert bearer(key).get("/api/v1/me").status_code == 200
    assert Member.objects.count() == 6
    second = run("seed_demo", "--env-file", str(env_file))
    assert "already present" in second
    assert Member.objects.count() == 6


def test_seed_demo_says_when_its_data_was_made_under_another_token_scheme(tmp_path, settings, capsys):
    env_file = tmp_path / "demo.env"
    run("seed_demo", "--env-file", str(env_file))
    capsys.readouterr()
    run("seed_demo", "--env-file", str(env_file))
    assert "another subject token scheme" not in capsys.readouterr().err
    settings.EXCHANGE_OPRF_KEY = base64.b64encode(b"another oprf key, another token!").decode()
    run("seed_demo", "--env-file", str(env_file))
    assert "delete db.sqlite3" in capsys.readouterr().err


def test_seed_demo_makes_a_living_exchange(tmp_path):
    from datetime import timedelta

    from django.contrib.auth.models import User
    from django.utils import timezone

    from exchange.models import Dispute, Inquiry, RecordVersion

    env_file = tmp_path / "demo.env"
    printed = run("seed_demo", "--env-file", str(env_file), "--base-url", "http://127.0.0.1:8123")
    now = timezone.now()
    furnished = list(RecordVersion.objects.values_list("created_at", flat=True))
    assert min(furnished) < now - timedelta(days=600) and max(furnished) > now - timedelta(days=30)
    assert len({moment.date() for moment in furnished}) > 150  # a history, not one day
    asked = list(Inquiry.objects.values_list("created_at", flat=True))
    assert min(asked) < now - timedelta(days=60) and len({moment.date() for moment in asked}) > 30
    disputes = Dispute.objects.all()
    assert disputes.filter(status="open", due_at__gt=now).exists()
    assert disputes.filter(status="open", due_at__lte=now).exists()
    assert disputes.filter(status="resolved").exists()
    assert Member.objects.filter(status="suspended").count() == 1
    # The tour's file: the keys printed, the borrower and its consent, the address given.
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line[:1].isupper())
    assert values["API"] == "http://127.0.0.1:8123/api/v1"
    assert values["KEY_A"] in printed and values["KEY_B"] in printed
    assert values["CONSENT"] in printed
    assert json.loads(values["BORROWER"].strip("'"))["id_type"] == "CN_RIC"
    assert env_file.stat().st_mode & 0o077 == 0
    # Lost passwords: new ones on request, never otherwise.
    before = dict(User.objects.values_list("username", "password"))
    assert "(shown once)" not in run("seed_demo", "--env-file", str(env_file))
    again = run("seed_demo", "--env-file", str(env_file), "--reset-passwords")
    after = dict(User.objects.values_list("username", "password"))
    assert set(before) == set(after) == {"admin", "operator", "compliance", "auditor"}
    assert all(before[name] != after[name] for name in before)
    assert again.count("(shown once)") == 4


def test_seed_demo_works_on_a_blind_only_exchange(tmp_path, settings):
    settings.EXCHANGE_RAW_SUBJECTS = "refuse"
    env_file = tmp_path / "demo.env"
    run("seed_demo", "--env-file", str(env_file))
    values = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if line[:1].isupper())
    borrower = json.loads(values["BORROWER"].strip("'"))
    assert set(borrower) == {"id_type", "blind"} and values["CONSENT"]
