"""`GET /api/v1/me`: who is calling."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView


class MeSerializer(serializers.Serializer):
    member = serializers.CharField(source="member.code")
    name = serializers.CharField(source="member.name")
    kind = serializers.CharField(source="member.kind")
    status = serializers.CharField(source="member.status")
    scopes = serializers.ListField(child=serializers.CharField(), source="scope_list")
    key_prefix = serializers.CharField(source="prefix")
    key_expires_at = serializers.DateTimeField(source="expires_at", allow_null=True)


class MeView(APIView):
    audit_name = "me"

    @extend_schema(responses=MeSerializer, summary="Who is calling")
    def get(self, request):
        return Response(MeSerializer(request.auth).data)
