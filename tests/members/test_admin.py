"""The admin console's member pages go through the audited services."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from members.models import ApiKey, Member
from members.services import api_key_issue

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.invalid", "a-long-password-1")
    client.force_login(user)
    return client


def test_onboarding_a_member_is_audited_and_without_recipient_gives_no_key(staff_client):
    # Keys come out of the console only sealed to a recipient (tests/members/test_custody.py).
    response = staff_client.post(
        "/admin/members/member/add/", {"code": "NEWBANK", "name": "New Bank", "kind": "bank"}, follow=True
    )
    assert response.status_code == 200
    member = Member.objects.get(code="NEWBANK")
    assert not ApiKey.objects.filter(member=member).exists()
    event = AuditEvent.objects.get(action="member.create")
    assert event.actor == "staff:root"


def test_suspending_from_the_admin_is_audited(staff_client, bank_a):
    staff_client.post(
        "/admin/members/member/", {"action": "suspend", "_selected_action": [str(bank_a.member.pk)]}, follow=True
    )
    assert Member.objects.get(pk=bank_a.member.pk).status == "suspended"
    assert AuditEvent.objects.filter(action="member.set_status", actor="staff:root").exists()


def test_key_pages_never_show_the_hash_and_keys_cannot_be_added_by_hand(staff_client, bank_a):
    key = ApiKey.objects.get(member=bank_a.member)
    page = staff_client.get(f"/admin/members/apikey/{key.pk}/change/")
    assert page.status_code == 200
    assert key.key_hash not in page.content.decode()
    assert staff_client.get("/admin/members/apikey/add/").status_code == 403


def _revoke_in_console(staff_client, keys: list[ApiKey]) -> int:
    """Revoke the keys with the console's action; the number of queries it took."""
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.post(
            "/admin/members/apikey/", {"action": "revoke", "_selected_action": [str(k.pk) for k in keys]}
        )
    assert response.status_code == 302
    return len(queries)


def test_revoking_keys_in_the_console_takes_the_same_queries_for_one_key_or_many(staff_client, bank_a, bank_b):
    def issued(member, n: int) -> list[ApiKey]:
        return [api_key_issue(member=member, scopes=["query"], actor="test")[0] for _ in range(n)]

    one = _revoke_in_console(staff_client, issued(bank_a.member, 1))
    many_keys = issued(bank_a.member, 3) + issued(bank_b.member, 3)
    many = _revoke_in_console(staff_client, many_keys)
    assert many == one  # not one query (or more) per key
    assert all(key.revoked_at is not None for key in ApiKey.objects.filter(pk__in=[k.pk for k in many_keys]))
    events = AuditEvent.objects.filter(action="api_key.revoke", actor="staff:root").order_by("id")
    assert len(events) == 7  # still one event per key, naming it
    assert {(e.member_code, e.object_id, e.details["prefix"]) for e in events[1:]} == {
        (k.member.code, str(k.pk), k.prefix) for k in many_keys
    }


def test_revoking_a_revoked_key_keeps_its_time(staff_client, bank_a):
    key = api_key_issue(member=bank_a.member, scopes=["query"], actor="test")[0]
    _revoke_in_console(staff_client, [key])
    first = ApiKey.objects.get(pk=key.pk).revoked_at
    _revoke_in_console(staff_client, [key])
    assert ApiKey.objects.get(pk=key.pk).revoked_at == first
