"""`/api/v1/records` (scope `submit`): submit batches, list, read, history and withdraw your own records."""

from __future__ import annotations

from datetime import UTC, datetime, time

from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from audit.actions import Action
from core.pagination import CursorPage
from core.problems import Malformed, unknown_fields_message
from exchange import records, services
from exchange.api.base import (
    IDEMPOTENCY_HEADER,
    MONEY_OUTPUT,
    RECORD_TEXT_PATTERN,
    SUBJECT_EXAMPLE,
    Choice,
    CurrencyText,
    MemberView,
    StrictSerializer,
    SubjectField,
    SubjectOutput,
    TextField,
    field_error,
)
from exchange.idempotency import idempotent
from exchange.models import Product, Record, RecordStatus
from exchange.validation import MAX_DAYS_PAST_DUE, format_money, parse_date, parse_datetime
from members.models import Scope

# --- shapes ----------------------------------------------------------------------------------

PAYMENT_CODE = "NnCcBbDdZz1-7*"


@extend_schema_field(
    {
        "anyOf": [
            {"type": "string", "pattern": r"^\s*[0-9]{1,16}(\.[0-9]{1,2})?\s*$"},
            {"type": "integer", "minimum": 0, "maximum": 10**16 - 1},
        ],
        "description": 'a decimal string, at most 2 places, such as "5000.00" (a whole number is also accepted)',
        "example": "5000.00",
    }
)
class MoneyInput(serializers.JSONField):
    """Schema only: exchange.validation.parse_money is the rule."""


@extend_schema_field(
    {
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": MAX_DAYS_PAST_DUE},
            # The same bound as a string of at most 12 ASCII digits (exchange.validation).
            {"type": "string", "pattern": "^0{0,6}([0-9]{1,5}|100000)$"},
        ],
        "description": "whole days, 0 or more",
        "example": 45,
    }
)
class DaysInput(serializers.JSONField):
    """Schema only: exchange.validation._non_negative_int is the rule (a test holds the two equal)."""


@extend_schema_field(
    {
        "anyOf": [
            {"type": "string", "pattern": f"^[{PAYMENT_CODE}]{{0,24}}$"},
            {"type": "array", "maxItems": 24, "items": {"type": "string", "pattern": f"^[{PAYMENT_CODE}]$"}},
        ],
        "nullable": True,
        "description": "up to 24 monthly codes, oldest first: N paid as agreed, 1-7 (1-30 ... 180+ days "
        "late), C settled, B bad debt, D paid by guarantor, Z settled with assets, * no payment due",
        "example": "NNNN12",
    }
)
class PaymentHistoryInput(serializers.JSONField):
    """Schema only: exchange.validation.parse_payment_history is the rule."""


class RecordInput(serializers.Serializer):
    """One delinquency record. Rules beyond each field's own (a 422 naming the field): no date in
    the future; opened_on <= delinquent_since <= as_of; notice_sent_on <= as_of; settled_on is
    required when status is settled or written_off and must be absent otherwise; currency is an
    ISO 4217 code. A member_reference you sent before makes this a new version of that record."""

    member_reference = serializers.RegexField(
        RECORD_TEXT_PATTERN, max_length=64, help_text="your own loan reference, unique among your records"
    )
    subject = SubjectField()
    product = Choice(choices=Product.choices)
    currency = serializers.RegexField(
        "^[A-Za-z]{3}$", required=False, allow_null=True, help_text="ISO 4217, such as CNY (the default)"
    )
    principal = MoneyInput()
    amount_overdue = MoneyInput()
    days_past_due = DaysInput()
    status = Choice(choices=RecordStatus.choices)
    opened_on = serializers.DateField()
    delinquent_since = serializers.DateField()
    as_of = serializers.DateField()
    notice_sent_on = serializers.DateField(help_text="when the borrower was told, on or before as_of")
    settled_on = serializers.DateField(required=False, allow_null=True)
    payment_history = PaymentHistoryInput(required=False, allow_null=True)


class RecordBatchInput(serializers.Serializer):
    """1 to `records.MAX_BATCH` records, stored all or nothing."""

    records = serializers.ListField(child=RecordInput(), min_length=1, max_length=records.MAX_BATCH)


