"""Per-scope keys from the key store, unwrapped on demand and cached in this process only.

A scope is an account's public id, or ``platform`` for data that belongs to
no account (users' email addresses). Each scope has numbered data keys
(DEKs: the newest live one seals new values; older ones still open old
values until rotation has re-sealed them) and one blind-index secret.
Unwrapped keys never leave process memory: not to Redis, logs or task
arguments.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.db import IntegrityError, transaction

from security.envelope import DecryptionError, derive_subkey, unwrap_key, wrap_key
from security.keyring import KEY_BYTES, get_keyring
from security.models import WrappedKey
from security.routers import KEYSTORE_ALIAS

PLATFORM_SCOPE = "platform"


class KeyNotFound(DecryptionError):
    """The key a value names is not in the key store (destroyed, or never there)."""


@dataclass(frozen=True)
class DataKey:
    scope: str
    version: int
    aead: AESGCM = field(repr=False)


_lock = threading.Lock()
_data_keys: dict[tuple[str, int], DataKey] = {}
_index_secrets: dict[str, bytes] = {}
_index_keys: dict[tuple[str, str], bytes] = {}
# scope -> (newest version, monotonic time until which this process trusts it)
_primary_versions: dict[str, tuple[int, float]] = {}


def clear_key_cache() -> None:
    with _lock:
        _data_keys.clear()
        _index_secrets.clear()
        _index_keys.clear()
        _primary_versions.clear()


def _associated_data(scope: str, purpose: str, version: int) -> bytes:
    return f"bluespark-key|{settings.ENVIRONMENT}|{scope}|{purpose}|{version}".encode()


def _keys() -> WrappedKey.objects.__class__:
    return WrappedKey.objects.using(KEYSTORE_ALIAS)


def _create_key(scope: str, purpose: str, version: int) -> bytes | None:
    """Store a new wrapped key; None if another process created that version first."""
    keyring = get_keyring()
    raw = secrets.token_bytes(KEY_BYTES)
    try:
        with transaction.atomic(using=KEYSTORE_ALIAS):
            _keys().create(
                scope=scope,
                purpose=purpose,
                version=version,
                kek_id=keyring.primary_kek_id,
                wrapped=wrap_key(keyring.primary_kek, raw, _associated_data(scope, purpose, version)),
            )
    except IntegrityError:
        return None
    return raw


def _unwrap(row: WrappedKey) -> bytes:
    kek = get_keyring().kek(row.kek_id)
    return unwrap_key(kek, bytes(row.wrapped), _associated_data(row.scope, row.purpose, row.version))


def _remember_data_key(scope: str, version: int, raw: bytes) -> DataKey:
    key = DataKey(scope, version, AESGCM(raw))
    with _lock:
        _data_keys[(scope, version)] = key
    return key


def data_key(scope: str, version: int) -> DataKey:
    """The data key of that version; KeyNotFound once retired or destroyed."""
    cached = _data_keys.get((scope, version))
    if cached is not None:
        return cached
    row = _keys().filter(scope=scope, purpose=WrappedKey.Purpose.DATA, version=version).first()
    if row is None:
        raise KeyNotFound(f"No data key v{version} for this scope.")
    return _remember_data_key(scope, version, _unwrap(row))


def primary_data_key(scope: str) -> DataKey:
    """The newest live data key of the scope, created on first use."""
    cached = _primary_versions.get(scope)
    if cached is not None and time.monotonic() < cached[1]:
        key = _data_keys.get((scope, cached[0]))
        if key is not None:
            return key
    row = _keys().filter(scope=scope, purpose=WrappedKey.Purpose.DATA).order_by("-version").first()
    if row is None:
        raw = _create_key(scope, WrappedKey.Purpose.DATA, 1)
        if raw is None:
            return primary_data_key(scope)
        key = _remember_data_key(scope, 1, raw)
    else:
        key = data_key(scope, row.version)
    _trust_primary(scope, key.version)
    return key


def _trust_primary(scope: str, version: int) -> None:
    with _lock:
        _primary_versions[scope] = (version, time.monotonic() + settings.DATA_KEY_CACHE_SECONDS)


def index_key(scope: str, purpose: str) -> bytes:
    """The blind-index key of the scope for one purpose (``email``, ``email_domain``…)."""
    cached = _index_keys.get((scope, purpose))
    if cached is not None:
        return cached
    secret = _index_secrets.get(scope)
    if secret is None:
        row = _keys().filter(scope=scope, purpose=WrappedKey.Purpose.INDEX, version=1).first()
        secret = _unwrap(row) if row is not None else _create_key(scope, WrappedKey.Purpose.INDEX, 1)
        if secret is None:
            return index_key(scope, purpose)
        with _lock:
            _index_secrets[scope] = secret
    derived = derive_subkey(secret, f"bluespark-blind-index|{purpose}")
    with _lock:
        _index_keys[(scope, purpose)] = derived
    return derived


def add_data_key_version(scope: str) -> int:
    """Create the scope's next data key; new values are sealed with it from now on."""
    while True:
        latest = (
            _keys()
            .filter(scope=scope, purpose=WrappedKey.Purpose.DATA)
            .order_by("-version")
            .values_list("version", flat=True)
            .first()
            or 0
        )
        raw = _create_key(scope, WrappedKey.Purpose.DATA, latest + 1)
        if raw is not None:
            _remember_data_key(scope, latest + 1, raw)
            _trust_primary(scope, latest + 1)
            return latest + 1


def data_key_versions(scope: str) -> list[int]:
    return list(
        _keys()
        .filter(scope=scope, purpose=WrappedKey.Purpose.DATA)
        .order_by("version")
        .values_list("version", flat=True)
    )


def retire_data_keys(scope: str, *, older_than: int) -> int:
    """Delete the scope's data keys below a version, once no value uses them."""
    deleted, _ = _keys().filter(scope=scope, purpose=WrappedKey.Purpose.DATA, version__lt=older_than).delete()
    with _lock:
        for cached_scope, version in list(_data_keys):
            if cached_scope == scope and version < older_than:
                del _data_keys[(cached_scope, version)]
    return deleted


def destroy_scope_keys(scope: str) -> int:
    """Crypto-shred a scope: delete every key it has. Its ciphertext, backups included, is lost."""
    deleted, _ = _keys().filter(scope=scope).delete()
    with _lock:
        for cached in [k for k in _data_keys if k[0] == scope]:
            del _data_keys[cached]
        for cached in [k for k in _index_keys if k[0] == scope]:
            del _index_keys[cached]
        _index_secrets.pop(scope, None)
        _primary_versions.pop(scope, None)
    return deleted


def rewrap_all_keys(*, batch_size: int = 500) -> int:
    """Re-wrap every key not yet under the keyring's primary KEK; returns how many moved."""
    keyring = get_keyring()
    moved = 0
    while True:
        rows = list(_keys().exclude(kek_id=keyring.primary_kek_id).order_by("pk")[:batch_size])
        if not rows:
            return moved
        with transaction.atomic(using=KEYSTORE_ALIAS):
            for row in rows:
                raw = _unwrap(row)
                row.wrapped = wrap_key(keyring.primary_kek, raw, _associated_data(row.scope, row.purpose, row.version))
                row.kek_id = keyring.primary_kek_id
                row.save(update_fields=["wrapped", "kek_id"])
        moved += len(rows)


def kek_usage() -> dict[str, int]:
    """How many stored keys each KEK wraps (an old KEK can leave the keyring at zero)."""
    usage: dict[str, int] = {}
    for kek_id in _keys().values_list("kek_id", flat=True):
        usage[kek_id] = usage.get(kek_id, 0) + 1
    return usage
