"""The input serializers (StrictSerializer) answer as DRF's own field copying does, refuse unknown
fields, and share no state between two requests' serializers."""

import copy

import pytest
from rest_framework import serializers

from exchange.api.base import StrictSerializer
from exchange.api.consents import ConsentInput
from exchange.api.disputes import DisputeInput, ResolveInput
from exchange.api.inquiries import InquiryInput
from exchange.api.records import WithdrawInput

SHAPES = [InquiryInput, ConsentInput, WithdrawInput, DisputeInput, ResolveInput]

CONSENT = "0b9e6a4e-3c1f-4a55-9d6b-4a1c2b3d4e5f"
BODIES = [
    {},
    {"subject": {"id_type": "national_id", "id_number": "X"}, "consent_id": CONSENT, "purpose": "credit_application"},
    {"subject": None, "consent_id": "not-a-uuid", "purpose": "shopping"},
    {"subject": "x", "consent_id": 12, "purpose": 5, "extra": 1},
    {"consent_id": None, "purpose": ""},
    {"purpose": "account_review", "channel": "web", "granted_at": "2026-01-02", "expires_at": "x"},
    {"granted_at": "2026-01-02T03:04:05Z", "expires_at": "2027-01-02T03:04:05Z", "evidence_sha256": "ab" * 32},
    {"evidence_sha256": "xyz", "channel": "carrier pigeon"},
    {"reason": "  spaced  "},
    {"reason": 0},
    {"reason": "x" * 5000, "note": None, "outcome": "upheld"},
    {"inquiry_id": "i", "line": -1, "outcome": "nonsense", "note": ""},
    {"line": "3", "reason": ""},
]


def _deep_copying(shape):
    """The same shape with DRF's own get_fields (a deep copy of every declared field)."""
    return type(f"Deep{shape.__name__}", (shape,), {"get_fields": serializers.Serializer.get_fields})


def _answer(serializer_class, body):
    serializer = serializer_class(data=copy.deepcopy(body))
    if serializer.is_valid():
        return "valid", dict(serializer.validated_data)
    return "invalid", serializer.errors


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.__name__)
def test_same_answers_as_drf_deep_copy(shape):
    for body in BODIES:
        assert _answer(shape, body) == _answer(_deep_copying(shape), body), body


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.__name__)
def test_each_serializer_binds_its_own_fields(shape):
    assert issubclass(shape, StrictSerializer)
    first, second = shape(data={}), shape(data={})
    for name, declared in shape._declared_fields.items():
        assert first.fields[name] is not second.fields[name]
        assert first.fields[name].parent is first
        assert second.fields[name].parent is second
        # Binding happened on the copies: the declared field is left unbound.
        assert declared.field_name is None
        assert getattr(declared, "parent", None) is None


class _Nested(serializers.Serializer):
    code = serializers.CharField()


class _WithChildren(StrictSerializer):
    tags = serializers.ListField(child=serializers.CharField(max_length=3))
    nested = _Nested()
    name = serializers.CharField()


def test_fields_with_children_are_still_deep_copied():
    first, second = _WithChildren(data={}), _WithChildren(data={})
    assert first.fields["tags"].child is not second.fields["tags"].child
    assert first.fields["tags"].child.parent is first.fields["tags"]
    assert first.fields["nested"] is not second.fields["nested"]
    assert first.fields["nested"].fields["code"].root is first
    body = {"tags": ["abcd"], "nested": {}, "name": "x"}
    assert _answer(_WithChildren, body) == _answer(_deep_copying(_WithChildren), body)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: s.__name__)
def test_unknown_fields_are_refused(shape):
    # The unknown field is not quoted back (a key could be anything, even a national ID).
    outcome, errors = _answer(shape, {"110105198503140013": 1})
    assert outcome == "invalid" and list(errors) == ["non_field_errors"]
    assert "110105198503140013" not in str(errors) and "1 unknown field" in str(errors)
