"""`/api/v1/inquiries` (scope `query`): a borrower's multi-lender summary, under an active consent."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers, status
from rest_framework.fields import DateTimeField
from rest_framework.response import Response

from audit.actions import Action
from exchange import inquiries, services
from exchange.api.base import (
    IDEMPOTENCY_HEADER,
    SUBJECT_EXAMPLE,
    Choice,
    CurrencyText,
    MemberView,
    MoneyText,
    StrictSerializer,
    SubjectField,
)
from exchange.idempotency import idempotent
from exchange.models import Inquiry, Product, Purpose, RecordStatus
from members.models import Scope

# --- shapes ----------------------------------------------------------------------------------


class InquiryInput(StrictSerializer):
    """Whom to look up, under which of your consents, for which purpose (the consent's own)."""

    subject = SubjectField()
    consent_id = serializers.UUIDField()
    purpose = Choice(choices=Purpose.choices)


class MoneyOutput(serializers.Serializer):
    currency = CurrencyText()
    amount = MoneyText()


class SummaryOutput(serializers.Serializer):
    open_delinquencies = serializers.IntegerField()
    institutions_with_open = serializers.IntegerField()
    worst_days_past_due = serializers.IntegerField()
    total_amount_overdue = MoneyOutput(many=True)
    settled_count = serializers.IntegerField()
    written_off_count = serializers.IntegerField()
    max_days_past_due_24m = serializers.IntegerField()
    last_delinquent_since = serializers.DateField(allow_null=True)
    disputed_count = serializers.IntegerField()


class LineOutput(serializers.Serializer):
    """One record of the subject, from any member, without the member's identity or reference."""

    line = serializers.IntegerField(min_value=0, help_text="what a dispute names")
    product = Choice(choices=Product.choices)
    status = Choice(choices=RecordStatus.choices)
    days_past_due = serializers.IntegerField(min_value=0)
    currency = CurrencyText()
    amount_overdue = MoneyText()
    opened_on = serializers.DateField()
    delinquent_since = serializers.DateField()
    as_of = serializers.DateField()
    settled_on = serializers.DateField(allow_null=True)
    disputed = serializers.BooleanField()
    reported_by_you = serializers.BooleanField()


class InquiryCountsOutput(serializers.Serializer):
    last_7_days = serializers.IntegerField()
    last_30_days = serializers.IntegerField()
    last_90_days = serializers.IntegerField()
    institutions_last_90_days = serializers.IntegerField()


class InquiryOutput(serializers.Serializer):
    """A borrower's report, as answered when the inquiry was made."""

    id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    purpose = Choice(choices=Purpose.choices)
    consent_id = serializers.UUIDField(allow_null=True)
    subject_found = serializers.BooleanField(source="result.subject_found")
    summary = SummaryOutput(source="result.summary")
    records = LineOutput(many=True, source="result.records")
    inquiries = InquiryCountsOutput(source="result.inquiries")


_DATETIME = DateTimeField()


def inquiry_body(inquiry: Inquiry) -> dict:
    """`InquiryOutput(inquiry).data` for a fresh inquiry: the stored result is already in its
    output form, so only the envelope is rendered (tests hold the two equal)."""
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


# --- views -----------------------------------------------------------------------------------


class InquiryListCreateView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "inquiries"

    @extend_schema(
        summary="List your inquiries, newest first",
        description="Each as answered. Errors: 403 `scope_required` without the `query` scope.",
        responses=InquiryOutput(many=True),
    )
    def get(self, request):
        page, respond = self.paginate(Inquiry.objects.filter(member=request.user), InquiryOutput)
        services.audit_read(self.caller, Action.INQUIRY_LIST, count=len(page))
        return respond()

    @extend_schema(
        summary="Query a borrower's summary (needs an active consent)",
        description=(
            "Answers the subject's records from every member (current, not withdrawn, not "
            "suppressed), a summary, and how often other members asked about this subject lately. "
            "Errors: 403 `consent_required` (no active consent of yours for this subject and "
            "purpose; the attempt is audited), 403 `reciprocity_required`, 403 `scope_required`, "
            "422 `validation_failed`, 409 `idempotency_in_progress`, 422 `idempotency_key_reused`,"
            " 422 `raw_identifier_refused` (a subject with `id_number` on an "
            "exchange that takes blind subjects only)."
        ),
        request=InquiryInput,
        examples=[
            OpenApiExample(
                "Under a consent",
                request_only=True,
                value={
                    "subject": SUBJECT_EXAMPLE,
                    "consent_id": "5b1f0c8e-3f43-4e0b-9a3c-2f6f3e1b7c11",
                    "purpose": "credit_application",
                },
            )
        ],
        responses={200: InquiryOutput},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        return idempotent(request, self.caller, lambda: self._inquire(request), replay=Action.INQUIRY_CREATE_REPLAY)

    def _inquire(self, request):
        data = self.validated(InquiryInput, action=Action.INQUIRY_CREATE)
        inquiry = inquiries.inquiry_create(caller=self.caller, **data)
        return Response(inquiry_body(inquiry), status=status.HTTP_200_OK)


class InquiryDetailView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "inquiry"

    @extend_schema(
        summary="One of your inquiries, as answered",
        description="Errors: 404 `not_found` (also for another member's inquiry).",
        responses=InquiryOutput,
    )
    def get(self, request, inquiry_id):
        inquiry = inquiries.inquiry_get(caller=self.caller, inquiry_id=inquiry_id)
        services.audit_read(
            self.caller,
            Action.INQUIRY_READ,
            object_type="inquiry",
            object_id=inquiry.pk,
            subject_token=inquiry.subject_token,
        )
        return Response(InquiryOutput(inquiry).data)
