"""Consents and inquiries in the console: read-only lists and pages."""

from __future__ import annotations

import json

from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html

from exchange.admin.console import (
    ServiceOnlyAdmin,
)
from exchange.models import (
    Consent,
    Inquiry,
)


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

    @admin.display(description="subject token")
    def token(self, obj: Inquiry) -> str:
        return obj.subject_token[:12] + "…"

    @admin.display(description="result (as returned to the member)")
    def result_display(self, obj: Inquiry) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", json.dumps(obj.result, indent=2))
