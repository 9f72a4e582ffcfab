"""What every member endpoint shares: the base view, the idempotency header, strict input shapes.

No business rules here: views parse with a serializer, call one service and render. The
schema-only fields below describe the rules exchange.validation enforces; they validate nothing.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from drf_spectacular.utils import OpenApiParameter, PolymorphicProxySerializer, extend_schema_field
from rest_framework import serializers
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from audit.actors import member_actor
from core.identifiers import ID_TYPES
from core.pagination import CursorPage
from core.problems import Invalid, Malformed, unknown_fields_message
from exchange.services import Caller, audit_denied

# Characters str.isprintable() accepts in a header (decoded as Latin-1): no controls, no
# no-break space, no soft hyphen; no space at either end, where HTTP would strip it.
_KEY_EDGE = r"\x21-\x7E\xA1-\xAC\xAE-\xFF"
_KEY_INNER = r"\x20-\x7E\xA1-\xAC\xAE-\xFF"
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    {
        "type": "string",
        "minLength": 1,
        "maxLength": 255,
        "pattern": f"^[{_KEY_EDGE}](?:[{_KEY_INNER}]{{0,253}}[{_KEY_EDGE}])?$",
    },
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "1 to 255 printable characters, for example a UUID. Retrying with the same key and body "
        "returns the first response (kept at least 24 hours, marked `Idempotent-Replayed: true`); "
        "the same key with another body is 422 `idempotency_key_reused`; while the first request "
        "still runs, 409 `idempotency_in_progress`."
    ),
)

# A subject valid in every way (check character, birth date), for the schema's examples.
SUBJECT_EXAMPLE = {"id_type": "CN_RIC", "id_number": "110105198503140013"}

# Free text after DRF trims it: not blank, no NUL (DRF refuses both).
TRIMMED_TEXT_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
# Free text in a record (exchange.validation._text): not blank, no control characters.
RECORD_TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"
MONEY_OUTPUT = {"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "example": "5000.00"}
CURRENCY_OUTPUT = {"type": "string", "pattern": "^[A-Z]{3}$", "example": "CNY"}


class MemberView(APIView):
    """Base for member endpoints: the caller (member + audit actor) and validated input."""

    @property
    def caller(self) -> Caller:
        request = self.request
        return Caller(
            member=request.user, actor=member_actor(request.user.code, request.auth.prefix if request.auth else None)
        )

    def validated(self, serializer_class, data=None, *, action: str = ""):
        """The body, validated; a refused body is audited under `action` (every refusal is on record)."""
        data = self.request.data if data is None else data
        if not isinstance(data, dict):
            if action:
                audit_denied(self.caller, action, "malformed_request")
            raise Malformed("The body must be a JSON object.")
        serializer = serializer_class(data=data)
        if not serializer.is_valid():
            if action:
                audit_denied(self.caller, action, "validation_failed", fields=len(serializer.errors))
            raise serializers.ValidationError(serializer.errors)
        return serializer.validated_data

    def paginate(self, queryset, serializer_class, paginator=None):
        paginator = paginator or CursorPage()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return page, lambda: paginator.get_paginated_response(serializer_class(page, many=True).data)


def field_error(field: str | None, message: str) -> Invalid:
    """A 422 about one query parameter or body field."""
    return Invalid([{"index": None, "field": field, "message": message}])


class Choice(serializers.ChoiceField):
    """A choice whose refusal names the allowed values, never the value sent: DRF's own message
    quotes the input, which could be anything (a national ID typed in the wrong field)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.error_messages["invalid_choice"] = "must be one of " + ", ".join(map(str, self.choices))


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so that a typo is an error rather than silently ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = set(data) - set(self.fields)
            if unknown:
                message = unknown_fields_message(unknown, self.fields)
                raise serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: [message]})
        return super().to_internal_value(data)


class TextField(serializers.CharField):
    """Free text that must arrive as a JSON string: DRF's CharField would turn 0 into "0"."""

    default_error_messages = {"not_text": "must be a string"}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_text")
        return super().to_internal_value(data)


class TextFieldSchema(OpenApiSerializerFieldExtension):
    """TextField in the schema: DRF's string with its lengths, and its not-blank and no-NUL rules as a pattern."""

    target_class = TextField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return {**schema, "pattern": r"^[^\x00]*$" if self.target.allow_blank else TRIMMED_TEXT_PATTERN}


@extend_schema_field(MONEY_OUTPUT)
class MoneyText(serializers.CharField):
    """An amount as the API answers it: a decimal string with exactly 2 places."""


@extend_schema_field(CURRENCY_OUTPUT)
class CurrencyText(serializers.CharField):
    """An ISO 4217 currency code, upper case."""


class _SubjectFields(serializers.Serializer):
    """What raw and blind subjects share."""

    id_type = Choice(choices=ID_TYPES)
    name = serializers.RegexField(
        RECORD_TEXT_PATTERN, required=False, allow_null=True, max_length=200, help_text="the borrower's name"
    )
    country = serializers.CharField(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="ISO 3166-1 alpha-2 such as CN (case-insensitive): passports only",
    )


class RawSubject(_SubjectFields):
    """A borrower by its ID. `id_number` is normalised (spaces ignored; `+86`/`0086` and dashes in
    mobile numbers; a 15-digit resident ID upgraded) and checked (check character, birth date):
    a wrong one is 422 on `subject.id_number`. `country` (ISO 3166-1 alpha-2) is required for a
    `PASSPORT` and refused for the other types. The exchange evaluates the ID's VOPRF output
    itself and stores only a keyed token of it; `name` is stored encrypted and never returned.
    On an exchange run with EXCHANGE_RAW_SUBJECTS=refuse this is 422 `raw_identifier_refused`."""

    id_number = serializers.RegexField(
        r"\S",
        help_text="CN_RIC: 18 characters (or a legacy 15-digit ID); CN_USCC: 18 characters; "
        "CN_MOBILE: 11 digits starting with 1; PASSPORT: 5 to 20 letters or digits",
    )


class BlindSubject(_SubjectFields):
    """A borrower the exchange never sees: `blind` is the 64-byte VOPRF output of
    `cx-subject-v1|<id_type>|<country>|<normalised id>`, obtained through `/oprf/evaluate`
    (RFC 9497, ristretto255-SHA512) and finalised by the member. The same borrower sent raw or
    blind is one subject. `country` is optional (it is inside the blinded input)."""

    blind = serializers.RegexField(
        r"^[A-Za-z0-9+/]{86}==$", help_text="base64 of the 64-byte output of RFC 9497 Finalize"
    )


SUBJECT_SCHEMA = PolymorphicProxySerializer(
    component_name="Subject", serializers=[RawSubject, BlindSubject], resource_type_field_name=None
)


@extend_schema_field(SUBJECT_SCHEMA)
class SubjectField(serializers.JSONField):
    """The subject as sent, raw or blind; normalised and tokenised by the service (exchange.validation)."""


class SubjectOutput(serializers.Serializer):
    """The borrower of a record or consent: only its identifier type, never the identifier."""

    id_type = Choice(choices=ID_TYPES)
