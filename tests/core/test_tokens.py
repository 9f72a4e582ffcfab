"""Subject tokens and blind indexes: one token per identifier, keyed, separated by type and purpose."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cx_client.blinding import Batch, PinnedKey, b64
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from core import oprf
from core.identifiers import IdentifierError
from core.tokens import TOKEN_VERSION, blind_index, subject_token, token_of_output, tokenize_subject
from tests.testenv import TEST_SUBJECT_KEY

OTHER_KEY = base64.b64encode(b"o" * 32).decode()


def _member_output(inp: bytes) -> bytes:
    """What a member obtains for `inp` by the blind path: Blind, the exchange's BlindEvaluate with
    its proof, Finalize (the client's code, with the proof checked against the public key)."""
    batch = Batch.blind([inp])
    evaluation = oprf.evaluate_encoded(batch.request_body()["blinded"])
    answer = {
        "key_id": evaluation.key_id,
        "evaluated": [b64(e) for e in evaluation.evaluated],
        "proof": b64(evaluation.proof),
    }
    key = PinnedKey(key_id=oprf.oprf_key().key_id, public_key=oprf.oprf_key().pair.public)
    [output] = batch.finalize(answer, key)
    return output


def test_a_token_is_the_hmac_of_the_subjects_voprf_output():
    # Version 2: HMAC-SHA256(EXCHANGE_SUBJECT_KEY, VOPRF output of the documented input). Pinned:
    # changing the input string, the OPRF key derivation or the HMAC orphans every stored token.
    assert TOKEN_VERSION == 2
    output = _member_output(b"cx-subject-v1|CN_RIC||11010519491231002X")
    expected = hmac.new(TEST_SUBJECT_KEY, output, hashlib.sha256).hexdigest()
    assert subject_token("CN_RIC", "11010519491231002X") == expected == token_of_output(output)
    assert expected == "6bc3ae6c55325e52fba80d6af0bfb0a42731de82003ae6c183dd7a820054bb2c"


def test_a_passports_country_is_part_of_its_input():
    output = _member_output(b"cx-subject-v1|PASSPORT|CN|E1234567")
    assert tokenize_subject("PASSPORT", "e1234567", "cn") == token_of_output(output)


def test_an_output_of_the_wrong_length_has_no_token():
    with pytest.raises(ValueError, match="64 bytes"):
        token_of_output(b"x" * 32)


def test_a_token_is_64_lowercase_hex_characters():
    token = tokenize_subject("CN_MOBILE", "13812345678")
    assert len(token) == 64
    assert set(token) <= set("0123456789abcdef")


def test_every_spelling_of_one_identifier_gives_one_token():
    assert (
        tokenize_subject("CN_RIC", "11010519491231002X")
        == tokenize_subject("CN_RIC", "110105 19491231 002x")
        == tokenize_subject("CN_RIC", "110105491231002")
        == subject_token("CN_RIC", "11010519491231002X")
    )
    assert (
        tokenize_subject("CN_MOBILE", "+86 138-1234-5678")
        == tokenize_subject("CN_MOBILE", "0086 13812345678")
        == tokenize_subject("CN_MOBILE", "13812345678")
    )
    assert tokenize_subject("PASSPORT", "e1234567", "cn") == tokenize_subject("PASSPORT", "E1234567", "CN")
    assert tokenize_subject("CN_USCC", "91350100m000100y43") == tokenize_subject("CN_USCC", "91350100M000100Y43")


def test_the_same_characters_under_another_id_type_or_country_give_another_token():
    tokens = {
        tokenize_subject("CN_MOBILE", "13812345678"),
        tokenize_subject("PASSPORT", "13812345678", "CN"),
        tokenize_subject("PASSPORT", "13812345678", "HK"),
        tokenize_subject("CN_RIC", "11010519491231002X"),
        tokenize_subject("PASSPORT", "11010519491231002X", "CN"),
    }
    assert len(tokens) == 5


@given(
    st.text("ABC0123456789", min_size=1, max_size=8),
    st.text("ABC0123456789", min_size=1, max_size=8),
    st.text("ABC0123456789", min_size=1, max_size=8),
    st.text("ABC0123456789", min_size=1, max_size=8),
)
def test_fields_cannot_run_into_each_other(country_a, id_a, country_b, id_b):
    # Without length prefixes, ("AB", "C1") and ("A", "BC1") would be the same message.
    if (country_a, id_a) != (country_b, id_b):
        assert subject_token("PASSPORT", id_a, country_a) != subject_token("PASSPORT", id_b, country_b)


def test_a_token_depends_on_the_key(settings):
    before = tokenize_subject("CN_MOBILE", "13812345678")
    settings.EXCHANGE_SUBJECT_KEY = OTHER_KEY
    after = tokenize_subject("CN_MOBILE", "13812345678")
    assert after != before
    output = oprf.evaluate_input(b"cx-subject-v1|CN_MOBILE||13812345678")
    assert after == hmac.new(b"o" * 32, output, hashlib.sha256).hexdigest()


def test_a_token_depends_on_the_oprf_key(settings):
    before = tokenize_subject("CN_MOBILE", "13812345678")
    settings.EXCHANGE_OPRF_KEY = base64.b64encode(b"p" * 32).decode()
    assert tokenize_subject("CN_MOBILE", "13812345678") != before


def test_a_token_is_not_a_plain_hash_of_the_identifier():
    token = tokenize_subject("CN_RIC", "11010519491231002X")
    assert token != hashlib.sha256(b"11010519491231002X").hexdigest()
    assert token != hmac.new(TEST_SUBJECT_KEY, b"11010519491231002X", hashlib.sha256).hexdigest()


def test_tokenize_subject_refuses_an_invalid_identifier():
    with pytest.raises(IdentifierError) as info:
        tokenize_subject("CN_RIC", "110105194912310021")
    assert info.value.field == "id_number"


def test_subject_token_refuses_an_unknown_id_type():
    with pytest.raises(ValueError, match="unknown id_type"):
        subject_token("SSN", "123456789")


def test_a_missing_subject_key_is_a_configuration_error(settings):
    settings.EXCHANGE_SUBJECT_KEY = None
    with pytest.raises(ImproperlyConfigured, match="EXCHANGE_SUBJECT_KEY"):
        subject_token("CN_MOBILE", "13812345678")


# --- blind indexes ----------------------------------------------------------------------------


def test_a_blind_index_is_deterministic_per_scope_and_value():
    assert blind_index("member_reference", "m1", "LOAN-1") == blind_index("member_reference", "m1", "LOAN-1")
    assert len(blind_index("member_reference", "m1", "LOAN-1")) == 64


def test_a_blind_index_differs_between_scopes_values_and_purposes():
    indexes = {
        blind_index("member_reference", "m1", "LOAN-1"),
        blind_index("member_reference", "m2", "LOAN-1"),
        blind_index("member_reference", "m1", "LOAN-2"),
        blind_index("member_reference", "m1L", "OAN-1"),
        blind_index("other_purpose", "m1", "LOAN-1"),
    }
    assert len(indexes) == 5


def test_a_blind_index_uses_a_derived_key_not_the_subject_key():
    index = blind_index("member_reference", "m1", "LOAN-1")
    message = b"exchange.blind-index.v1|2:m1|6:LOAN-1"
    assert index != hmac.new(TEST_SUBJECT_KEY, message, hashlib.sha256).hexdigest()


def test_a_blind_index_depends_on_the_key(settings):
    before = blind_index("member_reference", "m1", "LOAN-1")
    settings.EXCHANGE_SUBJECT_KEY = OTHER_KEY
    assert blind_index("member_reference", "m1", "LOAN-1") != before


def test_a_blind_index_is_the_hmac_under_the_hkdf_key_of_its_purpose():
    # Pinned: changing the derivation or the encoding orphans every stored index.
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"exchange.blind-index.v1|member_reference"
    ).derive(TEST_SUBJECT_KEY)
    expected = hmac.new(key, b"exchange.blind-index.v1|2:m1|6:LOAN-1", hashlib.sha256).hexdigest()
    assert blind_index("member_reference", "m1", "LOAN-1") == expected
    assert expected == "5cf3e7bf189320a5fbb7b76a5f1ace2c985395404e90b4c5c17689c3b4baf4d5"


def test_a_lock_key_is_a_keyed_signed_64_bit_digest(settings):
    from core.tokens import lock_key

    key = lock_key("idempotency-lock", "7", "retry-1")
    assert -(2**63) <= key < 2**63
    assert key == lock_key("idempotency-lock", "7", "retry-1") != lock_key("idempotency-lock", "8", "retry-1")
    plain = int.from_bytes(hashlib.sha256(b"idempotency\x007\x00retry-1").digest()[:8], "big", signed=True)
    assert key != plain
    settings.EXCHANGE_SUBJECT_KEY = OTHER_KEY
    assert lock_key("idempotency-lock", "7", "retry-1") != key
