"""`/api/v1/consents` (scope `query`): register, list, read and revoke the borrower consents you hold."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from audit.actions import Action
from exchange import consents, services
from exchange.api.base import IDEMPOTENCY_HEADER, MemberView, StrictSerializer, SubjectField
from exchange.idempotency import idempotent
from exchange.models import Channel, Consent, Purpose
from members.models import Scope

# --- shapes ----------------------------------------------------------------------------------


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


# --- views -----------------------------------------------------------------------------------


class ConsentListCreateView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "consents"

    @extend_schema(summary="List the consents you registered", responses=ConsentOutput(many=True))
    def get(self, request):
        page, respond = self.paginate(Consent.objects.filter(member=request.user), ConsentOutput)
        services.audit_read(self.caller, Action.CONSENT_LIST, count=len(page))
        return respond()

    @extend_schema(
        summary="Register a borrower's consent",
        request=ConsentInput,
        responses={201: ConsentOutput},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        return idempotent(request, self.caller, lambda: self._register(request), replay=Action.CONSENT_REGISTER_REPLAY)

    def _register(self, request):
        data = self.validated(ConsentInput)
        consent = consents.consent_register(caller=self.caller, **data)
        return Response(ConsentOutput(consent).data, status=status.HTTP_201_CREATED)


class ConsentDetailView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "consent"

    @extend_schema(summary="One of your consents", responses=ConsentOutput)
    def get(self, request, consent_id):
        consent = consents.consent_get(caller=self.caller, consent_id=consent_id)
        services.audit_read(
            self.caller,
            Action.CONSENT_READ,
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
        consent = consents.consent_revoke(caller=self.caller, consent_id=consent_id)
        return Response(ConsentOutput(consent).data)
