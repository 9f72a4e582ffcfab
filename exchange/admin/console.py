"""The console's shared plumbing: read-only model pages whose changes go through services, masked
encrypted fields with an audited reveal, and permission checks that audit a refusal before the 403.

Nothing here saves a model directly. Encrypted fields are shown masked and never decrypted for a
list; revealing one value needs `exchange.reveal_personal_data` and writes an `admin.reveal` audit
event naming the object and field (never the value).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import BooleanField, ExpressionWrapper, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from audit.actions import Action
from audit.actors import staff_actor
from audit.console import AuditedPages
from audit.services import audit_denied, audit_write
from core.console import ReadOnlyMixin
from core.problems import ApiError
from members.roles import REVEAL_PERMISSION

MASK = "••••"
DUE_SOON = timedelta(days=3)


def audit_refusal(request: HttpRequest, action: str, why: str, *, obj: Any = None, **details) -> None:
    """A console action refused for lack of permission, on record before the 403."""
    audit_denied(
        action=action,
        actor=staff_actor(request.user.get_username()),
        why=why,
        object_type=obj._meta.model_name if obj is not None else "",
        object_id=obj.pk if obj is not None else "",
        **details,
    )


def _present(field: str) -> ExpressionWrapper:
    """Whether an encrypted column holds a value, asked of the database (nothing decrypted)."""
    return ExpressionWrapper(Q(**{f"{field}__isnull": False}), output_field=BooleanField())


def short(value: Any) -> str:
    return str(value)[:8]


@dataclass(frozen=True)
class Tool:
    url: str
    label: str


class ServiceOnlyAdmin(ReadOnlyMixin, AuditedPages, admin.ModelAdmin):
    """Lists and read-only pages (each view audited); changes only through the views of each admin,
    which call services."""

    change_form_template = "admin/exchange/console_change_form.html"
    encrypted_fields: tuple[str, ...] = ()  # revealable one at a time, audited
    show_full_result_count = False  # no count(*) over the whole table on every page
    list_per_page = 50
    actions = None

    @admin.display(description="id", ordering="id")
    def short_id(self, obj: models.Model) -> str:
        return short(obj.pk)

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
            audit_refusal(
                request, Action.ADMIN_REVEAL, "unknown_field" if self.has_view_permission(request) else "view"
            )
            raise PermissionDenied
        obj = self._object_or_404(request, object_id)
        if not request.user.has_perm(REVEAL_PERMISSION):
            audit_refusal(request, Action.ADMIN_REVEAL, "permission", obj=obj, field=field)
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
                    action=Action.ADMIN_REVEAL,
                    actor=staff_actor(request.user.get_username()),
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


WITHDRAW = ConsoleAction(
    "exchange.change_record", Action.RECORD_WITHDRAW, "Withdrawing a record needs the operator's role."
)
OPEN_DISPUTE = ConsoleAction(
    "exchange.add_dispute", Action.DISPUTE_OPEN, "Opening a dispute needs the operator's role."
)
RESOLVE_DISPUTE = ConsoleAction(
    "exchange.change_dispute", Action.DISPUTE_RESOLVE, "Resolving a dispute needs the operator's role."
)


def error_text(exc: ApiError) -> str:
    errors = getattr(exc, "errors", None) or []
    return "; ".join(f"{e['field']} {e['message']}" for e in errors) or str(exc.detail)
