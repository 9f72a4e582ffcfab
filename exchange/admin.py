"""Records, consents, inquiries and disputes in the admin console.

Read-only lists with filters: nothing here saves a model directly. Every change is a small view
that calls the same service as the API (withdraw, open a dispute, resolve one), so it is
audited the same way, with the staff user as actor. Encrypted fields are shown masked and never
decrypted for a list; revealing one value needs `exchange.reveal_personal_data` and writes an
`admin.reveal` audit event naming the object and field (never the value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import BooleanField, Case, Exists, ExpressionWrapper, OuterRef, Q, Value, When
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit.models import Outcome
from audit.services import audit_write
from core.problems import ApiError
from exchange import services
from exchange.disputes import Roles, dispute_open_by_staff, dispute_resolve
from exchange.models import (
    Consent,
    Dispute,
    DisputeOutcome,
    DisputeStatus,
    Inquiry,
    Record,
    RecordVersion,
)
from exchange.validation import format_money
from members.roles import REVEAL_PERMISSION

MASK = "••••"
DUE_SOON = timedelta(days=3)


def staff_actor(request: HttpRequest) -> str:
    return f"staff:{request.user.get_username()}"


def audit_refusal(request: HttpRequest, action: str, why: str, *, obj: Any = None, **details) -> None:
    """A console action refused for lack of permission, on record before the 403."""
    with transaction.atomic():
        audit_write(
            action=action,
            actor=staff_actor(request),
            outcome=Outcome.DENIED,
            object_type=obj._meta.model_name if obj is not None else "",
            object_id=obj.pk if obj is not None else "",
            details={"why": why, **details},
        )


def _present(field: str) -> ExpressionWrapper:
    """Whether an encrypted column holds a value, asked of the database (nothing decrypted)."""
    return ExpressionWrapper(Q(**{f"{field}__isnull": False}), output_field=BooleanField())


def _short(value: Any) -> str:
    return str(value)[:8]


@dataclass(frozen=True)
class Tool:
    url: str
    label: str


class ServiceOnlyAdmin(admin.ModelAdmin):
    """Lists and read-only pages; changes only through the views of each admin, which call services."""

    change_form_template = "admin/exchange/console_change_form.html"
    encrypted_fields: tuple[str, ...] = ()  # revealable one at a time, audited
    show_full_result_count = False  # no count(*) over the whole table on every page
    list_per_page = 50
    actions = None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self.encrypted_fields:
            # The ciphertext is not even loaded; whether there is one is all a page shows.
            queryset = queryset.defer(*self.encrypted_fields).annotate(
                **{f"has_{name}": _present(name) for name in self.encrypted_fields}
            )
        return queryset

    # --- masked fields and their reveal view ---------------------------------------------

    def masked(self, obj: models.Model, field: str) -> str:
        return MASK if getattr(obj, f"has_{field}", False) else "—"

    def _url_name(self, view: str) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_{view}"

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/reveal/<str:field>/", wrap(self.reveal_view), name=self._url_name("reveal")),
            *self.extra_urls(wrap),
            *super().get_urls(),
        ]

    def extra_urls(self, wrap) -> list:
        return []

    def tools(self, request: HttpRequest, obj: models.Model) -> list[Tool]:
        """Buttons on an object's page, each shown only to those allowed to use it."""
        if not request.user.has_perm(REVEAL_PERMISSION):
            return []
        return [
            Tool(
                reverse(f"admin:{self._url_name('reveal')}", args=[obj.pk, name]),
                f"Reveal {obj._meta.get_field(name).verbose_name}",
            )
            for name in self.encrypted_fields
            if getattr(obj, f"has_{name}", False)
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, admin.utils.unquote(object_id))
        extra_context = {**(extra_context or {}), "console_tools": self.tools(request, obj) if obj else []}
        return super().change_view(request, object_id, form_url, extra_context=extra_context)

    def audit_scope(self, obj: models.Model) -> dict[str, Any]:
        """member_code and subject_token of the audit events about `obj`."""
        return {"member_code": "", "subject_token": getattr(obj, "subject_token", "")}

    def _object_or_404(self, request: HttpRequest, object_id: str) -> models.Model:
        if not self.has_view_permission(request):
            raise PermissionDenied
        obj = self.get_object(request, admin.utils.unquote(object_id))
        if obj is None:
            raise Http404("No such object.")
        return obj

    def reveal_view(self, request: HttpRequest, object_id: str, field: str) -> HttpResponse:
        """GET: what is about to be revealed, and that it is audited. POST: the value, audited."""
        if not self.has_view_permission(request) or field not in self.encrypted_fields:
            audit_refusal(request, "admin.reveal", "unknown_field" if self.has_view_permission(request) else "view")
            raise PermissionDenied
        obj = self._object_or_404(request, object_id)
        if not request.user.has_perm(REVEAL_PERMISSION):
            audit_refusal(request, "admin.reveal", "permission", obj=obj, field=field)
            raise PermissionDenied("Revealing personal data needs the compliance officer's role.")
        label = obj._meta.get_field(field).verbose_name
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "object": obj,
            "title": f"Reveal the {label} of {obj}",
            "field_label": label,
            "revealed": False,
            "back_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]),
        }
        if request.method == "POST":
            with transaction.atomic():
                fresh = type(obj)._default_manager.only("pk", field).get(pk=obj.pk)
                value = getattr(fresh, field)  # decrypted here, and only here
                audit_write(
                    action="admin.reveal",
                    actor=staff_actor(request),
                    object_type=obj._meta.model_name,
                    object_id=obj.pk,
                    details={"field": field},
                    **self.audit_scope(obj),
                )
            context.update(revealed=True, value=value)
        return TemplateResponse(request, "admin/exchange/reveal.html", context)

    # --- a form page for one service call ------------------------------------------------

    def service_form(
        self,
        request: HttpRequest,
        obj: models.Model,
        *,
        form: forms.Form,
        title: str,
        intro: str,
        submit: str,
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "object": obj,
            "title": title,
            "intro": intro,
            "form": form,
            "submit_label": submit,
            "back_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]),
        }
        return TemplateResponse(request, "admin/exchange/service_form.html", context)


