"""AES-256-GCM sealing of values and of wrapped keys, and the blind-index HMAC.

Sealed value layout (``FORMAT_V1``)::

    1 byte   format (1)
    4 bytes  key version, big-endian (which data key of the scope sealed it)
    12 bytes nonce, fresh and random for every value
    n bytes  ciphertext, then the 16-byte GCM tag

The associated data is not stored: the caller rebuilds it from where the
value lives (environment, scope, model, field, row), so a value copied
anywhere else fails its tag check. The header is authenticated with it, so
an edited format or key version fails too.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT_V1 = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(">BI")
HEADER_BYTES = _HEADER.size
MIN_SEALED_BYTES = HEADER_BYTES + NONCE_BYTES + TAG_BYTES


class DecryptionError(Exception):
    """A sealed value could not be opened: tampered, moved, truncated or keyless."""


def seal(aead: AESGCM, version: int, plaintext: bytes, associated_data: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    header = _HEADER.pack(FORMAT_V1, version)
    return header + nonce + aead.encrypt(nonce, plaintext, header + associated_data)


def seal_many(aead: AESGCM, version: int, items: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
    """``seal`` for many (plaintext, associated data) pairs under one key: the bulk path."""
    header = _HEADER.pack(FORMAT_V1, version)
    encrypt, urandom = aead.encrypt, os.urandom
    sealed = []
    append = sealed.append
    for plaintext, associated_data in items:
        nonce = urandom(NONCE_BYTES)
        append(header + nonce + encrypt(nonce, plaintext, header + associated_data))
    return sealed


def sealed_version(blob: bytes) -> int:
    """The key version named in a sealed value's header."""
    if len(blob) < MIN_SEALED_BYTES:
        raise DecryptionError("The sealed value is too short.")
    value_format, version = _HEADER.unpack_from(blob)
    if value_format != FORMAT_V1:
        raise DecryptionError(f"Unknown sealed-value format {value_format}.")
    return version


def unseal(aead: AESGCM, blob: bytes, associated_data: bytes) -> bytes:
    sealed_version(blob)
    nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
    try:
        return aead.decrypt(nonce, blob[HEADER_BYTES + NONCE_BYTES :], blob[:HEADER_BYTES] + associated_data)
    except InvalidTag:
        raise DecryptionError("The sealed value failed authentication.") from None


def wrap_key(kek: bytes, key: bytes, associated_data: bytes) -> bytes:
    """Encrypt a data key under a master key (AES-256-GCM, the key's identity as associated data)."""
    return seal(AESGCM(kek), 0, key, associated_data)


def unwrap_key(kek: bytes, wrapped: bytes, associated_data: bytes) -> bytes:
    return unseal(AESGCM(kek), wrapped, associated_data)


def derive_subkey(secret: bytes, purpose: str) -> bytes:
    """A 256-bit key for one purpose, so one secret never keys two different functions."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(secret)


def blind_index(key: bytes, canonical_value: str) -> bytes:
    # hmac.digest is the one-shot C path: the same HMAC-SHA256, without the object.
    return hmac.digest(key, canonical_value.encode("utf-8"), hashlib.sha256)
