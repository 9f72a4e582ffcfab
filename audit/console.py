"""Console pages that show exchange or audit data leave a trace: each list and object page a staff
user opens (GET, answered 200) writes one audit event naming the page, its filters, and its search
when that is not personal data (a subject token or a member code is fine; a raw identifier never);
a page refused for lack of permission writes a denied one."""

from __future__ import annotations

import re
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from audit.actions import Action
from audit.actors import staff_actor
from audit.services import audit_denied, audit_write

_TOKEN = re.compile(r"[0-9a-f]{64}")
_PAGING = {"p", "o", "q", "_changelist_filters", "_to_field", "_popup"}


def _listed(request, search: str) -> dict[str, Any]:
    """The list's filters, and its search where `search` says it may be recorded: `"token"` (only
    a subject token is kept; anything else is noted as withheld) or `"text"` (not personal)."""
    details: dict[str, Any] = {}
    filters = {k: v[:64] for k, v in request.GET.items() if k not in _PAGING}
    if filters:
        details["filters"] = filters
    query = request.GET.get("q", "").strip()
    if query:
        if search == "text" or _TOKEN.fullmatch(query.lower()):
            details["search"] = query[:64]
        else:
            details["search_withheld"] = True  # could be personal data typed into the box
    return details


class AuditedPages:
    """Mixin for a ModelAdmin (first among its bases): audits its list and object pages."""

    audit_search = "token"
    audit_list_action = Action.CONSOLE_LIST
    audit_view_action = Action.CONSOLE_VIEW

    def audit_scope(self, obj) -> dict[str, Any]:
        """member_code and subject_token of the audit events about `obj`."""
        return {"member_code": "", "subject_token": getattr(obj, "subject_token", "")}

    def _audit_page(self, request, action: str, **fields) -> None:
        with transaction.atomic():
            audit_write(
                action=action,
                actor=staff_actor(request.user.get_username()),
                object_type=self.opts.model_name,
                **fields,
            )

    def _refused(self, request, action: str, object_id: str = "") -> None:
        audit_denied(
            action=action,
            actor=staff_actor(request.user.get_username()),
            why="permission",
            object_type=self.opts.model_name,
            object_id=object_id[:64],
        )

    def changelist_view(self, request, extra_context=None):
        try:
            response = super().changelist_view(request, extra_context=extra_context)
        except PermissionDenied:
            self._refused(request, self.audit_list_action)
            raise
        if request.method == "GET" and response.status_code == 200:
            self._audit_page(request, self.audit_list_action, details=_listed(request, self.audit_search))
        return response

    def change_view(self, request, object_id, form_url="", extra_context=None):
        try:
            response = super().change_view(request, object_id, form_url, extra_context=extra_context)
        except PermissionDenied:
            self._refused(request, self.audit_view_action, str(object_id))
            raise
        obj = (getattr(response, "context_data", None) or {}).get("original")
        if request.method == "GET" and response.status_code == 200 and obj is not None:
            self._audit_page(request, self.audit_view_action, object_id=obj.pk, **self.audit_scope(obj))
        return response
