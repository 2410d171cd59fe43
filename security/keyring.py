"""The keyring: master keys and password peppers, kept outside every database.

A keyring is a small JSON document, read from ``BLUESPARK_KEYRING_FILE`` (or
the ``BLUESPARK_KEYRING`` variable holding the document itself)::

    {"format": 1, "environment": "prod",
     "keks": {"kek_20261123_3f9a": "<base64 of 32 bytes>", ...},
     "primary_kek": "kek_20261123_3f9a",
     "peppers": {"pep_20261123_81c2": "<base64 of 32 bytes>", ...},
     "primary_pepper": "pep_20261123_81c2"}

KEKs wrap the per-account keys of the key store; peppers key the HMAC
applied to passwords before Argon2. Each keyring names its environment and a
process refuses a keyring of another one, so a production keyring copied to a
developer's machine is not loaded there. Old KEKs and peppers stay in the file
until nothing uses them (``manage.py rotate_keys`` reports when).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

KEYRING_FORMAT = 1
KEY_BYTES = 32


class KeyringError(Exception):
    """The keyring is missing, malformed, of another environment, or lacks a key."""


@dataclass(frozen=True)
class Keyring:
    environment: str
    keks: Mapping[str, bytes] = field(repr=False)
    primary_kek_id: str
    peppers: Mapping[str, bytes] = field(repr=False)
    primary_pepper_id: str

    def kek(self, kek_id: str) -> bytes:
        try:
            return self.keks[kek_id]
        except KeyError:
            raise KeyringError(f"The keyring has no master key {kek_id!r}.") from None

    def pepper(self, pepper_id: str) -> bytes:
        try:
            return self.peppers[pepper_id]
        except KeyError:
            raise KeyringError(f"The keyring has no pepper {pepper_id!r}.") from None

    @property
    def primary_kek(self) -> bytes:
        return self.kek(self.primary_kek_id)

    @property
    def primary_pepper(self) -> bytes:
        return self.pepper(self.primary_pepper_id)


def new_key_id(kind: str) -> str:
    return f"{kind}_{datetime.now(UTC):%Y%m%d}_{secrets.token_hex(4)}"


def generate_keyring_document(environment: str) -> dict[str, Any]:
    kek_id, pepper_id = new_key_id("kek"), new_key_id("pep")
    return {
        "format": KEYRING_FORMAT,
        "environment": environment,
        "keks": {kek_id: _encode(secrets.token_bytes(KEY_BYTES))},
        "primary_kek": kek_id,
        "peppers": {pepper_id: _encode(secrets.token_bytes(KEY_BYTES))},
        "primary_pepper": pepper_id,
    }


def add_primary_key(document: dict[str, Any], kind: str) -> str:
    """Add a fresh KEK (``kind="kek"``) or pepper (``"pep"``) and make it primary."""
    section, primary = {"kek": ("keks", "primary_kek"), "pep": ("peppers", "primary_pepper")}[kind]
    key_id = new_key_id(kind)
    document[section][key_id] = _encode(secrets.token_bytes(KEY_BYTES))
    document[primary] = key_id
    return key_id


def parse_keyring(text: str, *, expected_environment: str) -> Keyring:
    try:
        document = json.loads(text)
    except ValueError:
        raise KeyringError("The keyring is not valid JSON.") from None
    if not isinstance(document, dict) or document.get("format") != KEYRING_FORMAT:
        raise KeyringError(f"The keyring is not in format {KEYRING_FORMAT}.")
    environment = document.get("environment")
    if environment != expected_environment:
        raise KeyringError(
            f"This keyring belongs to the {environment!r} environment; this process runs as "
            f"{expected_environment!r} and will not load it."
        )
    keks = _decode_section(document, "keks")
    peppers = _decode_section(document, "peppers")
    keyring = Keyring(
        environment=environment,
        keks=keks,
        primary_kek_id=str(document.get("primary_kek")),
        peppers=peppers,
        primary_pepper_id=str(document.get("primary_pepper")),
    )
    keyring.primary_kek  # noqa: B018 - fails early when the primary is missing
    keyring.primary_pepper  # noqa: B018
    return keyring


def _decode_section(document: dict[str, Any], section: str) -> dict[str, bytes]:
    entries = document.get(section)
    if not isinstance(entries, dict) or not entries:
        raise KeyringError(f"The keyring has no {section}.")
    decoded = {}
    for key_id, value in entries.items():
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, TypeError):
            raise KeyringError(f"Key {key_id!r} in {section} is not base64.") from None
        if len(raw) != KEY_BYTES:
            raise KeyringError(f"Key {key_id!r} in {section} is not {KEY_BYTES * 8} bits long.")
        decoded[str(key_id)] = raw
    return decoded


def _encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def write_keyring_file(path: Path, document: dict[str, Any], *, replace: bool = True) -> None:
    """Write with owner-only permissions, atomically.

    With ``replace=False`` an existing file wins: processes starting together
    (web, worker, beat) all end up reading the one keyring that was created first.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
        if replace:
            os.replace(temporary, path)
        else:
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
    finally:
        temporary.unlink(missing_ok=True)


_lock = threading.Lock()
_loaded: Keyring | None = None


def get_keyring() -> Keyring:
    """The process's keyring, loaded once from the configured place."""
    global _loaded
    if _loaded is None:
        with _lock:
            if _loaded is None:
                _loaded = _load_configured_keyring()
    return _loaded


def reset_keyring_cache() -> None:
    global _loaded
    with _lock:
        _loaded = None


def _load_configured_keyring() -> Keyring:
    from django.conf import settings

    document = os.environ.get("BLUESPARK_KEYRING")
    if document:
        return parse_keyring(document, expected_environment=settings.ENVIRONMENT)
    path = Path(settings.KEYRING_FILE)
    if not path.exists():
        if not settings.KEYRING_AUTOCREATE:
            raise KeyringError(f"No keyring at {path}.")
        write_keyring_file(path, generate_keyring_document(settings.ENVIRONMENT), replace=False)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyringError(f"The keyring at {path} cannot be read: {exc.strerror}.") from None
    return parse_keyring(text, expected_environment=settings.ENVIRONMENT)
