"""`/api/v1/consents` (scope `query`): register, list, read and revoke the borrower consents you hold."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.response import Response

from audit.actions import Action
from exchange import consents, services
from exchange.api.base import (
    IDEMPOTENCY_HEADER,
    SUBJECT_EXAMPLE,
    Choice,
    MemberView,
    StrictSerializer,
    SubjectField,
    SubjectOutput,
)
from exchange.idempotency import idempotent
from exchange.models import Channel, Consent, ConsentStatus, Purpose
from members.models import Scope

# --- shapes ----------------------------------------------------------------------------------


class ConsentInput(StrictSerializer):
    """A borrower's signed authorisation. granted_at must not be in the future; expires_at is
    after it, at most one year later."""

    subject = SubjectField()
    purpose = Choice(choices=Purpose.choices)
    channel = Choice(choices=Channel.choices)
    granted_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    evidence_sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$",
        error_messages={"invalid": "must be 64 hex digits"},
        help_text="hex SHA-256 of the signed authorisation document; one borrower's only",
    )


class ConsentOutput(serializers.Serializer):
    """A consent you registered; it serves only you, for its subject and purpose, while active."""

    id = serializers.UUIDField()
    subject = serializers.SerializerMethodField()
    purpose = Choice(choices=Purpose.choices)
    channel = Choice(choices=Channel.choices)
    granted_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    revoked_at = serializers.DateTimeField(allow_null=True)
    evidence_sha256 = serializers.CharField()
    status = Choice(choices=ConsentStatus.choices)
    created_at = serializers.DateTimeField()

    @extend_schema_field(SubjectOutput)
    def get_subject(self, obj) -> dict:
        return {"id_type": obj.id_type}


# --- views -----------------------------------------------------------------------------------


class ConsentListCreateView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "consents"

    @extend_schema(
        summary="List the consents you registered, newest first",
        description="Errors: 403 `scope_required` without the `query` scope; 422 `validation_failed` (page size).",
        responses=ConsentOutput(many=True),
    )
    def get(self, request):
        page, respond = self.paginate(Consent.objects.filter(member=request.user), ConsentOutput)
        services.audit_read(self.caller, Action.CONSENT_LIST, count=len(page))
        return respond()

    @extend_schema(
        summary="Register a borrower's consent",
        description=(
            "Answers the consent with its `id`, to name in inquiries. Errors: 422 `validation_failed` "
            "(a field, the subject, or the dates: granted_at in the future, expires_at not after it "
            "or more than a year later), 403 `scope_required`, 409 `idempotency_in_progress`, 422 "
            "`idempotency_key_reused`, 422 `raw_identifier_refused` (a subject with `id_number` on an "
            "exchange that takes blind subjects only)."
        ),
        request=ConsentInput,
        examples=[
            OpenApiExample(
                "Signed in the app",
                request_only=True,
                value={
                    "subject": SUBJECT_EXAMPLE,
                    "purpose": "credit_application",
                    "channel": "app",
                    "granted_at": "2026-11-20T09:00:00+08:00",
                    "expires_at": "2027-05-20T09:00:00+08:00",
                    "evidence_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                },
            )
        ],
        responses={201: ConsentOutput},
        parameters=[IDEMPOTENCY_HEADER],
    )
    def post(self, request):
        return idempotent(request, self.caller, lambda: self._register(request), replay=Action.CONSENT_REGISTER_REPLAY)

    def _register(self, request):
        data = self.validated(ConsentInput, action=Action.CONSENT_REGISTER)
        consent = consents.consent_register(caller=self.caller, **data)
        return Response(ConsentOutput(consent).data, status=status.HTTP_201_CREATED)


class ConsentDetailView(MemberView):
    required_scope = Scope.QUERY
    audit_name = "consent"

    @extend_schema(
        summary="One of your consents",
        description="Errors: 404 `not_found` (also for another member's consent).",
        responses=ConsentOutput,
    )
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

    @extend_schema(
        operation_id="consents_revoke",
        summary="Revoke one of your consents",
        description="No body. From now on it serves no inquiry. Errors: 404 `not_found`.",
        request=None,
        responses=ConsentOutput,
    )
    def post(self, request, consent_id):
        consent = consents.consent_revoke(caller=self.caller, consent_id=consent_id)
        return Response(ConsentOutput(consent).data)
