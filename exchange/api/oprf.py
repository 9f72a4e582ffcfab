"""`/api/v1/oprf` (blind subjects, RFC 9497 VOPRF ristretto255-SHA512): the exchange's public key,
and evaluation of a member's blinded elements with one batched proof."""

from __future__ import annotations

import base64

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from audit.actions import Action
from core import oprf
from exchange.api.base import Choice, MemberView, StrictSerializer
from exchange.oprf import oprf_evaluate
from members.models import Scope
from members.permissions import ScopeRequired

_B64_ELEMENT = {
    "type": "string",
    "pattern": r"^[A-Za-z0-9+/]{43}=$",
    "example": "hj8zDMGhJZ7VpZmKI6z9N/tDUaeTpbPAkLZC3cQ5uUU=",
}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


KeyOutput = inline_serializer(
    "OprfKey",
    {
        "suite": Choice(choices=[oprf.SUITE]),
        "mode": Choice(choices=[oprf.MODE]),
        "key_id": serializers.CharField(help_text="names this public key; it changes only with the key"),
        "public_key": serializers.CharField(help_text="base64 of the 32-byte ristretto255 element pkS"),
    },
)


@extend_schema_field(
    {
        **_B64_ELEMENT,
        "description": "base64 of a 32-byte ristretto255 element: a canonical encoding, not the identity",
    }
)
class ElementField(serializers.JSONField):
    """Schema only: core.oprf checks each element (base64, length, a valid ristretto255 encoding)."""


class EvaluateInput(StrictSerializer):
    """The member's blinded elements, in the order it wants them back."""

    blinded = serializers.ListField(
        child=ElementField(),
        min_length=1,
        max_length=oprf.MAX_ELEMENTS,
        help_text="1 to 1000 blinded elements (RFC 9497 Blind), each base64 of a 32-byte ristretto255 element",
    )


EvaluateOutput = inline_serializer(
    "OprfEvaluation",
    {
        "key_id": serializers.CharField(),
        "evaluated": serializers.ListField(
            child=serializers.CharField(), help_text="base64 evaluated elements, in the order sent"
        ),
        "proof": serializers.CharField(help_text="base64 of the 64-byte batched DLEQ proof c || s over all elements"),
    },
)


class OprfKeyView(MemberView):
    audit_name = "oprf-key"

    @extend_schema(
        summary="The exchange's VOPRF public key",
        description="Any scope. Pin `public_key` (or `key_id`) and refuse evaluations proved under another key.",
        responses={200: KeyOutput},
    )
    def get(self, request):
        key = oprf.oprf_key()
        return Response({"suite": oprf.SUITE, "mode": oprf.MODE, "key_id": key.key_id, "public_key": key.public_b64})


class OprfEvaluateView(MemberView):
    audit_name = "oprf-evaluate"

    @extend_schema(
        summary="Evaluate blinded elements (RFC 9497 BlindEvaluate, one batched proof)",
        description=(
            "Scope `submit` or `query`. Each element must be the canonical encoding of a ristretto255 "
            "element other than the identity; nothing is evaluated otherwise. Elements are never stored; "
            "the call is audited with its count. Errors: 422 `validation_failed` listing every bad element "
            "by `index`, 403 `scope_required`."
        ),
        request=EvaluateInput,
        responses={200: EvaluateOutput},
        examples=[OpenApiExample("One element", request_only=True, value={"blinded": [_B64_ELEMENT["example"]]})],
    )
    def post(self, request):
        if not (request.auth.has_scope(Scope.SUBMIT) or request.auth.has_scope(Scope.QUERY)):
            raise ScopeRequired("This call needs an API key with the 'submit' or 'query' scope.")
        data = self.validated(EvaluateInput, action=Action.OPRF_EVALUATE)
        result = oprf_evaluate(caller=self.caller, blinded=data["blinded"])
        return Response(
            {"key_id": result.key_id, "evaluated": [_b64(e) for e in result.evaluated], "proof": _b64(result.proof)}
        )
