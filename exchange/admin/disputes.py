"""Disputes in the console: the work queue, with its due-date filter and the resolve page."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit.actors import staff_actor
from core.problems import ApiError
from exchange import services
from exchange.admin.console import (
    DUE_SOON,
    RESOLVE_DISPUTE,
    ServiceOnlyAdmin,
    Tool,
    error_text,
    short,
)
from exchange.disputes import MAX_TEXT, Roles, dispute_resolve
from exchange.models import (
    Dispute,
    DisputeOutcome,
    DisputeStatus,
)


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
        max_length=MAX_TEXT,
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
        return format_html('<a href="{}">{}</a>', url, short(obj.record_id))

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
            caller = services.Caller(member=dispute.record.member, actor=staff_actor(request.user.get_username()))
            try:
                dispute_resolve(
                    caller=caller,
                    roles=Roles(furnisher=True, filer=False),
                    dispute_id=dispute.pk,
                    outcome=form.cleaned_data["outcome"],
                    note=form.cleaned_data["note"] or None,
                )
            except ApiError as exc:
                form.add_error(None, error_text(exc))
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
