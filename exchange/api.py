"""The member API for records, consents and inquiries: parse, call one service, render."""

from __future__ import annotations

from datetime import UTC, datetime, time

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.fields import DateTimeField
from rest_framework.response import Response
from rest_framework.views import APIView

from core.pagination import CursorPage
from core.problems import Invalid, Malformed
from exchange import records, services
from exchange.idempotency import idempotent
from exchange.models import Consent, Inquiry, Record, RecordStatus
from exchange.serializers import (
    ConsentInput,
    ConsentOutput,
    InquiryInput,
    InquiryOutput,
    RecordBatchInput,
    RecordBatchResult,
    RecordOutput,
    RecordVersionOutput,
    WithdrawInput,
)
from exchange.validation import parse_date, parse_datetime
from members.models import Scope, api_actor

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="Retrying with the same key and body returns the first response (kept at least 24 hours).",
)


class MemberView(APIView):
    """Base for member endpoints: the caller (member + audit actor) and validated input."""

    @property
    def caller(self) -> services.Caller:
        request = self.request
        return services.Caller(member=request.user, actor=api_actor(request.user, request.auth))

    def validated(self, serializer_class, data=None):
        data = self.request.data if data is None else data
        if not isinstance(data, dict):
            raise Malformed("The body must be a JSON object.")
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    def paginate(self, queryset, serializer_class):
        paginator = CursorPage()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return page, lambda: paginator.get_paginated_response(serializer_class(page, many=True).data)


def _filter_error(field: str, message: str) -> Invalid:
    return Invalid([{"index": None, "field": field, "message": message}])


# --- records ---------------------------------------------------------------------------------


