"""The member page with what the member did on the exchange: records furnished, inquiries made,
and whether the reciprocity rule lets it query. The members app knows nothing of records, so the
exchange extends its member admin here."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from exchange.models import Inquiry, Record, RecordVersion, reciprocity_cutoff
from members.admin import MemberAdmin, when
from members.models import Member


def _count_of(queryset: QuerySet) -> Coalesce:
    """A per-member count as a correlated subquery: one per column, so counts never multiply the
    way several joined Count()s would, and the list costs one query whatever its length."""
    counted = queryset.filter(member=OuterRef("pk")).order_by().values("member").annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def members_with_activity(queryset: QuerySet[Member]) -> QuerySet[Member]:
    """Members annotated with records furnished (current), inquiries made and their newest
    furnished version (the reciprocity rule's clock)."""
    return queryset.annotate(
        records_furnished=_count_of(Record.objects.all()),
        inquiries_made=_count_of(Inquiry.objects.all()),
        last_furnished_at=Subquery(
            RecordVersion.objects.filter(member=OuterRef("pk")).order_by("-created_at").values("created_at")[:1]
        ),
    )


class ExchangeMemberAdmin(MemberAdmin):
    list_display = (
        "code",
        "name",
        "kind",
        "status",
        "records_furnished",
        "inquiries_made",
        "last_furnished",
        "last_key_use",
        "reciprocity",
        "created_at",
    )
    readonly_fields = (
        "status",
        "records_furnished",
        "inquiries_made",
        "last_furnished",
        "last_key_use",
        "reciprocity",
        "created_at",
        "updated_at",
        "api_keys",
        "limits",
    )

    def get_queryset(self, request):
        return members_with_activity(super().get_queryset(request))

    @admin.display(description="records furnished", ordering="records_furnished")
    def records_furnished(self, obj: Member) -> int:
        return getattr(obj, "records_furnished", 0)

    @admin.display(description="inquiries made", ordering="inquiries_made")
    def inquiries_made(self, obj: Member) -> int:
        return getattr(obj, "inquiries_made", 0)

    @admin.display(description="last furnished", ordering="last_furnished_at")
    def last_furnished(self, obj: Member) -> str:
        return when(getattr(obj, "last_furnished_at", None))

    @admin.display(description="reciprocity")
    def reciprocity(self, obj: Member) -> str:
        """Whether the member may query under the reciprocity rule (exchange.models.reciprocity_cutoff)."""
        cutoff = reciprocity_cutoff(timezone.now())
        if cutoff is None:
            return "rule off"
        last = getattr(obj, "last_furnished_at", None)
        if last is not None and last >= cutoff:
            days = settings.EXCHANGE_RECIPROCITY_DAYS
            return format_html('<span style="color:#2e7d32">✓ furnished within {} days</span>', days)
        return mark_safe('<span style="color:#c62828;font-weight:bold">✗ may not query</span>')


admin.site.unregister(Member)
admin.site.register(Member, ExchangeMemberAdmin)
