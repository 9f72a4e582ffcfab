"""Consent assurance in the console: the compliance page (evidence outcomes per member, spot checks
opened by sampling a member's inquiries or naming them), evidence requests and compliance alerts.

Every view of these pages is audited; opening requests and closing alerts go through the services
of exchange/evidence.py and exchange/alerts.py, which audit them too.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from audit.actions import Action
from audit.actors import staff_actor
from audit.services import audit_write
from exchange.admin.console import ConsoleAction, ServiceOnlyAdmin, Tool, audit_refusal, short
from exchange.alerts import alert_close
from exchange.evidence import SAMPLE_DAYS, EvidenceError, evidence_outcomes, evidence_requests_open
from exchange.models import AlertStatus, ComplianceAlert, EvidenceRequest, EvidenceStatus, evidence_status_q
from members.models import Member

VIEW_PERMISSION = "exchange.view_evidencerequest"
OPEN_EVIDENCE = ConsoleAction(
    "exchange.add_evidencerequest", Action.EVIDENCE_OPEN, "Opening evidence requests needs the compliance role."
)
CLOSE_ALERT = ConsoleAction(
    "exchange.change_compliancealert", Action.ALERT_CLOSE, "Closing an alert needs the compliance role."
)
MAX_SAMPLE = 100


def _audit_view(request: HttpRequest, action: str, **details) -> None:
    with transaction.atomic():
        audit_write(action=action, actor=staff_actor(request.user.get_username()), details=details)


class MemberColumn:
    """The member's code as a list column."""

    @admin.display(description="member", ordering="member__code")
    def member_code(self, obj) -> str:
        return obj.member.code


# --- evidence requests --------------------------------------------------------------------------


