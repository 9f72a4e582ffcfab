"""The borrower's own report in the admin console: everything the exchange holds on one subject.

Staff type the identifier into a POST form; it is turned into the subject token at once and
is never put in a URL, stored, logged or audited (only the token is). Needs a staff user
with `exchange.view_record` (or a superuser); every lookup and every refusal is audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from audit.actions import Action
from audit.actors import staff_actor
from audit.services import audit_write
from exchange.admin.console import audit_refusal
from exchange.models import Dispute, DisputeStatus, IdType, Inquiry, Record
from exchange.validation import format_money, parse_subject

PERMISSION = "exchange.view_record"


class _NoEchoInput(forms.TextInput):
    """A text input that never writes the typed value back into the page."""

    def format_value(self, value: Any) -> None:
        return None


class BorrowerLookupForm(forms.Form):
    id_type = forms.ChoiceField(choices=IdType.choices)
    id_number = forms.CharField(
        max_length=64, widget=_NoEchoInput(attrs={"autocomplete": "off", "spellcheck": "false"})
    )
    country = forms.CharField(
        max_length=2, required=False, help_text="ISO 3166-1 alpha-2, passports only", widget=_NoEchoInput()
    )

    @sensitive_variables("data", "raw")
    def clean(self) -> dict:
        data = super().clean()
        if self.errors:
            return data
        raw = {"id_type": data["id_type"], "id_number": data["id_number"]}
        if data.get("country"):
            raw["country"] = data["country"]
        errors: list[tuple[str, str]] = []
        parsed = parse_subject(raw, errors, typed_by_staff=True)
        for name, message in errors:
            self.add_error(name.removeprefix("subject.") if name != "subject" else None, message)
        if parsed is not None and not errors:
            data["token"] = parsed[1]
            number = data["id_number"].replace(" ", "")
            data["masked"] = "•" * max(len(number) - 4, 0) + number[-4:]
        return data


@dataclass
class ReportLine:
    record: Record
    member_name: str
    principal: str
    amount_overdue: str
    withdrawn: bool
    disputed: bool
    suppressed: bool
    disputes: list[Dispute] = field(default_factory=list)


@dataclass
class BorrowerReport:
    subject_token: str
    generated_at: datetime
    lines: list[ReportLine]
    inquiries: list[Inquiry]

    @property
    def open_disputes(self) -> int:
        return sum(len(line.disputes) for line in self.lines)


def borrower_report_build(*, subject_token: str, now: datetime | None = None) -> BorrowerReport:
    """Every current record about the subject (withdrawn and suppressed ones included, flagged),
    its open disputes, and every inquiry on the subject."""
    now = now or timezone.now()
    open_disputes = Dispute.objects.filter(record=OuterRef("pk"), status=DisputeStatus.OPEN)
    records = (
        Record.objects.filter(subject_token=subject_token)
        .select_related("member")
        .defer("name", "member_reference", "withdraw_reason")  # not shown, so never decrypted
        .annotate(disputed=Exists(open_disputes), suppressed=Exists(open_disputes.filter(due_at__lte=now)))
        .order_by("-delinquent_since", "member__name", "id")
    )
    disputes: dict[Any, list[Dispute]] = {}
    for dispute in (
        Dispute.objects.filter(subject_token=subject_token, status=DisputeStatus.OPEN)
        .select_related("filed_by")
        .only("id", "record_id", "opened_at", "due_at", "filed_by_staff", "filed_by__name")
        .order_by("opened_at")
    ):
        dispute.overdue = dispute.due_at <= now
        disputes.setdefault(dispute.record_id, []).append(dispute)
    lines = [
        ReportLine(
            record=record,
            member_name=record.member.name,
            principal=format_money(record.principal),
            amount_overdue=format_money(record.amount_overdue),
            withdrawn=record.withdrawn_at is not None,
            disputed=record.disputed,
            suppressed=record.suppressed,
            disputes=disputes.get(record.pk, []),
        )
        for record in records
    ]
    inquiries = list(
        Inquiry.objects.filter(subject_token=subject_token)
        .select_related("member")
        .only("id", "created_at", "purpose", "member__name", "member__code")
        .order_by("-created_at", "id")
    )
    return BorrowerReport(subject_token=subject_token, generated_at=now, lines=lines, inquiries=inquiries)


def _may_view(user) -> bool:
    return user.is_active and user.is_staff and (user.is_superuser or user.has_perm(PERMISSION))


def _audit(user, *, subject_token: str, **details) -> None:
    with transaction.atomic():
        audit_write(
            action=Action.BORROWER_REPORT_VIEW,
            actor=staff_actor(user.get_username()),
            object_type="subject",
            subject_token=subject_token,
            details=details,
        )


@sensitive_post_parameters("id_number", "country")
@never_cache
@csrf_protect
def borrower_report_view(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), reverse("admin:login"))
    if not _may_view(user):
        audit_refusal(request, Action.BORROWER_REPORT_VIEW, "permission")
        raise PermissionDenied("A borrower's report needs one of the console's roles.")
    context = {
        **admin.site.each_context(request),
        "title": "Borrower's report",
        "form": BorrowerLookupForm(),
        "report": None,
    }
    if request.method == "POST":
        form = BorrowerLookupForm(request.POST)
        if form.is_valid():
            token = form.cleaned_data["token"]
            report = borrower_report_build(subject_token=token)
            _audit(user, subject_token=token, records=len(report.lines), inquiries=len(report.inquiries))
            context.update(report=report, id_type=form.cleaned_data["id_type"], masked=form.cleaned_data["masked"])
        else:
            context["form"] = form
    return TemplateResponse(request, "exchange/borrower_report.html", context)


def borrower_report_urls() -> list[URLPattern]:
    """Mounted at /admin/borrower-report/ by config/urls.py, above the admin site's own URLs."""
    return [path("", borrower_report_view, name="borrower_report")]