class ConsoleAction:
    """A console view's permission check: refused attempts are audited, then answered with 403."""

    def __init__(self, permission: str, action: str, refusal: str):
        self.permission = permission
        self.action = action
        self.refusal = refusal  # the sentence the refused page shows

    def allowed(self, request: HttpRequest) -> bool:
        return request.user.has_perm(self.permission)

    def require(self, request: HttpRequest, obj: models.Model) -> None:
        if not self.allowed(request):
            audit_refusal(request, self.action, "permission", obj=obj)
            raise PermissionDenied(self.refusal)


WITHDRAW = ConsoleAction("exchange.change_record", "record.withdraw", "Withdrawing a record needs the operator's role.")
OPEN_DISPUTE = ConsoleAction("exchange.add_dispute", "dispute.open", "Opening a dispute needs the operator's role.")
RESOLVE_DISPUTE = ConsoleAction(
    "exchange.change_dispute", "dispute.resolve", "Resolving a dispute needs the operator's role."
)


def _error_text(exc: ApiError) -> str:
    errors = getattr(exc, "errors", None) or []
    return "; ".join(f"{e['field']} {e['message']}" for e in errors) or str(exc.detail)


# --- list filters ----------------------------------------------------------------------------


class WithdrawnFilter(admin.SimpleListFilter):
    title = "withdrawn"
    parameter_name = "withdrawn"

    def lookups(self, request, model_admin):
        return [("no", "No"), ("yes", "Yes")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(withdrawn_at__isnull=self.value() == "no")
        return queryset


class DisputedFilter(admin.SimpleListFilter):
    title = "open dispute"
    parameter_name = "disputed"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(disputed=self.value() == "yes")
        return queryset


class ConsentStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True, expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class DueFilter(admin.SimpleListFilter):
    title = "due"
    parameter_name = "due"

    def lookups(self, request, model_admin):
        return [("overdue", "Overdue"), ("soon", f"Due within {DUE_SOON.days} days")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "overdue":
            return queryset.filter(status=DisputeStatus.OPEN, due_at__lte=now)
        if self.value() == "soon":
            return queryset.filter(status=DisputeStatus.OPEN, due_at__gt=now, due_at__lte=now + DUE_SOON)
        return queryset


# --- records ---------------------------------------------------------------------------------


class RecordVersionInline(admin.TabularInline):
    model = RecordVersion
    fk_name = "record"
    verbose_name_plural = "versions (history)"
    fields = ("version", "status", "days_past_due", "amount_overdue_display", "as_of", "created_at", "submission_id")
    readonly_fields = fields
    ordering = ("-version",)
    extra = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).defer("name")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="amount overdue")
    def amount_overdue_display(self, obj: RecordVersion) -> str:
        return f"{format_money(obj.amount_overdue)} {obj.currency}"


class RecordWithdrawForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why the exchange withdraws it; stored encrypted. The record leaves every report.",
    )


class DisputeOpenForm(forms.Form):
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="The borrower's objection, as they put it; stored encrypted, never in the audit log.",
    )


@admin.register(Record)
class RecordAdmin(ServiceOnlyAdmin):
    encrypted_fields = ("name", "member_reference", "withdraw_reason")
    list_display = (
        "short_id",
        "member_code",
        "product",
        "status",
        "days_past_due",
        "amount_overdue_display",
        "as_of",
        "version",
        "is_withdrawn",
        "disputed",
        "updated_at",
    )
    list_filter = (
        "status",
        "product",
        "member",
        WithdrawnFilter,
        DisputedFilter,
        "as_of",
        "delinquent_since",
        "updated_at",
    )
    list_select_related = ("member",)
    search_fields = ("=subject_token",)
    search_help_text = "Exact subject token (the borrower's report looks a borrower up by identifier)."
    ordering = ("-updated_at", "-id")
    inlines = (RecordVersionInline,)
    fieldsets = (
        (None, {"fields": ("id", "member", "version", "status", "product", "currency")}),
        ("Borrower", {"fields": ("subject_token", "id_type", "name_masked", "member_reference_masked")}),
        (
            "Amounts and dates",
            {
                "fields": (
                    "principal_display",
                    "amount_overdue_display",
                    "days_past_due",
                    "opened_on",
                    "delinquent_since",
                    "as_of",
                    "notice_sent_on",
                    "settled_on",
                    "payment_history",
                )
            },
        ),
        ("State", {"fields": ("disputed", "withdrawn_at", "withdraw_reason_masked", "created_at", "updated_at")}),
    )
    readonly_fields = (
        "id",
        "member",
        "version",
        "status",
        "product",
        "currency",
        "subject_token",
        "id_type",
        "name_masked",
        "member_reference_masked",
        "principal_display",
        "amount_overdue_display",
        "days_past_due",
        "opened_on",
        "delinquent_since",
        "as_of",
        "notice_sent_on",
        "settled_on",
        "payment_history",
        "disputed",
        "withdrawn_at",
        "withdraw_reason_masked",
        "created_at",
        "updated_at",
    )

    def get_queryset(self, request):
        open_disputes = Dispute.objects.filter(record=OuterRef("pk"), status=DisputeStatus.OPEN)
        return super().get_queryset(request).annotate(disputed=Exists(open_disputes))

    def audit_scope(self, obj: Record) -> dict[str, Any]:
        return {"member_code": obj.member.code, "subject_token": obj.subject_token}

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Record) -> str:
        return _short(obj.pk)

    @admin.display(description="member", ordering="member__code")
    def member_code(self, obj: Record) -> str:
        return obj.member.code

    @admin.display(description="amount overdue", ordering="amount_overdue")
    def amount_overdue_display(self, obj: Record) -> str:
        return f"{format_money(obj.amount_overdue)} {obj.currency}"

    @admin.display(description="principal")
    def principal_display(self, obj: Record) -> str:
        return f"{format_money(obj.principal)} {obj.currency}"

    @admin.display(description="withdrawn", boolean=True, ordering="withdrawn_at")
    def is_withdrawn(self, obj: Record) -> bool:
        return obj.withdrawn_at is not None

    @admin.display(description="open dispute", boolean=True)
    def disputed(self, obj: Record) -> bool:
        return bool(getattr(obj, "disputed", False))

    @admin.display(description="name")
    def name_masked(self, obj: Record) -> str:
        return self.masked(obj, "name")

    @admin.display(description="member reference")
    def member_reference_masked(self, obj: Record) -> str:
        return self.masked(obj, "member_reference")

    @admin.display(description="withdraw reason")
    def withdraw_reason_masked(self, obj: Record) -> str:
        return self.masked(obj, "withdraw_reason")

    def tools(self, request, obj):
        found = super().tools(request, obj)
        if obj.withdrawn_at is None:
            if WITHDRAW.allowed(request):
                found.append(Tool(reverse("admin:exchange_record_withdraw", args=[obj.pk]), "Withdraw"))
            if OPEN_DISPUTE.allowed(request):
                found.append(Tool(reverse("admin:exchange_record_open_dispute", args=[obj.pk]), "Open a dispute"))
        return found

    def extra_urls(self, wrap):
        return [
            path("<path:object_id>/withdraw/", wrap(self.withdraw_view), name="exchange_record_withdraw"),
            path("<path:object_id>/open-dispute/", wrap(self.open_dispute_view), name="exchange_record_open_dispute"),
        ]

    def withdraw_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        record = self._object_or_404(request, object_id)
        WITHDRAW.require(request, record)
        form = RecordWithdrawForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            # The staff action is the furnisher's withdrawal made on its behalf: its service, its
            # audit event, with the staff user as actor.
            caller = services.Caller(member=record.member, actor=staff_actor(request))
            services.record_withdraw(caller=caller, record_id=record.pk, reason=form.cleaned_data["reason"])
            self.message_user(request, f"Record {_short(record.pk)} withdrawn: it leaves every report.")
            return HttpResponseRedirect(reverse("admin:exchange_record_change", args=[record.pk]))
        return self.service_form(
            request,
            record,
            form=form,
            title=f"Withdraw {record}",
            intro="The record leaves every inquiry result; its history stays. This is audited.",
            submit="Withdraw the record",
        )

    def open_dispute_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        record = self._object_or_404(request, object_id)
        OPEN_DISPUTE.require(request, record)
        form = DisputeOpenForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                dispute = dispute_open_by_staff(
                    record=record, reason=form.cleaned_data["reason"], actor=staff_actor(request)
                )
            except ApiError as exc:
                form.add_error(None, _error_text(exc))
            else:
                self.message_user(request, f"Dispute opened; the furnisher must answer by {dispute.due_at:%Y-%m-%d}.")
                return HttpResponseRedirect(reverse("admin:exchange_dispute_change", args=[dispute.pk]))
        return self.service_form(
            request,
            record,
            form=form,
            title=f"Open a dispute on {record}",
            intro="For a borrower who came to the exchange directly. The furnisher is asked to answer.",
            submit="Open the dispute",
        )