class EvidenceStatusFilter(admin.SimpleListFilter):
    """By the status as of now: an open request past `due_at` is listed as overdue at once, not
    only once run_worker has stored it."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return EvidenceStatus.choices

    def queryset(self, request, queryset):
        wanted = self.value()
        if wanted in EvidenceStatus.values:
            return queryset.filter(evidence_status_q(wanted, timezone.now()))
        return queryset


@admin.register(EvidenceRequest)
class EvidenceRequestAdmin(MemberColumn, ServiceOnlyAdmin):
    # Each list and object page audited by ServiceOnlyAdmin (audit.console.AuditedPages), as these.
    audit_list_action = audit_view_action = Action.COMPLIANCE_VIEW
    list_display = (
        "short_id",
        "member_code",
        "status_now",
        "inquiry_link",
        "opened_at",
        "due_at",
        "answered_at",
        "late",
    )
    list_filter = (EvidenceStatusFilter, "member", "opened_at", "due_at")
    list_select_related = ("member",)
    search_fields = ("=subject_token",)
    ordering = ("-opened_at", "-id")
    fields = (
        "id",
        "member",
        "status_now",
        "inquiry_link",
        "consent",
        "purpose",
        "subject_token",
        "opened_by",
        "opened_at",
        "due_at",
        "overdue_at",
        "answered_at",
        "late",
        "expected_sha256",
        "document_sha256",
        "document_size",
    )
    readonly_fields = fields

    @admin.display(description="status", ordering="status")
    def status_now(self, obj: EvidenceRequest) -> str:
        return obj.current_status  # overdue once past due_at, before run_worker stores it

    @admin.display(description="inquiry")
    def inquiry_link(self, obj: EvidenceRequest) -> str:
        url = reverse("admin:exchange_inquiry_change", args=[obj.inquiry_id])
        return format_html('<a href="{}">{}</a>', url, short(obj.inquiry_id))

    @admin.display(description="answered late", boolean=True)
    def late(self, obj: EvidenceRequest) -> bool | None:
        return obj.late if obj.answered_at else None  # unanswered: neither


# --- compliance alerts --------------------------------------------------------------------------


def _window_query(field: str, start: datetime, end: datetime) -> str:
    return urlencode({f"{field}__gte": start.isoformat(), f"{field}__lt": end.isoformat()})


class CloseAlertForm(forms.Form):
    reviewed = forms.BooleanField(
        label="Reviewed", help_text="The alert was looked into (see docs/compliance.md for what to check)."
    )


@admin.register(ComplianceAlert)
class ComplianceAlertAdmin(MemberColumn, ServiceOnlyAdmin):
    audit_list_action = audit_view_action = Action.ALERT_VIEW
    list_display = ("kind", "member_code", "count", "threshold", "window_start", "status", "raised_at")
    list_filter = ("status", "kind", "member", "window_start")
    list_select_related = ("member",)
    ordering = ("-window_start", "kind")
    fields = (
        "id",
        "member",
        "kind",
        "status",
        "detail",
        "count",
        "threshold",
        "baseline",
        "window_start",
        "window_end",
        "first_at",
        "last_at",
        "evidence",
        "raised_at",
        "updated_at",
        "emailed_at",
        "closed_at",
        "closed_by",
    )
    readonly_fields = fields

    @admin.display(description="look into it")
    def evidence(self, obj: ComplianceAlert) -> str:
        start, end = obj.window_start, obj.window_end
        events = (
            f"{reverse('admin:audit_auditevent_changelist')}?member_code__exact={obj.member.code}&"
            + _window_query("occurred_at", start, end)
        )
        inquiries = f"{reverse('admin:exchange_inquiry_changelist')}?member__id__exact={obj.member_id}&" + (
            _window_query("created_at", start, end)
        )
        return format_html(
            '<a href="{}">the member\'s audit events of the window</a> · '
            '<a href="{}">its inquiries of the window</a> · '
            '<a href="{}">its evidence requests</a>',
            events,
            inquiries,
            f"{reverse('admin:exchange_evidencerequest_changelist')}?member__id__exact={obj.member_id}",
        )

    def tools(self, request, obj):
        found = super().tools(request, obj)
        if obj.status == AlertStatus.OPEN and CLOSE_ALERT.allowed(request):
            found.append(Tool(reverse("admin:exchange_compliancealert_close", args=[obj.pk]), "Close as reviewed"))
        return found

    def extra_urls(self, wrap):
        return [path("<path:object_id>/close/", wrap(self.close_view), name="exchange_compliancealert_close")]

    def close_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        alert = self._object_or_404(request, object_id)
        CLOSE_ALERT.require(request, alert)
        form = CloseAlertForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            alert_close(alert=alert, actor=staff_actor(request.user.get_username()))
            self.message_user(request, "Alert closed as reviewed.")
            return HttpResponseRedirect(reverse("admin:exchange_compliancealert_change", args=[alert.pk]))
        return self.service_form(
            request,
            alert,
            form=form,
            title=f"Close {alert}",
            intro=f"{alert.member.code}: {alert.detail}. Closing is audited; the alert stays listed.",
            submit="Close the alert",
        )


# --- the compliance page ----------------------------------------------------------------------


class EvidenceRequestForm(forms.Form):
    member = forms.ModelChoiceField(queryset=Member.objects.order_by("code"), to_field_name="code")
    sample = forms.IntegerField(
        min_value=1,
        max_value=MAX_SAMPLE,
        required=False,
        help_text=f"How many random inquiries of the last {SAMPLE_DAYS} days to check.",
    )
    inquiries = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Or the ids of the inquiries to check, one per line (instead of a sample).",
    )

    def clean(self) -> dict:
        data = super().clean()
        ids = [line.strip() for line in (data.get("inquiries") or "").split() if line.strip()]
        if bool(data.get("sample")) == bool(ids):
            raise forms.ValidationError("Give either a sample size or inquiry ids.")
        data["inquiry_ids"] = ids
        return data


@never_cache
@csrf_protect
def compliance_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if not (user.is_active and user.is_staff and user.has_perm(VIEW_PERMISSION)):
        audit_refusal(request, Action.COMPLIANCE_VIEW, "permission")
        raise PermissionDenied("The compliance page needs the compliance or auditor role.")
    may_open = OPEN_EVIDENCE.allowed(request)
    form = EvidenceRequestForm(request.POST or None) if may_open else None
    if request.method == "POST":
        if not may_open:
            audit_refusal(request, Action.EVIDENCE_OPEN, "permission")
            raise PermissionDenied(OPEN_EVIDENCE.refusal)
        if form.is_valid():
            member = form.cleaned_data["member"]
            try:
                opened = evidence_requests_open(
                    member=member,
                    actor=staff_actor(user.get_username()),
                    sample=form.cleaned_data.get("sample") or 0,
                    inquiry_ids=form.cleaned_data["inquiry_ids"],
                )
            except EvidenceError as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(
                    request,
                    f"{len(opened)} evidence request{'s' if len(opened) != 1 else ''} opened for {member.code}"
                    + (f", due {opened[0].due_at:%Y-%m-%d}." if opened else ": no inquiry left to sample."),
                )
                return HttpResponseRedirect(reverse("console_compliance"))
    outcomes = evidence_outcomes()
    open_alerts = list(
        ComplianceAlert.objects.filter(status=AlertStatus.OPEN).select_related("member").order_by("-window_start")[:20]
    )
    context = {
        **admin.site.each_context(request),
        "title": "Compliance",
        "outcomes": outcomes,
        "open_alerts": open_alerts,
        "open_alert_count": ComplianceAlert.objects.filter(status=AlertStatus.OPEN).count(),
        "form": form,
        "statuses": EvidenceStatus,
        "now": timezone.now(),
    }
    _audit_view(request, Action.COMPLIANCE_VIEW, page="compliance", members=len(outcomes))
    return TemplateResponse(request, "admin/exchange/compliance.html", context)


def compliance_urls() -> list[URLPattern]:
    """Mounted at /admin/compliance/ by config/urls.py, above the admin site's own URLs."""
    return [path("", compliance_view, name="console_compliance")]
