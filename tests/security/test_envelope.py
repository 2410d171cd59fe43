"""Property tests of sealing: any text round-trips; any change to the sealed bytes is caught."""

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from security.envelope import (
    HEADER_BYTES,
    MIN_SEALED_BYTES,
    DecryptionError,
    blind_index,
    derive_subkey,
    seal,
    sealed_version,
    unseal,
    unwrap_key,
    wrap_key,
)

KEY = AESGCM(bytes(range(32)))
OTHER_KEY = AESGCM(bytes(range(1, 33)))
AAD = b"test|acc_a|contacts.contact|email|con_1"


@given(st.text(), st.integers(min_value=0, max_value=2**32 - 1))
def test_any_text_round_trips(text, version):
    blob = seal(KEY, version, text.encode(), AAD)
    assert sealed_version(blob) == version
    assert unseal(KEY, blob, AAD).decode() == text


@given(st.text(min_size=0, max_size=200), st.data())
def test_any_single_byte_change_is_detected(text, data):
    blob = bytearray(seal(KEY, 7, text.encode(), AAD))
    position = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    blob[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(DecryptionError):
        unseal(KEY, bytes(blob), AAD)


@given(st.text(max_size=200), st.data())
def test_any_truncation_is_detected(text, data):
    blob = seal(KEY, 1, text.encode(), AAD)
    cut = data.draw(st.integers(min_value=0, max_value=len(blob) - 1))
    with pytest.raises(DecryptionError):
        unseal(KEY, blob[:cut], AAD)


@given(st.text(max_size=100), st.binary(max_size=60))
def test_other_associated_data_or_key_fails(text, other_aad):
    blob = seal(KEY, 1, text.encode(), AAD)
    if other_aad != AAD:
        with pytest.raises(DecryptionError):
            unseal(KEY, blob, other_aad)
    with pytest.raises(DecryptionError):
        unseal(OTHER_KEY, blob, AAD)


def test_each_seal_uses_a_fresh_nonce():
    blobs = {seal(KEY, 1, b"same", AAD) for _ in range(200)}
    assert len(blobs) == 200
    assert len({blob[HEADER_BYTES : HEADER_BYTES + 12] for blob in blobs}) == 200


def test_an_unknown_format_is_refused():
    blob = bytearray(seal(KEY, 1, b"x", AAD))
    blob[0] = 2
    with pytest.raises(DecryptionError, match="format"):
        sealed_version(bytes(blob))
    with pytest.raises(DecryptionError, match="too short"):
        sealed_version(b"\x01" * (MIN_SEALED_BYTES - 1))


@settings(max_examples=25)
@given(st.binary(min_size=32, max_size=32))
def test_wrapped_keys_open_only_with_their_kek_and_identity(raw):
    kek, other = os.urandom(32), os.urandom(32)
    wrapped = wrap_key(kek, raw, b"acc_a|data|1")
    assert unwrap_key(kek, wrapped, b"acc_a|data|1") == raw
    with pytest.raises(DecryptionError):
        unwrap_key(other, wrapped, b"acc_a|data|1")
    with pytest.raises(DecryptionError):
        unwrap_key(kek, wrapped, b"acc_b|data|1")


def test_subkeys_differ_per_purpose_and_indexes_per_key():
    secret = os.urandom(32)
    assert derive_subkey(secret, "email") != derive_subkey(secret, "email_domain")
    assert derive_subkey(secret, "email") == derive_subkey(secret, "email")
    assert blind_index(derive_subkey(secret, "email"), "a@b.test") != blind_index(os.urandom(32), "a@b.test")
