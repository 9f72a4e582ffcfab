"""`/api/v1/evidence-requests` (scope `query`): the exchange's spot checks of your consents. List
them, and answer one with the signed authorisation document itself as the raw body; the exchange
hashes it as it streams in and keeps only the hash, the size and the verdict.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from audit.actions import Action
from core.pagination import CursorPage
from core.problems import ApiError, Malformed
from exchange import evidence, services
from exchange.api.base import Choice, MemberView, field_error
from exchange.models import EvidenceRequest, EvidenceStatus
from members.models import Scope

# A document, not a request: JSON and forms are what a mistaken client would send.
REFUSED_MEDIA_TYPES = ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")


class AnyDocument(BaseParser):
    """Any media type: the view streams the body itself (never parsed, never stored)."""

    media_type = "*/*"

    def parse(self, stream, media_type=None, parser_context=None):  # pragma: no cover - never called
        raise Malformed("The body is read by the view.")


class EvidencePage(CursorPage):
    ordering = ("-opened_at", "-id")


class EvidenceRequestOutput(serializers.Serializer):
    id = serializers.UUIDField()
    inquiry_id = serializers.UUIDField()
    consent_id = serializers.UUIDField(allow_null=True)
    purpose = serializers.CharField()
    opened_at = serializers.DateTimeField()
    due_at = serializers.DateTimeField()
    status = Choice(
        choices=EvidenceStatus.choices,
        source="current_status",
        help_text="`overdue` as soon as `due_at` has passed unanswered",
    )
    answered_at = serializers.DateTimeField(allow_null=True)


def _body_reader(request):
    """read(n) over the body: Django's bounded stream with Content-Length, else the de-chunked input."""
    django_request = request._request
    if django_request.META.get("CONTENT_LENGTH"):
        return django_request.read
    if "chunked" in django_request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
        return django_request.META["wsgi.input"].read
    return lambda size: b""


def _declared_size(request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


class EvidenceRequestListView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "evidence_requests"

    @extend_schema(
        summary="List the evidence requests the exchange sent you, newest first",
        description=(
            "The exchange's spot checks of your consents: answer each open one before `due_at`. Errors: "
            "403 `scope_required` without the `query` scope; 422 `validation_failed` (status, page size)."
        ),
        parameters=[OpenApiParameter("status", str, enum=EvidenceStatus.values, required=False)],
        responses=EvidenceRequestOutput(many=True),
    )
    def get(self, request):
        queryset = EvidenceRequest.objects.filter(member=request.user)
        wanted = request.query_params.get("status")
        if wanted is not None:
            if wanted not in EvidenceStatus.values:
                raise field_error("status", f"must be one of {', '.join(EvidenceStatus.values)}")
            queryset = queryset.with_status(wanted)  # as of now: an open request past due_at is overdue
        page, respond = self.paginate(queryset, EvidenceRequestOutput, EvidencePage())
        services.audit_read(self.caller, Action.EVIDENCE_LIST, count=len(page), status=wanted or "")
        return respond()


class EvidenceRequestDetailView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "evidence_request"

    @extend_schema(
        summary="One of your evidence requests",
        description="Errors: 403 `scope_required` without the `query` scope; 404 `not_found` (also another member's).",
        responses=EvidenceRequestOutput,
    )
    def get(self, request, evidence_request_id):
        found = evidence.evidence_request_get(
            caller=self.caller, request_id=evidence_request_id, action=Action.EVIDENCE_READ
        )
        services.audit_read(
            self.caller,
            Action.EVIDENCE_READ,
            object_type="evidence_request",
            object_id=found.pk,
            subject_token=found.subject_token,
        )
        return Response(EvidenceRequestOutput(found).data)


class EvidenceAnswerView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "evidence_answer"
    parser_classes = [AnyDocument]

    @extend_schema(
        summary="Answer an evidence request with the signed authorisation document (raw body, at most 20 MiB)",
        description=(
            "The body is the document itself, in its own media type (for example `application/pdf`), not "
            "JSON or a form. The exchange hashes it while it streams in: equal to the consent's "
            "`evidence_sha256` gives `verified`, else `mismatch`. The document is never stored. One answer only."
        ),
        request={"application/octet-stream": bytes},
        responses={
            200: EvidenceRequestOutput,
            409: OpenApiResponse(description="already_answered"),
            413: OpenApiResponse(description="payload_too_large"),
            415: OpenApiResponse(description="unsupported_media_type"),
        },
    )
    def post(self, request, evidence_request_id):
        media_type = (request.content_type or "").partition(";")[0].strip().lower()
        if media_type in REFUSED_MEDIA_TYPES or media_type.endswith("+json"):
            services.audit_denied(
                self.caller,
                Action.EVIDENCE_ANSWER,
                "unsupported_media_type",
                object_type="evidence_request",
                object_id=str(services.parse_id(evidence_request_id) or ""),  # never the raw path text
            )
            raise ApiError(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the document itself as the body, in its own media type (e.g. application/pdf), "
                "not JSON or a form.",
            )
        answered = evidence.evidence_answer(
            caller=self.caller,
            request_id=evidence_request_id,
            read=_body_reader(request),
            declared_size=_declared_size(request),
        )
        return Response(EvidenceRequestOutput(answered).data)
