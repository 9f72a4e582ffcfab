"""Input and output shapes of the exchange API. No business rules here: those live in services."""

from __future__ import annotations

import copy

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from exchange.models import Channel, Purpose, RecordStatus
from exchange.validation import format_money


def _has_children(field) -> bool:
    """A nested serializer, or a list or dict field: its child is bound to it, so it needs DRF's deep copy."""
    return isinstance(field, serializers.BaseSerializer) or hasattr(field, "child")


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so that a typo is an error rather than silently ignored.

    Each instance gets a shallow copy of each flat declared field, which binding then gives its
    name and parent; DRF's default deep copy builds every field again from its arguments, most of
    the validation's cost on the inquiry's hot path. Fields with children (nested serializers,
    list and dict fields) are still deep-copied.
    """

    def get_fields(self):
        return {
            name: copy.deepcopy(field) if _has_children(field) else copy.copy(field)
            for name, field in self._declared_fields.items()
        }

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({key[:64]: ["is not a known field"] for key in unknown})
        return super().to_internal_value(data)


class TextField(serializers.CharField):
    """Free text that must arrive as a JSON string: DRF's CharField would turn 0 into "0"."""

    default_error_messages = {"not_text": "must be a string"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_text")
        return super().to_internal_value(data)


class SubjectInput(serializers.Serializer):
    id_type = serializers.CharField()
    id_number = serializers.CharField()
    name = serializers.CharField(required=False, allow_null=True)
    country = serializers.CharField(required=False, allow_null=True)


@extend_schema_field(SubjectInput)
class SubjectField(serializers.JSONField):
    """The subject as sent; normalised and tokenised by the service (exchange.validation)."""


# --- records ---


class RecordBatchInput(serializers.Serializer):
    """Only documents the shape: records are validated by exchange.validation, one code path."""

    records = serializers.ListField(child=serializers.DictField(), min_length=1, max_length=1000)


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
    reason = TextField(max_length=500, trim_whitespace=True)


# --- consents ---


class ConsentInput(StrictSerializer):
    subject = SubjectField()
    purpose = serializers.ChoiceField(choices=Purpose.choices)
    channel = serializers.ChoiceField(choices=Channel.choices)
    granted_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    evidence_sha256 = serializers.RegexField(r"^[0-9a-fA-F]{64}$", error_messages={"invalid": "must be 64 hex digits"})


class ConsentOutput(serializers.Serializer):
    id = serializers.UUIDField()
    subject = serializers.SerializerMethodField()
    purpose = serializers.CharField()
    channel = serializers.CharField()
    granted_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    evidence_sha256 = serializers.CharField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_subject(self, obj) -> dict:
        return {"id_type": obj.id_type}


# --- inquiries ---


class InquiryInput(StrictSerializer):
    subject = SubjectField()
    consent_id = serializers.UUIDField()
    purpose = serializers.ChoiceField(choices=Purpose.choices)


class MoneyOutput(serializers.Serializer):
    currency = serializers.CharField()
    amount = serializers.CharField()


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
    line = serializers.IntegerField()
    product = serializers.CharField()
    status = serializers.CharField()
    days_past_due = serializers.IntegerField()
    currency = serializers.CharField()
    amount_overdue = serializers.CharField()
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
    """The stored report, as answered when the inquiry was made."""

    id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    purpose = serializers.CharField()
    consent_id = serializers.UUIDField(allow_null=True)
    subject_found = serializers.BooleanField(source="result.subject_found")
    summary = SummaryOutput(source="result.summary")
    records = LineOutput(many=True, source="result.records")
    inquiries = InquiryCountsOutput(source="result.inquiries")
