"""`GET /api/v1/me`: who is calling."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from members.models import MemberKind, MemberStatus, Scope


class MeSerializer(serializers.Serializer):
    """The member and the API key of this call."""

    member = serializers.CharField(source="member.code", help_text="your member code")
    name = serializers.CharField(source="member.name")
    kind = serializers.ChoiceField(choices=MemberKind.choices, source="member.kind")
    status = serializers.ChoiceField(choices=MemberStatus.choices, source="member.status")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), source="scope_list")
    key_prefix = serializers.CharField(source="prefix")
    key_expires_at = serializers.DateTimeField(source="expires_at", allow_null=True)


class MeView(APIView):
    audit_name = "me"

    @extend_schema(
        responses=MeSerializer,
        summary="Who is calling",
        description="Your member and this key's scopes and expiry; any scope. Errors: 401 `authentication_failed`.",
    )
    def get(self, request):
        return Response(MeSerializer(request.auth).data)
