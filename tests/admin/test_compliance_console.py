"""The console's compliance pages: evidence outcomes per member, spot checks opened by sample or by
name (compliance role only, audited), the alerts with links to the member's window, closing an
alert, and the dashboard's open alerts and baseline charts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from audit.services import audit_bulk_write
from exchange.alerts import alerts_evaluate
from exchange.evidence import evidence_requests_open
from exchange.models import ComplianceAlert, EvidenceRequest, Inquiry

pytestmark = pytest.mark.django_db


@pytest.fixture
def alert(bank_a) -> ComplianceAlert:
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    audit_bulk_write(
        [
            AuditEvent(
                occurred_at=hour,
                actor="member:x",
                member_code=bank_a.code,
                action="inquiry.create",
                outcome="denied",
                details={"why": "quota_exceeded", "count": 12},
            )
        ]
    )
    [found], _new = alerts_evaluate(actor="cli:test")
    return found


def test_the_compliance_page_shows_outcomes_per_member_and_is_audited(compliance, data, bank_b):
    [inquiry] = Inquiry.objects.filter(member=bank_b.member)
    [request] = evidence_requests_open(member=bank_b.member, actor="staff:carl", inquiry_ids=[inquiry.pk])
    EvidenceRequest.objects.filter(pk=request.pk).update(status="overdue", overdue_at=timezone.now())
    response = compliance.get(reverse("console_compliance"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "evidence-outcomes" in page and bank_b.code in page
    assert page.count(">100%<") == 1  # its overdue rate
    assert AuditEvent.objects.filter(action="compliance.view", actor="staff:carl").exists()


def test_compliance_staff_open_a_sample_of_a_members_inquiries(compliance, data, bank_b):
    response = compliance.post(reverse("console_compliance"), {"member": bank_b.code, "sample": "3"})
    assert response.status_code == 302
    [request] = EvidenceRequest.objects.all()
    assert request.member == bank_b.member and request.opened_by == "staff:carl"
    assert AuditEvent.objects.filter(action="evidence_request.open", actor="staff:carl").count() == 1


def test_named_inquiries_of_another_member_are_refused_on_the_form(compliance, data, bank_a, bank_b):
    [inquiry] = Inquiry.objects.filter(member=bank_b.member)
    response = compliance.post(reverse("console_compliance"), {"member": bank_a.code, "inquiries": str(inquiry.pk)})
    assert response.status_code == 200 and "is not one of" in response.content.decode()
    assert not EvidenceRequest.objects.exists()


def test_auditors_see_the_page_but_cannot_open_requests(auditor, data, bank_b):
    assert auditor.get(reverse("console_compliance")).status_code == 200
    response = auditor.post(reverse("console_compliance"), {"member": bank_b.code, "sample": "1"})
    assert response.status_code == 403 and not EvidenceRequest.objects.exists()
    assert AuditEvent.objects.filter(action="evidence_request.open", outcome="denied").exists()


def test_operators_do_not_see_the_compliance_page(operator, data):
    assert operator.get(reverse("console_compliance")).status_code == 403
    assert AuditEvent.objects.filter(action="compliance.view", outcome="denied").exists()


def test_an_alert_links_to_the_members_audit_events_and_inquiries_of_its_window(compliance, alert, bank_a):
    response = compliance.get(reverse("admin:exchange_compliancealert_change", args=[alert.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    assert f"member_code__exact={bank_a.code}" in page and "occurred_at__gte=" in page
    assert f"member__id__exact={bank_a.member.pk}" in page and "created_at__gte=" in page
    assert AuditEvent.objects.filter(action="compliance_alert.view", actor="staff:carl").exists()
    events_link = page.split('href="')[1:]
    audit_url = next(link.split('"')[0] for link in events_link if link.startswith("/admin/audit/auditevent/?"))
    listed = compliance.get(audit_url.replace("&amp;", "&"))
    assert listed.status_code == 200 and listed.context["cl"].result_count == 1  # the alert's one event
    inquiries_url = next(link.split('"')[0] for link in events_link if link.startswith("/admin/exchange/inquiry/?"))
    assert compliance.get(inquiries_url.replace("&amp;", "&")).context["cl"].result_count == 0


def test_compliance_staff_close_an_alert_once_reviewed(compliance, operator, alert):
    url = reverse("admin:exchange_compliancealert_close", args=[alert.pk])
    assert operator.post(url, {"reviewed": "on"}).status_code == 403
    assert compliance.post(url, {"reviewed": "on"}).status_code == 302
    closed = ComplianceAlert.objects.get(pk=alert.pk)
    assert closed.status == "closed" and closed.closed_by == "staff:carl"
    assert AuditEvent.objects.filter(action="compliance_alert.close", outcome="ok").count() == 1


def test_the_dashboard_shows_open_alerts_and_the_baseline_charts(auditor, alert, bank_a):
    response = auditor.get(reverse("console_dashboard"))
    page = response.content.decode()
    assert 'id="alerts-open">1<' in page and "latest-alerts" in page
    Inquiry.objects.create(member=bank_a.member, subject_token="t" * 64, purpose="credit_application")
    page = auditor.get(reverse("console_dashboard")).content.decode()
    assert "distinct subjects per hour against its 7-day baseline" in page and "7-day median" in page


def test_each_alert_page_view_is_one_audit_event_without_the_query_string(compliance, alert):
    before = AuditEvent.objects.filter(action="compliance_alert.view").count()
    assert (
        compliance.get(reverse("admin:exchange_compliancealert_changelist"), {"q": "11010519491231002X"}).status_code
        == 200
    )
    assert compliance.get(reverse("admin:exchange_compliancealert_change", args=[alert.pk])).status_code == 200
    views = AuditEvent.objects.filter(action="compliance_alert.view").order_by("id")[before:]
    assert len(views) == 2  # one for the list, one for the page: not twice each
    assert all("11010519491231002X" not in str(event.details) for event in views)


def test_a_request_past_due_is_listed_and_filtered_as_overdue_before_run_worker_runs(compliance, data, bank_b):
    [inquiry] = Inquiry.objects.filter(member=bank_b.member)
    [request] = evidence_requests_open(member=bank_b.member, actor="staff:carl", inquiry_ids=[inquiry.pk])
    EvidenceRequest.objects.filter(pk=request.pk).update(
        opened_at=timezone.now() - timedelta(days=11), due_at=timezone.now() - timedelta(seconds=1)
    )
    changelist = reverse("admin:exchange_evidencerequest_changelist")
    overdue = compliance.get(changelist, {"status": "overdue"})
    assert overdue.status_code == 200 and str(request.pk)[:8] in overdue.content.decode()
    assert list(overdue.context["cl"].result_list) == [request]
    assert list(compliance.get(changelist, {"status": "open"}).context["cl"].result_list) == []
    page = compliance.get(reverse("admin:exchange_evidencerequest_change", args=[request.pk])).content.decode()
    assert ">overdue<" in page
    assert EvidenceRequest.objects.get(pk=request.pk).status == "open"  # stored by run_worker later


def test_a_spot_check_opened_meanwhile_by_another_operator_is_a_form_error(compliance, data, bank_b, monkeypatch):
    from exchange import evidence

    [inquiry] = Inquiry.objects.filter(member=bank_b.member)
    real = evidence._insert_requests

    def racing(member, actor, chosen, now):
        if not EvidenceRequest.objects.exists():
            real(member, "staff:other", chosen, now)  # the other operator's request, committed first
        return real(member, actor, chosen, now)

    monkeypatch.setattr(evidence, "_insert_requests", racing)
    response = compliance.post(reverse("console_compliance"), {"member": bank_b.code, "inquiries": str(inquiry.pk)})
    assert response.status_code == 200
    assert "already has an evidence request" in response.content.decode()
    assert EvidenceRequest.objects.get().opened_by == "staff:other"
