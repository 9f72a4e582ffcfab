"""The console's roles: what an operator, a compliance officer and an auditor can and cannot do."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from pyrage import x25519

from audit.models import AuditEvent
from exchange.models import Dispute, Record
from members.models import Member
from members.roles import AUDITOR, COMPLIANCE, OPERATOR, ROLES

pytestmark = pytest.mark.django_db

LISTS = [
    "/admin/members/member/",
    "/admin/members/apikey/",
    "/admin/exchange/record/",
    "/admin/exchange/consent/",
    "/admin/exchange/inquiry/",
    "/admin/exchange/dispute/",
]


def codes(role: str) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=role).permissions.all()}


def test_the_migration_creates_the_three_roles():
    assert set(Group.objects.values_list("name", flat=True)) >= set(ROLES)
    assert {"members.change_member", "members.change_apikey", "exchange.change_dispute"} <= codes(OPERATOR)
    assert {"audit.view_auditevent", "audit.export_auditevent", "exchange.reveal_personal_data"} <= codes(COMPLIANCE)
    assert "exchange.reveal_personal_data" not in codes(OPERATOR)


def test_the_auditor_holds_view_permissions_only():
    granted = codes(AUDITOR)
    assert {"members.view_member", "exchange.view_record", "exchange.view_dispute", "audit.view_auditevent"} <= granted
    assert all(code.split(".")[1].startswith("view_") for code in granted), granted


@pytest.mark.parametrize("url", [*LISTS, "/admin/audit/auditevent/", "/admin/dashboard/"])
def test_the_auditor_sees_every_list_without_add_buttons(auditor, data, url):
    response = auditor.get(url)
    assert response.status_code == 200
    page = response.content.decode()
    assert "addlink" not in page
    assert 'name="action"' not in page  # no bulk actions offered


def test_the_auditor_cannot_change_anything(auditor, data, bank_a):
    member = bank_a.member
    refused = [
        auditor.post("/admin/members/member/add/", {"code": "EVIL", "name": "Evil", "kind": "bank"}),
        auditor.post(f"/admin/members/member/{member.pk}/change/", {"name": "Renamed", "kind": "bank"}),
        auditor.post(f"/admin/exchange/record/{data.record.pk}/withdraw/", {"reason": "no"}),
        auditor.post(f"/admin/exchange/record/{data.record.pk}/open-dispute/", {"reason": "no"}),
        auditor.post(f"/admin/exchange/dispute/{data.dispute.pk}/resolve/", {"outcome": "upheld"}),
        auditor.post(f"/admin/exchange/record/{data.record.pk}/reveal/name/"),
        auditor.post(f"/admin/exchange/record/{data.record.pk}/delete/", {"post": "yes"}),
    ]
    assert [r.status_code for r in refused] == [403] * len(refused)
    # An action posted anyway (the form does not offer it) does nothing.
    auditor.post("/admin/members/member/", {"action": "suspend", "_selected_action": [str(member.pk)]})
    assert Member.objects.get(pk=member.pk).status == "active"
    assert Member.objects.get(pk=member.pk).name == "Bank A"
    assert not Member.objects.filter(code="EVIL").exists()
    assert Record.objects.get(pk=data.record.pk).withdrawn_at is None
    assert Dispute.objects.get(pk=data.dispute.pk).status == "open"
    denied = AuditEvent.objects.filter(actor="staff:audrey", outcome="denied").values_list("action", flat=True)
    assert {"record.withdraw", "dispute.open", "dispute.resolve", "admin.reveal"} <= set(denied)


def test_an_operator_suspends_and_reactivates_a_member(operator, bank_a):
    selected = {"_selected_action": [str(bank_a.member.pk)]}
    operator.post("/admin/members/member/", {"action": "suspend", **selected})
    assert Member.objects.get(pk=bank_a.member.pk).status == "suspended"
    operator.post("/admin/members/member/", {"action": "reactivate", **selected})
    assert Member.objects.get(pk=bank_a.member.pk).status == "active"
    events = AuditEvent.objects.filter(action="member.set_status", actor="staff:olivia")
    assert [e.details["to"] for e in events.order_by("id")] == ["suspended", "active"]


def test_an_operator_onboards_a_member_and_sees_its_key_once_sealed(operator):
    # The console creates the member without a key; its recipient comes only from the command.
    response = operator.post(
        "/admin/members/member/add/", {"code": "NEWB", "name": "New B", "kind": "bank"}, follow=True
    )
    assert response.status_code == 200 and "BEGIN AGE" not in response.content.decode()
    assert AuditEvent.objects.filter(action="member.create", actor="staff:olivia").exists()
    member = Member.objects.get(code="NEWB")
    call_command("set_key_recipient", "NEWB", str(x25519.Identity.generate().to_public()), stdout=StringIO())
    response = operator.post("/admin/members/member/", {"action": "issue_key", "_selected_action": [str(member.pk)]})
    assert response.status_code == 200
    assert "shown only now" in response.content.decode()
    assert "BEGIN AGE ENCRYPTED FILE" in response.content.decode()
    assert AuditEvent.objects.filter(action="api_key.issue", actor="staff:olivia").exists()


def test_a_compliance_officer_cannot_suspend_or_resolve(compliance, data, bank_a):
    compliance.post("/admin/members/member/", {"action": "suspend", "_selected_action": [str(bank_a.member.pk)]})
    assert Member.objects.get(pk=bank_a.member.pk).status == "active"
    assert (
        compliance.post(f"/admin/exchange/dispute/{data.dispute.pk}/resolve/", {"outcome": "upheld"}).status_code == 403
    )


def test_the_audit_log_is_for_compliance_and_auditors_not_operators(operator, compliance, auditor, data):
    assert operator.get("/admin/audit/auditevent/").status_code == 403
    assert compliance.get("/admin/audit/auditevent/").status_code == 200
    assert compliance.get("/admin/audit/auditevent/export/").status_code == 200
    assert auditor.get("/admin/audit/auditevent/export/").status_code == 403


def test_the_borrower_report_is_open_to_every_role(operator, compliance, auditor, no_role, data):
    form = {"id_type": "CN_RIC", "id_number": "x", "country": ""}
    for client in (operator, compliance, auditor):
        assert client.get("/admin/borrower-report/").status_code == 200
    assert no_role.post("/admin/borrower-report/", form).status_code == 403


def test_staff_without_a_role_see_nothing(no_role, data):
    for url in [*LISTS, "/admin/dashboard/"]:
        assert no_role.get(url).status_code == 403, url
