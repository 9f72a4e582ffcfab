"""The member API for disputes: file one from a line of your inquiry, list, read and answer them.

Scopes (the contract: filing disputes is `query`, answering them is `submit`): a key sees
the disputes its member must answer only if it holds `submit`, and those its member filed
only if it holds `query`; a key with both sees both. The furnishing member alone sees
`record_id`; the filer sees its `inquiry_id` and `line` instead, and nothing that names the
furnisher.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from audit.actions import Action
from core.pagination import CursorPage
from core.problems import Forbidden
from exchange import disputes as services
from exchange.api.base import Choice, MemberView, StrictSerializer, TextField, field_error
from exchange.models import DisputeOutcome, DisputeStatus
from exchange.services import audit_denied as deny
from exchange.services import audit_read
from members.models import Scope

# --- shapes ----------------------------------------------------------------------------------


@extend_schema_field({"type": "string", "format": "uuid"})
class IdText(serializers.CharField):
    """An object id taken as text: one that is not a UUID names nothing, so it is 404."""


class DisputeInput(StrictSerializer):
    """A line of a report you pulled, and the borrower's reason."""

    inquiry_id = IdText(max_length=64)
    line = serializers.IntegerField(min_value=0, help_text="the `line` of the record in the inquiry's answer")
    reason = TextField(max_length=services.MAX_TEXT, trim_whitespace=True)


class ResolveInput(StrictSerializer):
    """Your answer: `corrected` needs a new version of the record submitted after the dispute
    opened; `deleted` withdraws the record; `upheld` keeps it as it is."""

    outcome = Choice(choices=DisputeOutcome.choices)
    note = TextField(
        max_length=services.MAX_TEXT, trim_whitespace=True, required=False, allow_null=True, allow_blank=True
    )


class DisputeOutput(serializers.Serializer):
    """One dispute as its furnisher (with `record_id`) or its filer (with `inquiry_id`, `line`) sees it."""

    id = serializers.UUIDField()
    status = Choice(choices=DisputeStatus.choices)
    outcome = Choice(choices=DisputeOutcome.choices, allow_null=True)
    reason = serializers.CharField()
    note = serializers.CharField(allow_null=True)
    opened_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    record_id = serializers.UUIDField(required=False, help_text="only to the member that must answer")
    inquiry_id = serializers.UUIDField(required=False, allow_null=True, help_text="only to the filer")
    line = serializers.IntegerField(required=False, allow_null=True, help_text="only to the filer")

    def to_representation(self, dispute):
        caller, roles = self.context["caller"], self.context["roles"]
        data = {
            "id": str(dispute.pk),
            "status": dispute.status,
            "outcome": dispute.outcome or None,
            "reason": dispute.reason,
            "note": dispute.note,
            "opened_at": serializers.DateTimeField().to_representation(dispute.opened_at),
            "due_at": serializers.DateTimeField().to_representation(dispute.due_at),
            "resolved_at": (
                serializers.DateTimeField().to_representation(dispute.resolved_at) if dispute.resolved_at else None
            ),
        }
        if services.is_furnisher_view(dispute, caller=caller, roles=roles):
            data["record_id"] = str(dispute.record_id)
        else:
            data["inquiry_id"] = str(dispute.inquiry_id) if dispute.inquiry_id else None
            data["line"] = dispute.line
        return data


class DisputePage(CursorPage):
    ordering = ("-opened_at", "-id")


# --- views -----------------------------------------------------------------------------------


class DisputeViewMixin(MemberView):
    @property
    def roles(self) -> services.Roles:
        return services.Roles.of(self.request.auth.scope_list)

    def render(self, dispute, **kwargs) -> Response:
        context = {"caller": self.caller, "roles": self.roles}
        return Response(DisputeOutput(dispute, context=context).data, **kwargs)