# --- consents and inquiries ------------------------------------------------------------------


@admin.register(Consent)
class ConsentAdmin(ServiceOnlyAdmin):
    list_display = ("short_id", "member", "id_type", "purpose", "channel", "status", "granted_at", "expires_at")
    list_filter = (ConsentStatusFilter, "purpose", "channel", "member", "granted_at", "expires_at")
    list_select_related = ("member",)
    search_fields = ("=subject_token",)
    ordering = ("-created_at", "-id")
    fields = (
        "id",
        "member",
        "subject_token",
        "id_type",
        "purpose",
        "channel",
        "status",
        "evidence_sha256",
        "granted_at",
        "expires_at",
        "revoked_at",
        "created_at",
    )
    readonly_fields = fields

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Consent) -> str:
        return _short(obj.pk)

    @admin.display(description="status")
    def status(self, obj: Consent) -> str:
        return obj.status


@admin.register(Inquiry)
class InquiryAdmin(ServiceOnlyAdmin):
    list_display = ("short_id", "member", "purpose", "token", "created_at")
    list_filter = ("purpose", "member", "created_at")
    list_select_related = ("member",)
    search_fields = ("=subject_token",)
    ordering = ("-created_at", "-id")
    fields = ("id", "member", "subject_token", "consent", "purpose", "created_at", "result_display")
    readonly_fields = fields

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        # Results can be long: lists never load them.
        return queryset if request.resolver_match.url_name.endswith("_change") else queryset.defer("result")

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: Inquiry) -> str:
        return _short(obj.pk)

    @admin.display(description="subject token")
    def token(self, obj: Inquiry) -> str:
        return obj.subject_token[:12] + "…"

    @admin.display(description="result (as returned to the member)")
    def result_display(self, obj: Inquiry) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(obj.result, indent=2))


# --- disputes: the work queue ----------------------------------------------------------------


class DisputeResolveForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=DisputeOutcome.choices,
        widget=forms.RadioSelect,
        help_text="corrected: the furnisher has sent a new version since the dispute opened; "
        "deleted: the record is withdrawn; upheld: the record stands.",
    )
    note = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Shown to the furnisher and the filer; stored encrypted.",
    )


@admin.register(Dispute)
class DisputeAdmin(ServiceOnlyAdmin):
    change_list_template = "admin/exchange/dispute/change_list.html"
    encrypted_fields = ("reason", "note")
    list_display = ("due", "status", "outcome", "furnisher", "filed_by_display", "record_link", "opened_at")
    list_filter = ("status", DueFilter, "outcome", ("record__member", admin.RelatedFieldListFilter), "opened_at")
    list_select_related = ("record__member", "filed_by")
    search_fields = ("=subject_token",)
    fields = (
        "id",
        "record_link",
        "furnisher",
        "subject_token",
        "inquiry",
        "line",
        "filed_by_display",
        "reason_masked",
        "status",
        "due",
        "opened_at",
        "outcome",
        "note_masked",
        "resolved_at",
    )
    readonly_fields = fields

    def get_ordering(self, request):
        # The work queue: open disputes first, the most urgent at the top; then the answered ones.
        return (Case(When(status=DisputeStatus.OPEN, then=Value(0)), default=Value(1)).asc(), "due_at", "id")

    def audit_scope(self, obj: Dispute) -> dict[str, Any]:
        return {"member_code": obj.record.member.code, "subject_token": obj.subject_token}

    @admin.display(description="due", ordering="due_at")
    def due(self, obj: Dispute) -> str:
        text = f"{obj.due_at:%Y-%m-%d %H:%M}"
        if obj.status != DisputeStatus.OPEN:
            return text
        now = timezone.now()
        if obj.due_at <= now:
            return format_html('<span class="dispute-overdue">{} overdue</span>', text)
        if obj.due_at <= now + DUE_SOON:
            return format_html('<span class="dispute-due-soon">{}</span>', text)
        return text

    @admin.display(description="furnisher", ordering="record__member__code")
    def furnisher(self, obj: Dispute) -> str:
        return obj.record.member.code

    @admin.display(description="filed by")
    def filed_by_display(self, obj: Dispute) -> str:
        return obj.filed_by.code if obj.filed_by_id else obj.filed_by_staff or "—"

    @admin.display(description="record")
    def record_link(self, obj: Dispute) -> str:
        url = reverse("admin:exchange_record_change", args=[obj.record_id])
        return format_html('<a href="{}">{}</a>', url, _short(obj.record_id))

    @admin.display(description="reason")
    def reason_masked(self, obj: Dispute) -> str:
        return self.masked(obj, "reason")

    @admin.display(description="note")
    def note_masked(self, obj: Dispute) -> str:
        return self.masked(obj, "note")

    def tools(self, request, obj):
        found = super().tools(request, obj)
        if obj.status == DisputeStatus.OPEN and RESOLVE_DISPUTE.allowed(request):
            found.append(Tool(reverse("admin:exchange_dispute_resolve", args=[obj.pk]), "Resolve"))
        return found

    def extra_urls(self, wrap):
        return [path("<path:object_id>/resolve/", wrap(self.resolve_view), name="exchange_dispute_resolve")]

    def resolve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        dispute = self._object_or_404(request, object_id)
        RESOLVE_DISPUTE.require(request, dispute)
        form = DisputeResolveForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            # Answered on the furnisher's behalf through the furnisher's own service.
            caller = services.Caller(member=dispute.record.member, actor=staff_actor(request))
            try:
                dispute_resolve(
                    caller=caller,
                    roles=Roles(furnisher=True, filer=False),
                    dispute_id=dispute.pk,
                    outcome=form.cleaned_data["outcome"],
                    note=form.cleaned_data["note"] or None,
                )
            except ApiError as exc:
                form.add_error(None, _error_text(exc))
            else:
                self.message_user(request, f"Dispute resolved: {form.cleaned_data['outcome']}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:exchange_dispute_change", args=[dispute.pk]))
        return self.service_form(
            request,
            dispute,
            form=form,
            title=f"Resolve {dispute}",
            intro=f"Furnisher {dispute.record.member.code}; due {dispute.due_at:%Y-%m-%d}. A resolution is final.",
            submit="Resolve the dispute",
        )
