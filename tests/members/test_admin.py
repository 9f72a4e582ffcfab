"""The admin console's member pages go through the audited services."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from audit.models import AuditEvent
from members.models import ApiKey, Member

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
