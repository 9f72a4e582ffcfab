"""`/api/v1/records` (scope `submit`): submit batches, list, read, history and withdraw your own records."""

from __future__ import annotations

from datetime import UTC, datetime, time

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from audit.actions import Action
from core.problems import Malformed
from exchange import records, services
from exchange.api.base import IDEMPOTENCY_HEADER, MemberView, StrictSerializer, TextField, field_error
from exchange.idempotency import idempotent
from exchange.models import Record, RecordStatus
from exchange.validation import format_money, parse_date, parse_datetime
from members.models import Scope

# --- shapes ----------------------------------------------------------------------------------


class RecordBatchInput(serializers.Serializer):
    """Only documents the shape: records are validated by exchange.validation, one code path."""

    records = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=records.MAX_BATCH)


class RecordResult(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.UUIDField()
    member_reference = serializers.CharField()
    version = serializers.IntegerField()
    created = serializers.BooleanField()


class RecordBatchResult(serializers.Serializer):
    results = RecordResult(many=True)


class RecordDataOutput(serializers.Serializer):
    subject = serializers.SerializerMethodField()
    product = serializers.CharField()
    currency = serializers.CharField()
    principal = serializers.SerializerMethodField()
    amount_overdue = serializers.SerializerMethodField()
    days_past_due = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RecordStatus.choices)
    opened_on = serializers.DateField()
    delinquent_since = serializers.DateField()
    as_of = serializers.DateField()
    notice_sent_on = serializers.DateField()
    settled_on = serializers.DateField(allow_null=True)
    payment_history = serializers.CharField()
    version = serializers.IntegerField()

    def get_subject(self, obj) -> dict:
        return {"id_type": obj.id_type}

    def get_principal(self, obj) -> str:
        return format_money(obj.principal)

    def get_amount_overdue(self, obj) -> str:
        return format_money(obj.amount_overdue)


class RecordOutput(RecordDataOutput):
    id = serializers.UUIDField()
    member_reference = serializers.CharField()
    withdrawn = serializers.BooleanField()
    disputed = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class RecordVersionOutput(RecordDataOutput):
    created_at = serializers.DateTimeField()


class WithdrawInput(StrictSerializer):
    reason = TextField(max_length=records.MAX_WITHDRAW_REASON, trim_whitespace=True)


# --- views -----------------------------------------------------------------------------------


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
        request=RecordBatchInput,
        responses={201: RecordBatchResult},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        return idempotent(request, self.caller, lambda: self._submit(request), replay=Action.RECORD_SUBMIT_REPLAY)

    def _submit(self, request):
        data = request.data
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise Malformed('The body must be a JSON object {"records": [...]}.')
        unknown = sorted(set(data) - {"records"})
        if unknown:
            raise field_error(unknown[0][:64], "is not a known field")
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

    @extend_schema(summary="One of your records", responses=RecordOutput)
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
        summary="Every version of one of your records, oldest first", responses=RecordVersionOutput(many=True)
    )
    def get(self, request, record_id):
        record = records.record_get(caller=self.caller, record_id=record_id, action=Action.RECORD_HISTORY)
        versions = list(record.versions.order_by("version"))
        services.audit_read(
            self.caller,
            Action.RECORD_HISTORY,
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
