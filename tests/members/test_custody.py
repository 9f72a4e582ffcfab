"""Key custody: a member with an age recipient gets its keys only as age ciphertext, from the
commands and the console alike; the console never shows a plaintext key nor puts one in a cookie."""

from __future__ import annotations

import json
import re
from io import StringIO

import pyrage
import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from pyrage import x25519

from audit.models import AuditEvent
from members.models import ApiKey, Member
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

PLAINTEXT_KEY = re.compile(r"cx_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


def run(*args) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def identity() -> x25519.Identity:
    """The member's own age identity: only the test (the member) holds it."""
    return x25519.Identity.generate()


def opened(sealed: str, identity: x25519.Identity) -> str:
    assert sealed.startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    return pyrage.decrypt(sealed.encode(), [identity]).decode()


def test_create_member_with_a_recipient_prints_only_the_sealed_key_which_authenticates(identity):
    out = run("create_member", "LENDER1", "--name", "Lender One", "--key-recipient", str(identity.to_public()))
    printed = json.loads(out)
    assert set(printed) == {"member", "prefix", "api_key_age"}
    assert not PLAINTEXT_KEY.search(out)
    key = opened(printed["api_key_age"], identity)
    assert key.startswith(printed["prefix"] + "_")
    assert bearer(key).get("/api/v1/me").json()["member"] == "LENDER1"


def test_another_identity_cannot_open_the_key(identity):
    printed = json.loads(run("create_member", "LENDER1", "--name", "L", "--key-recipient", str(identity.to_public())))
    with pytest.raises(pyrage.DecryptError):
        pyrage.decrypt(printed["api_key_age"].encode(), [x25519.Identity.generate()])


def test_set_key_recipient_then_issue_api_key_is_sealed_and_audited(bank_a, identity):
    recipient = str(identity.to_public())
    printed = json.loads(run("set_key_recipient", bank_a.code, recipient))
    assert printed == {"member": bank_a.code, "key_recipient": recipient}
    event = AuditEvent.objects.get(action="member.set_key_recipient")
    assert (event.member_code, event.details["to"]) == (bank_a.code, recipient)
    out = run("issue_api_key", bank_a.code, "--scopes", "query")
    printed = json.loads(out)
    assert set(printed) == {"prefix", "api_key_age"} and not PLAINTEXT_KEY.search(out)
    me = bearer(opened(printed["api_key_age"], identity)).get("/api/v1/me").json()
    assert (me["member"], me["scopes"], me["key_prefix"]) == (bank_a.code, ["query"], printed["prefix"])


@pytest.mark.parametrize(
    "bad", ["", "age1", "age1qqqq", "ssh-ed25519 AAAA", "AGE-SECRET-KEY-1QQQQ", "age1" + "q" * 200]
)
def test_a_bad_recipient_is_refused(bank_a, bad):
    with pytest.raises(CommandError):
        run("set_key_recipient", bank_a.code, bad)
    with pytest.raises(CommandError):
        run("create_member", "LENDER2", "--name", "L", "--key-recipient", bad or " ")
    assert not Member.objects.filter(code="LENDER2").exists()
    assert Member.objects.get(pk=bank_a.member.pk).key_recipient == ""


def test_an_identity_given_as_recipient_is_refused(bank_a, identity):
    with pytest.raises(CommandError):
        run("set_key_recipient", bank_a.code, str(identity))  # the secret half: never accepted


# --- the console ---------------------------------------------------------------------------------


@pytest.fixture
def operator(client):
    user = get_user_model().objects.create_superuser("op", "op@example.invalid", "a-long-password-1")
    client.force_login(user)
    return client


def no_plaintext_key(response) -> str:
    body = response.content.decode()
    assert not PLAINTEXT_KEY.search(body)
    for cookie in response.client.cookies.values():
        assert not PLAINTEXT_KEY.search(cookie.value)
        assert "BEGIN AGE" not in cookie.value
    return body


def test_the_console_issues_a_key_only_sealed_to_the_members_recipient(operator, bank_a, identity):
    run("set_key_recipient", bank_a.code, str(identity.to_public()))
    response = operator.post(
        "/admin/members/member/", {"action": "issue_key", "_selected_action": [str(bank_a.member.pk)]}, follow=True
    )
    body = no_plaintext_key(response)
    assert "no-store" in response["Cache-Control"]
    sealed = re.search(r"-----BEGIN AGE ENCRYPTED FILE-----.*?-----END AGE ENCRYPTED FILE-----", body, re.S).group()
    key = opened(sealed, identity)
    assert bearer(key).get("/api/v1/me").json()["member"] == bank_a.code
    assert AuditEvent.objects.filter(action="api_key.issue", actor="staff:op").count() == 1


def test_a_member_without_recipient_cannot_get_a_key_from_the_console(operator, bank_a, bank_b):
    """The attack of issue #18: an operator issued another member's key and saw it in full."""
    before = ApiKey.objects.count()
    response = operator.post(
        "/admin/members/member/",
        {"action": "issue_key", "_selected_action": [str(bank_a.member.pk), str(bank_b.member.pk)]},
        follow=True,
    )
    body = no_plaintext_key(response)
    assert ApiKey.objects.count() == before
    assert "No key issued" in body
    assert not AuditEvent.objects.filter(action="api_key.issue", actor="staff:op").exists()


def test_creating_a_member_in_the_console_without_recipient_creates_no_key(operator):
    response = operator.post(
        "/admin/members/member/add/", {"code": "NEWBANK", "name": "New Bank", "kind": "bank"}, follow=True
    )
    no_plaintext_key(response)
    member = Member.objects.get(code="NEWBANK")
    assert not ApiKey.objects.filter(member=member).exists()
    assert "without an API key" in response.content.decode()
    assert AuditEvent.objects.filter(action="member.create", actor="staff:op").exists()


def test_the_console_add_form_has_no_recipient_field(operator):
    body = operator.get("/admin/members/member/add/").content.decode()
    assert 'name="code"' in body and 'name="key_recipient"' not in body


def test_a_recipient_posted_to_the_console_add_form_is_ignored_and_no_key_issued(operator, identity):
    """One staff account alone must not get a member's key: a recipient of its own on the add
    form would have sealed the new member's first key to it."""
    response = operator.post(
        "/admin/members/member/add/",
        {"code": "NEWBANK", "name": "New Bank", "kind": "bank", "key_recipient": str(identity.to_public())},
        follow=True,
    )
    body = no_plaintext_key(response)
    assert "BEGIN AGE" not in body and "without an API key" in body
    member = Member.objects.get(code="NEWBANK")
    assert member.key_recipient == ""
    assert not ApiKey.objects.filter(member=member).exists()
    assert not AuditEvent.objects.filter(action="api_key.issue").exists()
    (created,) = AuditEvent.objects.filter(action="member.create", actor="staff:op")
    assert created.details["key_recipient"] is None
    # Nor can the console issue it one now: the member has no recipient.
    operator.post("/admin/members/member/", {"action": "issue_key", "_selected_action": [str(member.pk)]})
    assert not ApiKey.objects.filter(member=member).exists()


def test_the_console_never_lets_staff_set_or_change_a_recipient(operator, bank_a, identity):
    # A bad recipient on the add form is ignored like any other: the member is created without one.
    response = operator.post(
        "/admin/members/member/add/", {"code": "NEWBANK", "name": "N", "kind": "bank", "key_recipient": "age1nope"}
    )
    assert response.status_code == 302 and Member.objects.get(code="NEWBANK").key_recipient == ""
    # Staff who could set a recipient of their own on an existing member could read its next key.
    mallory = str(x25519.Identity.generate().to_public())
    operator.post(
        f"/admin/members/member/{bank_a.member.pk}/change/",
        {"name": "Bank A", "kind": "bank", "key_recipient": mallory},
    )
    assert Member.objects.get(pk=bank_a.member.pk).key_recipient == ""
    # The recipient set by the command is shown on the change page, read-only.
    recipient = str(identity.to_public())
    run("set_key_recipient", bank_a.code, recipient)
    page = operator.get(f"/admin/members/member/{bank_a.member.pk}/change/").content.decode()
    assert recipient in page and 'name="key_recipient"' not in page


def test_messages_are_kept_server_side(settings):
    assert settings.MESSAGE_STORAGE == "django.contrib.messages.storage.session.SessionStorage"
