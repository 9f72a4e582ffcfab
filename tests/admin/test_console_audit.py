"""Every console page that shows exchange or audit data leaves an audit event, and so does every
staff log-in. A search is recorded only when it is not personal data: a subject token or a member
code is; anything typed into a token search box that is not a token (a raw ID, say) is withheld."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from audit.models import AuditEvent, Checkpoint
from audit.sealing import seal_pending
from exchange.models import Consent, Inquiry
from members.models import ApiKey, Member
from tests.admin.conftest import PASSWORD, make_staff
from tests.factories import subject


def _pages(data) -> list[tuple[str, str, object]]:
    """(url, action, object) for each list and object page of exchange and audit data."""
    seal_pending()
    event = AuditEvent.objects.order_by("id").first()
    objects = {
        "exchange_record": data.record,
        "exchange_consent": Consent.objects.first(),
        "exchange_inquiry": Inquiry.objects.first(),
        "exchange_dispute": data.dispute,
        "members_member": Member.objects.get(code="BANKA"),
        "members_apikey": ApiKey.objects.first(),
        "audit_auditevent": event,
        "audit_checkpoint": Checkpoint.objects.first(),
    }
    pages = []
    for name, obj in objects.items():
        assert obj is not None, name
        list_action = "audit.browse" if name == "audit_auditevent" else "console.list"
        pages.append((reverse(f"admin:{name}_changelist"), list_action, None))
        pages.append((reverse(f"admin:{name}_change", args=[obj.pk]), "console.view", obj))
    return pages


def test_every_list_and_object_page_is_audited(data):
    superuser = make_staff("root", None)
    superuser.is_superuser = True
    superuser.save()
    client = Client()
    client.force_login(superuser)
    for url, action, obj in _pages(data):
        before = AuditEvent.objects.count()
        assert client.get(url).status_code == 200, url
        (event,) = AuditEvent.objects.filter(id__gt=AuditEvent.objects.order_by("id")[before - 1].id)
        assert (event.action, event.actor, event.outcome) == (action, "staff:root", "ok"), url
        if obj is not None:
            assert event.object_id == str(obj.pk), url
            assert event.object_type == obj._meta.model_name
    record_page = AuditEvent.objects.filter(action="console.view", object_type="record").get()
    assert (record_page.member_code, record_page.subject_token) == ("BANKA", data.record.subject_token)


def test_a_search_is_recorded_only_when_it_is_not_personal_data(data, compliance):
    token = data.record.subject_token
    assert (
        compliance.get(reverse("admin:exchange_record_changelist"), {"q": token, "status": "delinquent"}).status_code
        == 200
    )
    raw_id = subject(1)["id_number"]
    assert compliance.get(reverse("admin:exchange_inquiry_changelist"), {"q": raw_id}).status_code == 200
    by_token, by_raw = AuditEvent.objects.filter(action="console.list").order_by("id")
    assert by_token.details == {"search": token, "filters": {"status": "delinquent"}}
    assert by_raw.details == {"search_withheld": True}
    assert not AuditEvent.objects.filter(details__icontains=raw_id).exists()
    assert raw_id not in str(list(AuditEvent.objects.values_list("details", flat=True)))


@pytest.mark.parametrize("page", ["admin:members_member_changelist", "admin:members_apikey_changelist"])
def test_member_and_key_searches_are_kept(data, operator, page):
    assert operator.get(reverse(page), {"q": "BANKA"}).status_code == 200
    assert AuditEvent.objects.filter(action="console.list").latest("id").details == {"search": "BANKA"}


def test_a_refused_page_is_audited_as_denied(data, no_role):
    assert no_role.get(reverse("admin:exchange_record_changelist")).status_code == 403
    assert no_role.get(reverse("admin:exchange_record_change", args=[data.record.pk])).status_code == 403
    refused = AuditEvent.objects.filter(action__in=["console.list", "console.view"]).order_by("id")
    assert [(e.action, e.outcome, e.details["why"], e.actor) for e in refused] == [
        ("console.list", "denied", "permission", "staff:nobody"),
        ("console.view", "denied", "permission", "staff:nobody"),
    ]
    assert refused[1].object_id == str(data.record.pk)


def test_a_staff_login_is_audited(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    make_staff("olga", None)
    client = Client()
    response = client.post(reverse("admin:login"), {"username": "olga", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302
    event = AuditEvent.objects.get(action="staff.login")
    assert (event.actor, event.outcome, event.object_type) == ("staff:olga", "ok", "user")


def test_the_member_page_shows_its_limits_read_only(data, operator):
    call_command("set_member_limits", "BANKA", "--inquiries-per-day", "7", stdout=StringIO())
    member = Member.objects.get(code="BANKA")
    page = operator.get(reverse("admin:members_member_change", args=[member.pk])).content.decode()
    assert "inquiries per day: 7" in page
    assert 'name="inquiries_per_day"' not in page and 'name="rate_limit"' not in page
