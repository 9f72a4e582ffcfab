"""AES-256-GCM under the key ring: layout, associated data, key ids and rotation of single values."""

from __future__ import annotations

import base64
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from core.crypto import DecryptionError, decrypt, encrypt, key_id_of, key_ring, reencrypt
from tests.core.conftest import NEW_FIELD_KEY
from tests.testenv import TEST_FIELD_KEYS

AAD = b"exchange_record|name|0b7c5f0e-5b1a-4c59-9f57-0d2f3c9d8a11"


@given(st.text())
def test_any_text_round_trips(text):
    assert decrypt(encrypt(text, aad=AAD), aad=AAD) == text


def test_a_lone_surrogate_from_json_input_round_trips():
    assert decrypt(encrypt("bad \ud800 half", aad=AAD), aad=AAD) == "bad \ud800 half"


def test_the_layout_is_format_byte_key_id_nonce_and_sealed_text():
    blob = encrypt("Zhang San", aad=AAD)
    assert blob[0] == 1
    assert blob[1] == len(b"test1")
    assert blob[2:7] == b"test1"
    nonce, sealed = blob[7:19], blob[19:]
    assert len(sealed) == len(b"Zhang San") + 16
    # Any AES-GCM implementation can open it from the documented layout.
    assert AESGCM(b"f" * 32).decrypt(nonce, sealed, AAD) == b"Zhang San"


def test_the_same_text_encrypts_differently_each_time():
    assert encrypt("Zhang San", aad=AAD) != encrypt("Zhang San", aad=AAD)


def test_it_refuses_to_decrypt_under_other_associated_data():
    blob = encrypt("Zhang San", aad=AAD)
    for other in (b"exchange_record|name|another-row", b"exchange_record|note|" + AAD.split(b"|")[2], b""):
        with pytest.raises(DecryptionError, match="another row or column") as info:
            decrypt(blob, aad=other)
        assert "Zhang" not in str(info.value)


@pytest.mark.parametrize("position", [7, 12, 19, -1])
def test_it_detects_a_changed_byte(position):
    blob = bytearray(encrypt("Zhang San", aad=AAD))
    blob[position] ^= 0x01
    with pytest.raises(DecryptionError, match="tampered"):
        decrypt(bytes(blob), aad=AAD)


@pytest.mark.parametrize(
    "blob",
    [b"", b"\x01", b"\x02\x05test1" + b"\0" * 40, b"\x01\x00" + b"\0" * 40, b"\x01\x05test1" + b"\0" * 20, "text"],
)
def test_it_says_when_a_value_is_not_in_a_known_format(blob):
    with pytest.raises(DecryptionError, match="bad format"):
        decrypt(blob, aad=AAD)


def test_it_names_an_unknown_key_id(settings):
    blob = encrypt("Zhang San", aad=AAD)
    settings.EXCHANGE_FIELD_KEYS = NEW_FIELD_KEY
    with pytest.raises(DecryptionError, match="unknown key id 'test1'"):
        decrypt(blob, aad=AAD)


def test_a_ring_of_two_keys_encrypts_with_the_first_and_reads_both(settings):
    old = encrypt("old value", aad=AAD)
    settings.EXCHANGE_FIELD_KEYS = f"{NEW_FIELD_KEY},{TEST_FIELD_KEYS}"
    new = encrypt("new value", aad=AAD)
    assert (key_id_of(old), key_id_of(new)) == ("test1", "k2")
    assert decrypt(old, aad=AAD) == "old value"
    assert decrypt(new, aad=AAD) == "new value"


def test_reencrypt_moves_a_value_to_the_current_key_and_leaves_current_ones_alone(settings):
    old = encrypt("old value", aad=AAD)
    settings.EXCHANGE_FIELD_KEYS = f"{NEW_FIELD_KEY},{TEST_FIELD_KEYS}"
    moved = reencrypt(old, aad=AAD)
    assert moved is not None and key_id_of(moved) == "k2"
    assert reencrypt(moved, aad=AAD) is None
    settings.EXCHANGE_FIELD_KEYS = NEW_FIELD_KEY
    assert decrypt(moved, aad=AAD) == "old value"


def test_the_key_ring_follows_the_setting(settings):
    assert key_ring().current_id == "test1"
    settings.EXCHANGE_FIELD_KEYS = "k3:" + base64.b64encode(b"3" * 32).decode()
    assert key_ring().current_id == "k3"


def test_a_missing_or_bad_key_setting_is_a_configuration_error(settings):
    settings.EXCHANGE_FIELD_KEYS = None
    with pytest.raises(ImproperlyConfigured, match="EXCHANGE_FIELD_KEYS is not set"):
        encrypt("x", aad=AAD)
    settings.EXCHANGE_FIELD_KEYS = "k1:" + base64.b64encode(b"short").decode()
    with pytest.raises(ImproperlyConfigured, match="must decode to 32 bytes"):
        encrypt("x", aad=AAD)


def test_it_encrypts_only_text():
    with pytest.raises(TypeError, match="takes a str"):
        encrypt(b"bytes", aad=AAD)


def test_decrypt_takes_any_bytes_like_value():
    blob = encrypt("Zhang San", aad=AAD)
    assert decrypt(bytearray(blob), aad=AAD) == decrypt(memoryview(blob), aad=AAD) == "Zhang San"


def test_no_two_values_share_a_nonce():
    nonces = {encrypt("x", aad=AAD)[7:19] for _ in range(2000)}
    assert len(nonces) == 2000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_forked_child_does_not_reuse_the_nonces_its_parent_drew():
    encrypt("x", aad=AAD)  # a fork after encrypting must not replay anything the parent drew
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next nonce and leave at once
        try:
            os.write(write_end, encrypt("x", aad=AAD)[7:19])
        finally:
            os._exit(0)
    os.close(write_end)
    child_nonce = os.read(read_end, 12)
    os.close(read_end)
    os.waitpid(pid, 0)
    assert len(child_nonce) == 12
    assert child_nonce != encrypt("x", aad=AAD)[7:19]
