"""The audit log in the admin console: read-only for everyone, with chain status, a full
verification and a signed export download for compliance officers."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import FileResponse, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from audit.actions import Action
from audit.actors import staff_actor
from audit.chain import EXPORT_FIELDS
from audit.console import AuditedPages
from audit.export import FORMATS, ExportError, export_events, manifest_path
from audit.models import AuditEvent, Checkpoint, Outcome
from audit.services import audit_write
from audit.verify import chain_status, verify_chain
from core.console import ReadOnlyMixin

EXPORT_PERMISSION = "audit.export_auditevent"


class ReadOnlyAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Nobody edits history from the console, superusers included."""


class ExportForm(forms.Form):
    since = forms.DateField(required=False, help_text="first day included (UTC)")
    until = forms.DateField(required=False, help_text="last day included (UTC)")
    member = forms.CharField(required=False, max_length=32, help_text="member code")
    format = forms.ChoiceField(choices=[(f, f) for f in FORMATS], initial="jsonl")


class MemberCodeFilter(admin.AllValuesFieldListFilter):
    """Member codes, with the events of no member (staff, commands) named rather than blank."""

    def choices(self, changelist):
        for choice in super().choices(changelist):
            yield {**choice, "display": choice["display"] or "(no member)"}


@admin.register(AuditEvent)
class AuditEventAdmin(AuditedPages, ReadOnlyAdmin):
    audit_list_action = Action.AUDIT_BROWSE
    list_display = ("seq", "occurred_at", "action", "outcome", "member_code", "actor", "object_type", "object_id")
    list_filter = ("occurred_at", "action", "outcome", ("member_code", MemberCodeFilter))
    # Exact matches only: tokens and request ids are looked up, never browsed by fragment.
    search_fields = ("=subject_token", "=request_id")
    ordering = ("-id",)
    date_hierarchy = "occurred_at"
    show_full_result_count = False  # a count(*) over millions of events on every page is wasted work
    list_per_page = 100
    fields = EXPORT_FIELDS  # every column, in the chain's order, as an export line has them
    readonly_fields = fields
    actions = None

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("verify/", wrap(self.verify_view), name="audit_auditevent_verify"),
            path("export/", wrap(self.export_view), name="audit_auditevent_export"),
            *super().get_urls(),
        ]

    def changelist_view(self, request, extra_context=None):
        # Browsing the log reads it: that too leaves a trace (AuditedPages, as audit.browse).
        extra_context = {
            **(extra_context or {}),
            "chain_status": chain_status(),
            "can_export": request.user.has_perm(EXPORT_PERMISSION),
        }
        return super().changelist_view(request, extra_context=extra_context)

    def _require_export_permission(self, request: HttpRequest) -> None:
        if not request.user.has_perm(EXPORT_PERMISSION):
            raise PermissionDenied(
                "Verifying the chain and exporting the audit log need the compliance officer's role."
            )

    def verify_view(self, request: HttpRequest) -> HttpResponse:
        self._require_export_permission(request)
        report = verify_chain()
        with transaction.atomic():
            audit_write(
                action=Action.AUDIT_VERIFY,
                actor=staff_actor(request.user.get_username()),
                outcome=Outcome.OK if report.ok else Outcome.ERROR,
                details={"events": report.events, "checkpoints": report.checkpoints},
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Audit chain verification",
            "report": report,
        }
        return TemplateResponse(request, "admin/audit/verify.html", context)

    def export_view(self, request: HttpRequest) -> HttpResponse:
        self._require_export_permission(request)
        form = ExportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                return self._export_response(request, data)
            except ExportError as exc:
                messages.error(request, str(exc))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Download an audit export",
            "form": form,
            "changelist_url": reverse("admin:audit_auditevent_changelist"),
        }
        return TemplateResponse(request, "admin/audit/export.html", context)

    def _export_response(self, request: HttpRequest, data: dict) -> FileResponse:
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        name = f"audit-export-{stamp}.{data['format']}"
        bundle = tempfile.TemporaryFile(suffix=".zip")  # FileResponse closes it
        with tempfile.TemporaryDirectory() as folder:
            output = Path(folder) / name
            export_events(
                output=output,
                fmt=data["format"],
                since=data["since"].isoformat() if data["since"] else None,
                until=data["until"].isoformat() if data["until"] else None,
                member=data["member"] or None,
                actor=staff_actor(request.user.get_username()),
            )
            with zipfile.ZipFile(bundle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.write(output, arcname=name)
                archive.write(manifest_path(output), arcname=manifest_path(name).name)
        bundle.seek(0)
        return FileResponse(bundle, as_attachment=True, filename=f"audit-export-{stamp}.zip")


@admin.register(Checkpoint)
class CheckpointAdmin(AuditedPages, ReadOnlyAdmin):
    list_display = ("seq", "signed_at", "hash", "public_key")
    ordering = ("-seq", "-id")
    show_full_result_count = False