class RecordListCreateView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "records"

    @extend_schema(
        summary="List your own records, newest first",
        parameters=[
            OpenApiParameter("status", str, enum=RecordStatus.values),
            OpenApiParameter("member_reference", str),
            OpenApiParameter("updated_since", str, description="ISO date or date-time"),
            OpenApiParameter("page_size", int),
        ],
        responses=RecordOutput(many=True),
    )
    def get(self, request):
        params = request.query_params
        queryset = Record.objects.with_disputed().filter(member=request.user)
        if "status" in params:
            if params["status"] not in RecordStatus.values:
                raise _filter_error("status", f"must be one of {', '.join(RecordStatus.values)}")
            queryset = queryset.filter(status=params["status"])
        if "member_reference" in params:
            queryset = queryset.filter(
                reference_index=records.reference_index(request.user, params["member_reference"])
            )
        if "updated_since" in params:
            queryset = queryset.filter(updated_at__gte=_since(params["updated_since"]))
        page, respond = self.paginate(queryset, RecordOutput)
        services.audit_read(self.caller, "record.list", count=len(page))
        return respond()

    @extend_schema(
        summary="Submit 1 to 1000 records, all or nothing",
        request=RecordBatchInput,
        responses={201: RecordBatchResult},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        return idempotent(request, request.user, lambda: self._submit(request))

    def _submit(self, request):
        data = request.data
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise Malformed('The body must be a JSON object {"records": [...]}.')
        unknown = sorted(set(data) - {"records"})
        if unknown:
            raise _filter_error(unknown[0][:64], "is not a known field")
        count = len(data["records"])
        if not 1 <= count <= 1000:
            raise _filter_error("records", f"must hold 1 to 1000 records, not {count}")
        results = records.records_submit(caller=self.caller, raw_records=data["records"])
        return Response({"results": results}, status=status.HTTP_201_CREATED)


def _since(value: str) -> datetime:
    try:
        if len(value) == 10:
            return datetime.combine(parse_date(value), time.min, tzinfo=UTC)
        return parse_datetime(value)
    except ValueError as exc:
        raise _filter_error("updated_since", str(exc)) from None


class RecordDetailView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "record"

    @extend_schema(summary="One of your records", responses=RecordOutput)
    def get(self, request, record_id):
        record = records.record_get(caller=self.caller, record_id=record_id)
        services.audit_read(
            self.caller, "record.read", object_type="record", object_id=record.pk, subject_token=record.subject_token
        )
        return Response(RecordOutput(record).data)


class RecordHistoryView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "record_history"

    @extend_schema(
        summary="Every version of one of your records, oldest first", responses=RecordVersionOutput(many=True)
    )
    def get(self, request, record_id):
        record = records.record_get(caller=self.caller, record_id=record_id, action="record.history")
        versions = list(record.versions.order_by("version"))
        services.audit_read(
            self.caller,
            "record.history",
            object_type="record",
            object_id=record.pk,
            subject_token=record.subject_token,
            versions=len(versions),
        )
        return Response({"results": RecordVersionOutput(versions, many=True).data, "next": None})


class RecordWithdrawView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "record_withdraw"

    @extend_schema(
        summary="Withdraw one of your records from every inquiry", request=WithdrawInput, responses=RecordOutput
    )
    def post(self, request, record_id):
        reason = self.validated(WithdrawInput)["reason"]
        record = records.record_withdraw(caller=self.caller, record_id=record_id, reason=reason)
        return Response(RecordOutput(record).data)


# --- consents --------------------------------------------------------------------------------


class ConsentListCreateView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "consents"

    @extend_schema(summary="List the consents you registered", responses=ConsentOutput(many=True))
    def get(self, request):
        page, respond = self.paginate(Consent.objects.filter(member=request.user), ConsentOutput)
        services.audit_read(self.caller, "consent.list", count=len(page))
        return respond()

    @extend_schema(
        summary="Register a borrower's consent",
        request=ConsentInput,
        responses={201: ConsentOutput},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        return idempotent(request, request.user, lambda: self._register(request))

    def _register(self, request):
        data = self.validated(ConsentInput)
        consent = services.consent_register(caller=self.caller, **data)
        return Response(ConsentOutput(consent).data, status=status.HTTP_201_CREATED)


class ConsentDetailView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "consent"

    @extend_schema(summary="One of your consents", responses=ConsentOutput)
    def get(self, request, consent_id):
        consent = services.consent_get(caller=self.caller, consent_id=consent_id)
        services.audit_read(
            self.caller,
            "consent.read",
            object_type="consent",
            object_id=consent.pk,
            subject_token=consent.subject_token,
        )
        return Response(ConsentOutput(consent).data)


class ConsentRevokeView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "consent_revoke"

    @extend_schema(summary="Revoke one of your consents", request=None, responses=ConsentOutput)
    def post(self, request, consent_id):
        consent = services.consent_revoke(caller=self.caller, consent_id=consent_id)
        return Response(ConsentOutput(consent).data)


# --- inquiries -------------------------------------------------------------------------------


class InquiryListCreateView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "inquiries"

    @extend_schema(summary="List your inquiries", responses=InquiryOutput(many=True))
    def get(self, request):
        page, respond = self.paginate(Inquiry.objects.filter(member=request.user), InquiryOutput)
        services.audit_read(self.caller, "inquiry.list", count=len(page))
        return respond()

    @extend_schema(
        summary="Query a borrower's summary (needs an active consent)",
        request=InquiryInput,
        responses={200: InquiryOutput},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        return idempotent(request, request.user, lambda: self._inquire(request))

    def _inquire(self, request):
        data = self.validated(InquiryInput)
        inquiry = services.inquiry_create(caller=self.caller, **data)
        return Response(inquiry_body(inquiry), status=status.HTTP_200_OK)


_DATETIME = DateTimeField()


def inquiry_body(inquiry: Inquiry) -> dict:
    """`InquiryOutput(inquiry).data` for a fresh inquiry, without the serializer's per-field work:
    the stored result is already in its output form (tests hold the two equal)."""
    result = inquiry.result
    return {
        "id": str(inquiry.id),
        "created_at": _DATETIME.to_representation(inquiry.created_at),
        "purpose": inquiry.purpose,
        "consent_id": str(inquiry.consent_id) if inquiry.consent_id else None,
        "subject_found": result["subject_found"],
        "summary": result["summary"],
        "records": result["records"],
        "inquiries": result["inquiries"],
    }


class InquiryDetailView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "inquiry"

    @extend_schema(summary="One of your inquiries, as answered", responses=InquiryOutput)
    def get(self, request, inquiry_id):
        inquiry = services.inquiry_get(caller=self.caller, inquiry_id=inquiry_id)
        services.audit_read(
            self.caller,
            "inquiry.read",
            object_type="inquiry",
            object_id=inquiry.pk,
            subject_token=inquiry.subject_token,
        )
        return Response(InquiryOutput(inquiry).data)