class RecordResult(serializers.Serializer):
    index = serializers.IntegerField(help_text="the record's position in the batch")
    id = serializers.UUIDField()
    member_reference = serializers.CharField()
    version = serializers.IntegerField(min_value=1)
    created = serializers.BooleanField(help_text="false when this is a new version of a known reference")


class RecordBatchResult(serializers.Serializer):
    results = RecordResult(many=True)


class RecordDataOutput(serializers.Serializer):
    subject = serializers.SerializerMethodField()
    product = Choice(choices=Product.choices)
    currency = CurrencyText()
    principal = serializers.SerializerMethodField()
    amount_overdue = serializers.SerializerMethodField()
    days_past_due = serializers.IntegerField(min_value=0)
    status = Choice(choices=RecordStatus.choices)
    opened_on = serializers.DateField()
    delinquent_since = serializers.DateField()
    as_of = serializers.DateField()
    notice_sent_on = serializers.DateField()
    settled_on = serializers.DateField(allow_null=True)
    payment_history = serializers.RegexField(r"^[NCBDZ1-7*]{0,24}$", help_text="monthly codes, oldest first")
    version = serializers.IntegerField(min_value=1)

    @extend_schema_field(SubjectOutput)
    def get_subject(self, obj) -> dict:
        return {"id_type": obj.id_type}

    @extend_schema_field(MONEY_OUTPUT)
    def get_principal(self, obj) -> str:
        return format_money(obj.principal)

    @extend_schema_field(MONEY_OUTPUT)
    def get_amount_overdue(self, obj) -> str:
        return format_money(obj.amount_overdue)


class RecordOutput(RecordDataOutput):
    """One of your records as it stands (its latest version)."""

    id = serializers.UUIDField()
    member_reference = serializers.CharField()
    withdrawn = serializers.BooleanField()
    disputed = serializers.BooleanField(help_text="a dispute on it is open")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class RecordVersionOutput(RecordDataOutput):
    """One version of a record, as submitted."""

    created_at = serializers.DateTimeField()


class WithdrawInput(StrictSerializer):
    """Why the record is withdrawn (kept in its history and the audit trail)."""

    reason = TextField(max_length=records.MAX_WITHDRAW_REASON, trim_whitespace=True)


# --- views -----------------------------------------------------------------------------------


