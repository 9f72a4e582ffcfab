"""Access rules for API calls: an active member, and the scope the endpoint needs."""

from __future__ import annotations

from rest_framework import exceptions, permissions

from audit.actions import Action
from audit.services import audit_denied
from members import limits


class ScopeRequired(exceptions.PermissionDenied):
    default_code = "scope_required"


class MemberSuspended(exceptions.PermissionDenied):
    default_code = "member_suspended"


def _deny(request, view, why: str) -> None:
    audit_denied(
        action=Action.API_ACCESS,
        actor=request.user.actor,
        why=why,
        member_code=request.user.code,
        endpoint=getattr(view, "audit_name", type(view).__name__),
        method=request.method,
    )


class IsActiveMember(permissions.BasePermission):
    """Authenticated with a key, member not suspended, and the key holds the view's scope.

    A view names its scope in `required_scope` (one for all methods) or
    `required_scopes` (a dict by HTTP method); a view that names none accepts any scope.
    """

    def has_permission(self, request, view) -> bool:
        if request.auth is None:
            # No key at all: a failed authentication too, limited and audited per address.
            throttled = limits.auth_failure(request, why="missing")
            raise throttled or exceptions.NotAuthenticated()
        member = request.user
        # The member's rate first: DRF checks permissions before throttles, and a refused call
        # (suspended, wrong scope) must count too.
        limits.rate_check(member, key_prefix=request.auth.prefix)
        if not member.is_active:
            _deny(request, view, "member_suspended")
            raise MemberSuspended("This member is suspended; contact the exchange.")
        scope = getattr(view, "required_scopes", {}).get(request.method, getattr(view, "required_scope", None))
        if scope and not request.auth.has_scope(scope):
            _deny(request, view, "scope_required")
            raise ScopeRequired(f"This call needs an API key with the '{scope}' scope.")
        return True