class DisputeListCreateView(DisputeViewMixin):
    """`GET` lists what the caller filed or must answer; `POST` files one (scope `query`).

    `GET` accepts a key with either scope, and each scope opens one side: `submit` the
    disputes the member must answer (the furnisher's `?status=open` work list of the
    contract), `query` the disputes the member filed. Asking for a side the key cannot open
    (`?role=to_answer` without `submit`, `?role=filed` without `query`) is a 403
    `scope_required`, rather than a silently empty list.
    """

    required_scopes = {"POST": Scope.QUERY}
    audit_name = "disputes"

    @extend_schema(
        summary="List the disputes you filed or must answer, newest first",
        description=(
            "A key with the `submit` scope sees the disputes on your records (to answer before "
            "`due_at`), one with `query` those you filed; `role` narrows to one side. Errors: 403 "
            "`scope_required` (a role your key's scopes cannot see), 422 `validation_failed`."
        ),
        parameters=[
            OpenApiParameter("status", str, enum=DisputeStatus.values),
            OpenApiParameter(
                "role",
                str,
                enum=["to_answer", "filed"],
                description="only the disputes you must answer (submit scope) or only those you filed (query scope)",
            ),
        ],
        responses=DisputeOutput(many=True),
    )
    def get(self, request):
        params = request.query_params
        roles = self.roles
        role = params.get("role")
        if role is not None:
            if role not in ("to_answer", "filed"):
                raise field_error("role", "must be one of to_answer, filed")
            scope = Scope.SUBMIT if role == "to_answer" else Scope.QUERY
            if scope not in request.auth.scope_list:
                deny(self.caller, Action.DISPUTE_LIST, "scope_required", role=role)
                raise Forbidden("scope_required", f"role={role} needs an API key with the '{scope}' scope.")
            roles = services.Roles(furnisher=role == "to_answer", filer=role == "filed")
        queryset = services.disputes_visible(caller=self.caller, roles=roles)
        if "status" in params:
            if params["status"] not in DisputeStatus.values:
                raise field_error("status", f"must be one of {', '.join(DisputeStatus.values)}")
            queryset = queryset.filter(status=params["status"])
        paginator = DisputePage()
        page = paginator.paginate_queryset(queryset, request, view=self)
        data = DisputeOutput(page, many=True, context={"caller": self.caller, "roles": roles}).data
        audit_read(self.caller, Action.DISPUTE_LIST, count=len(page), status=params.get("status", ""))
        return paginator.get_paginated_response(data)

    @extend_schema(
        summary="Dispute a line of a report you pulled",
        description=(
            "Opens a dispute for the borrower (scope `query`); the furnisher must answer before "
            "`due_at`, and meanwhile the record shows `disputed`. Errors: 404 `not_found` (no such "
            "inquiry of yours), 422 `validation_failed` (such as a `line` the report does not have, "
            "or a record since withdrawn)."
        ),
        request=DisputeInput,
        responses={201: DisputeOutput},
    )
    def post(self, request):
        data = self.validated(DisputeInput, action=Action.DISPUTE_OPEN)
        dispute = services.dispute_open(caller=self.caller, **data)
        dispute.furnisher_id = None  # the filer's view, whoever furnished the record
        return self.render(dispute, status=status.HTTP_201_CREATED)


class DisputeDetailView(DisputeViewMixin):
    """One dispute, to either party (with the scope of its side); anyone else gets 404."""

    audit_name = "dispute"

    @extend_schema(
        summary="One dispute you filed or must answer",
        description="Errors: 404 `not_found` (also for a dispute that is not yours to see).",
        responses=DisputeOutput,
    )
    def get(self, request, dispute_id):
        dispute = services.dispute_get(caller=self.caller, roles=self.roles, dispute_id=dispute_id)
        audit_read(
            self.caller,
            Action.DISPUTE_READ,
            object_type="dispute",
            object_id=dispute.pk,
            subject_token=dispute.subject_token,
        )
        return self.render(dispute)


class DisputeResolveView(DisputeViewMixin):
    """The furnisher's answer. A second answer is 409 `conflict`: a resolution is final."""

    required_scope = Scope.SUBMIT
    audit_name = "dispute_resolve"

    @extend_schema(
        operation_id="disputes_resolve",
        summary="Answer a dispute on one of your records",
        description=(
            "Scope `submit`. Errors: 404 `not_found`, 409 `conflict` (answered before: an answer is "
            "final), 422 `validation_failed` (such as `corrected` without a newer version)."
        ),
        request=ResolveInput,
        responses=DisputeOutput,
    )
    def post(self, request, dispute_id):
        data = self.validated(ResolveInput, action=Action.DISPUTE_RESOLVE)
        dispute = services.dispute_resolve(caller=self.caller, roles=self.roles, dispute_id=dispute_id, **data)
        return self.render(dispute)
