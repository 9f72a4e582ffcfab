"""The console's pages: masked personal data and its audited reveal, actions through the services,
the dispute queue, member activity, the dashboard, and the staff log-in lock-out."""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.test import Client

from audit.models import AuditEvent
from exchange.models import Dispute, Record
from members.models import ApiKey, Member
from tests.admin.conftest import BORROWER_NAME, PASSWORD, REFERENCE, make_staff

pytestmark = pytest.mark.django_db


def decryption_refused(*args, **kwargs):
    raise AssertionError("a list or object page decrypted a value")


# --- masked fields and the reveal -----------------------------------------------------------


def test_record_and_dispute_pages_never_decrypt(compliance, data):
    with mock.patch("core.crypto.decrypt", side_effect=decryption_refused):
        pages = [
            compliance.get("/admin/exchange/record/"),
            compliance.get(f"/admin/exchange/record/{data.record.pk}/change/"),
            compliance.get("/admin/exchange/dispute/"),
            compliance.get(f"/admin/exchange/dispute/{data.dispute.pk}/change/"),
        ]
    for page in pages:
        assert page.status_code == 200
        text = page.content.decode()
        assert BORROWER_NAME not in text and REFERENCE not in text and "not my loan" not in text
    assert "••••" in pages[1].content.decode()


def test_revealing_a_name_shows_it_once_and_audits_the_field_not_the_value(compliance, data):
    url = f"/admin/exchange/record/{data.record.pk}/reveal/name/"
    record_page = compliance.get(f"/admin/exchange/record/{data.record.pk}/change/").content.decode()
    assert url in record_page  # the button is there for a compliance officer
    confirm = compliance.get(url)
    assert confirm.status_code == 200 and BORROWER_NAME not in confirm.content.decode()
    assert not AuditEvent.objects.filter(action="admin.reveal").exists()

    revealed = compliance.post(url)
    assert revealed.status_code == 200
    assert BORROWER_NAME in revealed.content.decode()
    event = AuditEvent.objects.get(action="admin.reveal")
    assert (event.actor, event.outcome, event.object_type, event.object_id) == (
        "staff:carl",
        "ok",
        "record",
        str(data.record.pk),
    )
    assert event.details == {"field": "name"}
    assert event.subject_token == data.record.subject_token and event.member_code == "BANKA"
    for stored in AuditEvent.objects.all():
        assert BORROWER_NAME not in str(stored.details)


def test_a_dispute_reason_is_revealed_the_same_way(compliance, data):
    response = compliance.post(f"/admin/exchange/dispute/{data.dispute.pk}/reveal/reason/")
    assert "not my loan" in response.content.decode()
    event = AuditEvent.objects.get(action="admin.reveal")
    assert (event.object_type, event.details, event.member_code) == ("dispute", {"field": "reason"}, "BANKA")


def test_revealing_needs_the_permission_and_a_refusal_is_audited(operator, data):
    page = operator.get(f"/admin/exchange/record/{data.record.pk}/change/").content.decode()
    assert "/reveal/" not in page
    response = operator.post(f"/admin/exchange/record/{data.record.pk}/reveal/name/")
    assert response.status_code == 403
    assert BORROWER_NAME not in response.content.decode()
    event = AuditEvent.objects.get(action="admin.reveal")
    assert (event.actor, event.outcome, event.details) == (
        "staff:olivia",
        "denied",
        {"why": "permission", "field": "name"},
    )


def test_only_encrypted_fields_can_be_revealed(compliance, data):
    assert compliance.post(f"/admin/exchange/record/{data.record.pk}/reveal/subject_token/").status_code == 403


# --- changes through the services ----------------------------------------------------------


def test_an_operator_withdraws_a_record_through_the_service(operator, data):
    response = operator.post(f"/admin/exchange/record/{data.record.pk}/withdraw/", {"reason": "furnished in error"})
    assert response.status_code == 302
    record = Record.objects.get(pk=data.record.pk)
    assert record.withdrawn_at is not None and record.withdraw_reason == "furnished in error"
    event = AuditEvent.objects.get(action="record.withdraw")
    assert (event.actor, event.member_code, event.subject_token) == ("staff:olivia", "BANKA", record.subject_token)


def test_a_withdrawal_needs_a_reason(operator, data):
    response = operator.post(f"/admin/exchange/record/{data.record.pk}/withdraw/", {"reason": ""})
    assert response.status_code == 200
    assert Record.objects.get(pk=data.record.pk).withdrawn_at is None


def test_an_operator_opens_and_resolves_a_dispute(operator, data):
    response = operator.post(f"/admin/exchange/record/{data.other.pk}/open-dispute/", {"reason": "wrong amount"})
    assert response.status_code == 302
    dispute = Dispute.objects.exclude(pk=data.overdue.pk).get(record=data.other)
    assert dispute.filed_by_staff == "staff:olivia"

    refused = operator.post(f"/admin/exchange/dispute/{dispute.pk}/resolve/", {"outcome": "corrected"})
    assert "no new version" in refused.content.decode()
    assert Dispute.objects.get(pk=dispute.pk).status == "open"

    done = operator.post(f"/admin/exchange/dispute/{dispute.pk}/resolve/", {"outcome": "upheld", "note": "checked"})
    assert done.status_code == 302
    dispute.refresh_from_db()
    assert (dispute.status, dispute.outcome, dispute.note) == ("resolved", "upheld", "checked")
    event = AuditEvent.objects.get(action="dispute.resolve", outcome="ok")
    assert (event.actor, event.member_code) == ("staff:olivia", "BANKB")


