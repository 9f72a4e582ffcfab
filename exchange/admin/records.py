"""Records in the console: list, filters, history, and the withdraw and open-dispute pages."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Exists, OuterRef
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse

from audit.actors import staff_actor
from core.console import ReadOnlyMixin
from core.problems import ApiError
from exchange import records, services
from exchange.admin.console import (
    OPEN_DISPUTE,
    WITHDRAW,
    ServiceOnlyAdmin,
    Tool,
    error_text,
    short,
)
from exchange.disputes import MAX_TEXT, dispute_open_by_staff
from exchange.models import (
    Dispute,
    DisputeStatus,
    Record,
    RecordVersion,
)
from exchange.validation import format_money


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


# --- records ---------------------------------------------------------------------------------


class RecordVersionInline(ReadOnlyMixin, admin.TabularInline):
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

    @admin.display(description="amount overdue")
    def amount_overdue_display(self, obj: RecordVersion) -> str:
        return f"{format_money(obj.amount_overdue)} {obj.currency}"


class RecordWithdrawForm(forms.Form):
    reason = forms.CharField(
        max_length=records.MAX_WITHDRAW_REASON,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why the exchange withdraws it; stored encrypted. The record leaves every report.",
    )


class DisputeOpenForm(forms.Form):
    reason = forms.CharField(
        max_length=MAX_TEXT,
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
            caller = services.Caller(member=record.member, actor=staff_actor(request.user.get_username()))
            records.record_withdraw(caller=caller, record_id=record.pk, reason=form.cleaned_data["reason"])
            self.message_user(request, f"Record {short(record.pk)} withdrawn: it leaves every report.")
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
                    record=record, reason=form.cleaned_data["reason"], actor=staff_actor(request.user.get_username())
                )
            except ApiError as exc:
                form.add_error(None, error_text(exc))
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