class RecordListCreateView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "records"

    @extend_schema(
        summary="List your own records, newest first",
        description=(
            "Your records (never another member's), each as its latest version, newest first, a page "
            "at a time. Filters combine. Errors: 422 `validation_failed` for a bad filter or page "
            "size, 400 `malformed_request` for a cursor not taken from a `next` link; 403 "
            "`scope_required` without the `submit` scope."
        ),
        parameters=[
            OpenApiParameter("status", str, enum=RecordStatus.values, description="only records in this status"),
            OpenApiParameter("member_reference", str, description="only the record with this reference of yours"),
            OpenApiParameter(
                "updated_since",
                {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "string", "format": "date"}]},
                description="only records changed at or after this time: a date-time with an offset, or a "
                "date (midnight UTC)",
            ),
        ],
        responses=RecordOutput(many=True),
    )
    def get(self, request):
        params = request.query_params
        queryset = Record.objects.with_disputed().filter(member=request.user)
        if "status" in params:
            if params["status"] not in RecordStatus.values:
                raise field_error("status", f"must be one of {', '.join(RecordStatus.values)}")
            queryset = queryset.filter(status=params["status"])
        if "member_reference" in params:
            queryset = queryset.filter(
                reference_index=records.reference_index(request.user, params["member_reference"])
            )
        if "updated_since" in params:
            queryset = queryset.filter(updated_at__gte=_since(params["updated_since"]))
        page, respond = self.paginate(queryset, RecordOutput)
        services.audit_read(self.caller, Action.RECORD_LIST, count=len(page))
        return respond()

    @extend_schema(
        summary=f"Submit 1 to {records.MAX_BATCH} records, all or nothing",
        description=(
            "Stores every record of the batch, or none: one invalid record is 422 "
            "`validation_failed` listing every error with its `index` in the batch and its `field` "
            "(such as `subject.id_number`). A `member_reference` you sent before becomes a new "
            "version of that record. With an `Idempotency-Key`, a retry returns the first answer and "
            "stores nothing new. Errors: 400 `malformed_request` (not a JSON object with `records`), "
            "403 `scope_required`, 409 `idempotency_in_progress`, 413 `payload_too_large`, 422 "
            "`validation_failed` or `idempotency_key_reused`,"
            " 422 `raw_identifier_refused` (a subject with `id_number` on an "
            "exchange that takes blind subjects only)."
        ),
        request=RecordBatchInput,
        examples=[
            OpenApiExample(
                "One delinquent card",
                request_only=True,
                value={
                    "records": [
                        {
                            "member_reference": "CC-9001",
                            "subject": {**SUBJECT_EXAMPLE, "name": "Zhang San"},
                            "product": "credit_card",
                            "currency": "CNY",
                            "principal": "30000.00",
                            "amount_overdue": "2400.00",
                            "days_past_due": 40,
                            "status": "delinquent",
                            "opened_on": "2024-01-15",
                            "delinquent_since": "2026-10-01",
                            "as_of": "2026-11-10",
                            "notice_sent_on": "2026-10-05",
                            "payment_history": "NNNN1",
                        }
                    ]
                },
            )
        ],
        responses={201: RecordBatchResult},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        return idempotent(request, self.caller, lambda: self._submit(request), replay=Action.RECORD_SUBMIT_REPLAY)

    def _submit(self, request):
        data = request.data
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise Malformed('The body must be a JSON object {"records": [...]}.')
        unknown = set(data) - {"records"}
        if unknown:
            raise field_error(None, unknown_fields_message(unknown, ["records"]))
        results = records.records_submit(caller=self.caller, raw_records=data["records"])
        return Response({"results": results}, status=status.HTTP_201_CREATED)


def _since(value: str) -> datetime:
    try:
        if len(value) == 10:
            return datetime.combine(parse_date(value), time.min, tzinfo=UTC)
        return parse_datetime(value)
    except ValueError as exc:
        raise field_error("updated_since", str(exc)) from None


class RecordDetailView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "record"

    @extend_schema(
        summary="One of your records",
        description="Its latest version. Errors: 404 `not_found` (also for another member's record).",
        responses=RecordOutput,
    )
    def get(self, request, record_id):
        record = records.record_get(caller=self.caller, record_id=record_id)
        services.audit_read(
            self.caller,
            Action.RECORD_READ,
            object_type="record",
            object_id=record.pk,
            subject_token=record.subject_token,
        )
        return Response(RecordOutput(record).data)


class RecordHistoryView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "record_history"

    @extend_schema(
        operation_id="records_history",
        summary="Every version of one of your records, oldest first",
        description="A page at a time. Errors: 404 `not_found` (also for another member's record).",
        responses=RecordVersionOutput(many=True),
    )
    def get(self, request, record_id):
        record = records.record_get(caller=self.caller, record_id=record_id, action=Action.RECORD_HISTORY)
        versions, respond = self.paginate(record.versions.all(), RecordVersionOutput, HistoryPage())
        services.audit_read(
            self.caller,
            Action.RECORD_HISTORY,
            object_type="record",
            object_id=record.pk,
            subject_token=record.subject_token,
            versions=len(versions),
        )
        return respond()


class HistoryPage(CursorPage):
    ordering = ("version",)


class RecordWithdrawView(MemberView):
    required_scope = Scope.SUBMIT
    audit_name = "record_withdraw"

    @extend_schema(
        operation_id="records_withdraw",
        summary="Withdraw one of your records from every inquiry",
        description=(
            "The record leaves every inquiry result from now on; its history stays. Errors: 404 "
            f"`not_found`, 422 `validation_failed` (no reason, or longer than {records.MAX_WITHDRAW_REASON} "
            "characters)."
        ),
        request=WithdrawInput,
        responses=RecordOutput,
    )
    def post(self, request, record_id):
        reason = self.validated(WithdrawInput, action=Action.RECORD_WITHDRAW)["reason"]
        record = records.record_withdraw(caller=self.caller, record_id=record_id, reason=reason)
        return Response(RecordOutput(record).data)
