"""The API's exception handler: core.problems' problem+json answer, and an audit event for any
refusal of an authenticated member that no service put on record: a 403, 404 or 409 (an input
error, 400/413/415/422, is not a refusal; 401 and 429 are audited aggregated by members/limits.py)."""

from __future__ import annotations

from rest_framework.response import Response

from audit.actions import Action
from audit.actors import member_actor
from audit.services import audit_denied
from core import problems
from core.context import denial_recorded
from members.models import Member

_REFUSALS = (403, 404, 409)


def exception_handler(exc: Exception, context: dict) -> Response:
    response = problems.exception_handler(exc, context)
    request = context.get("request")
    # Read what authentication left on the request; never authenticate again from here.
    member, key = getattr(request, "_user", None), getattr(request, "_auth", None)
    if (
        response is not None
        and response.status_code in _REFUSALS
        and isinstance(member, Member)
        and key is not None
        and not denial_recorded()
    ):
        view = context.get("view")
        audit_denied(
            action=Action.API_ACCESS,
            actor=member_actor(member.code, key.prefix),
            why=response.data.get("code", "refused") if isinstance(response.data, dict) else "refused",
            member_code=member.code,
            endpoint=getattr(view, "audit_name", type(view).__name__),
            method=request.method,
            status=response.status_code,
        )
    return response