def test_the_dispute_queue_puts_the_overdue_first_and_marks_them(operator, data):
    page = operator.get("/admin/exchange/dispute/").content.decode()
    assert page.index(f"/admin/exchange/record/{data.other.pk}/") < page.index(
        f"/admin/exchange/record/{data.record.pk}/"
    )
    assert page.count('class="dispute-overdue"') == 1


def test_nothing_is_added_or_edited_directly(operator, data):
    assert operator.get("/admin/exchange/record/add/").status_code == 403
    assert operator.get("/admin/exchange/dispute/add/").status_code == 403
    change = operator.post(f"/admin/exchange/record/{data.record.pk}/change/", {"status": "settled"})
    assert change.status_code == 403


# --- members ---------------------------------------------------------------------------------


def test_member_activity_is_shown_in_a_constant_number_of_queries(
    operator, data, bank_a, django_assert_max_num_queries, settings
):
    settings.EXCHANGE_RECIPROCITY_DAYS = 30
    ApiKey.objects.filter(member=bank_a.member).update(last_used_at="2026-01-02T03:04:05Z")
    with django_assert_max_num_queries(12):
        page = operator.get("/admin/members/member/").content.decode()
    assert "furnished within 30 days" in page
    for n in range(5):
        Member.objects.create(code=f"EXTRA{n}", name=f"Extra {n}")
    with django_assert_max_num_queries(12):
        page = operator.get("/admin/members/member/").content.decode()
    assert page.count("may not query") == 5
    member = Member.objects.get(code="BANKA")
    detail = operator.get(f"/admin/members/member/{member.pk}/change/").content.decode()
    assert "records furnished" in detail.lower() and "Jan. 2, 2026" in detail


def test_an_operator_revokes_a_key(operator, bank_a):
    key = ApiKey.objects.get(member=bank_a.member)
    operator.post("/admin/members/apikey/", {"action": "revoke", "_selected_action": [str(key.pk)]})
    assert ApiKey.objects.get(pk=key.pk).revoked_at is not None
    assert bank_a.client.get("/api/v1/me").status_code == 401


# --- dashboard -------------------------------------------------------------------------------


def test_the_dashboard_draws_its_charts_and_is_audited(auditor, data):
    response = auditor.get("/admin/dashboard/")
    page = response.content.decode()
    assert response.status_code == 200
    # Six charts, and one of distinct subjects per hour against its baseline for the one member that queried.
    assert page.count('class="chart"') == 7
    assert 'id="disputes-overdue">1<' in page
    token = data.record.subject_token
    assert token not in page  # the multi-lending table shows tokens truncated
    assert AuditEvent.objects.filter(action="dashboard.view", actor="staff:audrey", outcome="ok").exists()


def test_the_dashboard_lists_borrowers_asked_about_by_several_members(auditor, data, bank_a):
    from tests.factories import consent, subject

    granted = bank_a.client.post("/api/v1/consents", consent(1), format="json").json()
    body = {"subject": subject(1), "consent_id": granted["id"], "purpose": "credit_application"}
    assert bank_a.client.post("/api/v1/inquiries", body, format="json").status_code == 200
    page = auditor.get("/admin/dashboard/").content.decode()
    assert data.record.subject_token[:12] + "…" in page


def test_the_dashboard_is_staff_only(client, db):
    assert client.get("/admin/dashboard/").status_code == 302
    user = User.objects.create_user("plain", password=PASSWORD)
    client.force_login(user)
    assert client.get("/admin/dashboard/").status_code == 403
    assert AuditEvent.objects.filter(action="dashboard.view", outcome="denied").exists()


def test_the_index_links_to_the_dashboard_and_the_borrower_report(auditor):
    page = auditor.get("/admin/").content.decode()
    assert 'href="/admin/dashboard/"' in page and 'href="/admin/borrower-report/"' in page


# --- log-in lock-out -------------------------------------------------------------------------


def login(client: Client, username: str, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def test_five_failed_logins_lock_the_account_out_and_are_audited(db, bank_a):
    make_staff("olivia", None)
    client = Client()
    for _ in range(4):
        assert login(client, "olivia", "wrong password").status_code == 200
    assert login(client, "olivia", "wrong password").status_code == 429  # the fifth failure locks
    locked = login(client, "olivia", PASSWORD)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    failures = AuditEvent.objects.filter(action="staff.login_failed")
    assert failures.count() >= 5 and {e.actor for e in failures} == {"staff:olivia"}
    assert AuditEvent.objects.filter(action="staff.locked_out").exists()
    # The API is not behind the console's log-in and carries on.
    assert bank_a.client.get("/api/v1/me").status_code == 200


def test_a_failed_login_for_an_unknown_name_does_not_record_the_name(db):
    login(Client(), "110105198503140011", "whatever")
    event = AuditEvent.objects.get(action="staff.login_failed")
    assert event.actor == "anonymous" and "110105198503140011" not in str(event.details)


def test_a_successful_login_works_and_clears_the_count(db):
    make_staff("olivia", None)
    client = Client()
    for _ in range(3):
        login(client, "olivia", "wrong password")
    assert login(client, "olivia", PASSWORD).status_code == 302
    client.logout()
    for _ in range(3):
        login(client, "olivia", "wrong password")
    assert login(client, "olivia", PASSWORD).status_code == 302
