"""What every member endpoint shares: the base view, the idempotency header, strict input shapes.

No business rules here: views parse with a serializer, call one service and render.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema_field
from rest_framework import serializers
from rest_framework.views import APIView

from audit.actors import member_actor
from core.pagination import CursorPage
from core.problems import Invalid, Malformed
from exchange.services import Caller

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
    def caller(self) -> Caller:
        request = self.request
        return Caller(
            member=request.user, actor=member_actor(request.user.code, request.auth.prefix if request.auth else None)
        )

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


def field_error(field: str, message: str) -> Invalid:
    """A 422 about one query parameter or body field."""
    return Invalid([{"index": None, "field": field, "message": message}])


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so that a typo is an error rather than silently ignored."""

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
