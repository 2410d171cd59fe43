"""Encrypted model fields and their blind indexes.

``EncryptedTextField`` stores AES-256-GCM ciphertext (see ``envelope``) and
reads and writes plain ``str`` on the model instance. Each value is sealed
with the newest data key of the instance's scope (``encryption_scope()``)
and bound, through its associated data, to the environment, scope, model,
field and row (``public_id``): a value copied to another row, field or
account does not open. Values are opened lazily, on first attribute access.

``BlindIndexField`` holds HMAC-SHA256 of the canonical form of another
field's value under the scope's index key, for equality lookups, uniqueness
and dedupe. Every read of the encrypted value is checked against it.

Encrypted fields refuse lookups, ordering, and indexes: their ciphertext is
random, so such queries would silently return nonsense.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import FieldError
from django.db import models
from django.db.models.query_utils import DeferredAttribute
from django.dispatch import Signal

from security import keys
from security.envelope import DecryptionError, blind_index, seal, seal_many, sealed_version, unseal
from security.identifiers import canonical_email

security_logger = logging.getLogger("bluespark.security")

#: Sent when a stored value fails to open (tampered, moved, or its key is gone).
#: Receivers get ``model``, ``field``, ``row`` (public id), ``scope`` and ``reason``; never the value.
decryption_failed = Signal()

CANONICAL_FORMS: dict[str, Callable[[str], str]] = {
    "email": canonical_email,
    "email_domain": lambda value: canonical_email(value).rpartition("@")[2],
    "text": lambda value: value.strip(),
}


class Sealed(bytes):
    """A sealed value read from the database and not opened yet."""


def _row_id(instance: models.Model) -> str:
    row_id = getattr(instance, "public_id", None)
    if not row_id:
        raise ValueError(f"{type(instance).__name__} needs a public_id before it can hold encrypted values.")
    return row_id


def _scope(instance: models.Model) -> str:
    # A row never changes scope; resolving it once per instance saves a call per value.
    scope = instance.__dict__.get("_encryption_scope")
    if scope is None:
        scope = instance.__dict__["_encryption_scope"] = instance.encryption_scope()  # type: ignore[attr-defined]
    return scope


@functools.lru_cache(maxsize=4096)
def _associated_data_prefix(scope: str, label: str, field_name: str) -> bytes:
    # The environment is read here, on a cache miss, not per value: settings
    # lookups cost more than the AES-GCM call they would feed.
    return f"{settings.ENVIRONMENT}|{scope}|{label}|{field_name}|".encode()


def associated_data(scope: str, instance: models.Model, field_name: str) -> bytes:
    """What a value is bound to: environment, scope, model, field and row."""
    return _associated_data_prefix(scope, instance._meta.label_lower, field_name) + _row_id(instance).encode()


def blind_index_for(scope: str, purpose: str, value: str) -> bytes:
    """The index value to look ``value`` up by, in one scope."""
    return blind_index(keys.index_key(scope, purpose), CANONICAL_FORMS[purpose](value))


class EncryptedAttribute(DeferredAttribute):
    """Opens the sealed value on first access and keeps the plaintext on the instance.

    A data descriptor (it has ``__set__``), so reads go through ``__get__``
    even once the value sits in the instance's ``__dict__``.
    """

    def __set__(self, instance: models.Model, value: Any) -> None:
        instance.__dict__[self.field.attname] = value

    def __get__(self, instance: models.Model | None, cls: type | None = None) -> Any:
        if instance is None:
            return self
        value = super().__get__(instance, cls)
        if isinstance(value, Sealed):
            value = self.field.open(instance, value)
        return value


class EncryptedTextField(models.BinaryField):
    """Text stored as AES-256-GCM ciphertext; see the module docstring."""

    descriptor_class = EncryptedAttribute

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        for option in ("unique", "db_index", "primary_key"):
            if kwargs.get(option):
                raise ValueError(f"An encrypted field cannot be {option}: index its blind index instead.")
        super().__init__(*args, **kwargs)

    def _check_str_default_value(self) -> list[checks.CheckMessage]:
        # The column holds bytes, but the attribute holds text: a str default is right.
        return []

    # --- reading -------------------------------------------------------------

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Sealed | None:
        return None if value is None else Sealed(bytes(value))

    def open(self, instance: models.Model, blob: Sealed) -> str:
        scope = _scope(instance)
        try:
            key = keys.data_key(scope, sealed_version(blob))
            plaintext = unseal(key.aead, blob, associated_data(scope, instance, self.name)).decode("utf-8")
            self._check_blind_index(instance, scope, plaintext)
        except (DecryptionError, UnicodeDecodeError) as error:
            report_decryption_failure(type(instance), self.name, getattr(instance, "public_id", None), scope, error)
            raise DecryptionError(
                f"{instance._meta.label}.{self.name} of {_row_id(instance)} cannot be decrypted."
            ) from error
        instance.__dict__[self.attname] = plaintext
        _sealed_cache(instance)[self.attname] = (plaintext, blob)
        return plaintext

    @functools.cached_property
    def _blind_indexes(self) -> list[tuple[str, str]]:
        """(attname, purpose) of the blind indexes computed from this field."""
        return [
            (field.attname, field.purpose)
            for field in self.model._meta.concrete_fields
            if isinstance(field, BlindIndexField) and field.source == self.name and field.verify_on_read
        ]

    def _check_blind_index(self, instance: models.Model, scope: str, plaintext: str) -> None:
        for attname, purpose in self._blind_indexes:
            # A deferred index (``.only("email")``) is loaded, not taken as missing.
            stored = instance.__dict__[attname] if attname in instance.__dict__ else getattr(instance, attname)
            if stored is None or not hmac.compare_digest(bytes(stored), blind_index_for(scope, purpose, plaintext)):
                raise DecryptionError(f"The value does not match its blind index {attname}.")

    # --- writing -------------------------------------------------------------

    def pre_save(self, model_instance: models.Model, add: bool) -> bytes | None:
        value = model_instance.__dict__.get(self.attname)
        if value is None or isinstance(value, Sealed):
            return value
        if not isinstance(value, str):
            raise TypeError(f"{self.name} holds text, not {type(value).__name__}.")
        return self.seal(model_instance, value)

    def seal(self, instance: models.Model, plaintext: str) -> bytes:
        """Ciphertext for ``plaintext`` on this row; unchanged values keep their ciphertext."""
        cache = _sealed_cache(instance)
        previous = cache.get(self.attname)
        scope = _scope(instance)
        key = keys.primary_data_key(scope)
        if previous is not None and previous[0] == plaintext and sealed_version(previous[1]) == key.version:
            return previous[1]
        blob = seal(key.aead, key.version, plaintext.encode("utf-8"), associated_data(scope, instance, self.name))
        cache[self.attname] = (plaintext, blob)
        return blob

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if isinstance(value, str):
            raise FieldError(f"{self.name} is encrypted: it is written by save() or bulk_create(), never by update().")
        return super().get_db_prep_value(value, connection, prepared)

    # --- refusals --------------------------------------------------------------

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        raise FieldError(f"{self.name} is encrypted and cannot be searched; look it up through its blind index.")

    def get_transform(self, lookup_name: str) -> Any:
        raise FieldError(f"{self.name} is encrypted and cannot be transformed in a query.")

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors = super().check(**kwargs)
        model = self.model
        if not any(field.name == "public_id" for field in model._meta.fields):
            errors.append(
                checks.Error(f"{model.__name__} has encrypted fields but no public_id.", obj=self, id="security.E001")
            )
        if not callable(getattr(model, "encryption_scope", None)):
            errors.append(
                checks.Error(
                    f"{model.__name__} has encrypted fields but no encryption_scope().", obj=self, id="security.E002"
                )
            )
        ordering = [name.lstrip("-") for name in model._meta.ordering or [] if isinstance(name, str)]
        if self.name in ordering:
            errors.append(
                checks.Error(
                    f"{model.__name__} cannot be ordered by encrypted {self.name}.", obj=self, id="security.E003"
                )
            )
        for index in model._meta.indexes:
            if self.name in (index.fields or []):
                errors.append(
                    checks.Error(f"Index {index.name} covers encrypted {self.name}.", obj=self, id="security.E004")
                )
        return errors


class BlindIndexField(models.BinaryField):
    """HMAC-SHA256 of another field's canonical value, computed on save."""

    def __init__(
        self, *args: Any, source: str, purpose: str = "email", verify_on_read: bool = True, **kwargs: Any
    ) -> None:
        if purpose not in CANONICAL_FORMS:
            raise ValueError(f"Unknown blind-index purpose {purpose!r}.")
        self.source = source
        self.purpose = purpose
        # The index that identifies the value is checked against it on every read; a derived
        # one (the email's domain, for segments) is not, so it costs no HMAC per read.
        self.verify_on_read = verify_on_read
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[str, str, list[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs["source"] = self.source
        kwargs["purpose"] = self.purpose
        if not self.verify_on_read:
            kwargs["verify_on_read"] = False
        return name, path, args, kwargs

    def pre_save(self, model_instance: models.Model, add: bool) -> bytes | None:
        raw = model_instance.__dict__.get(self._source_attname)
        if isinstance(raw, Sealed):
            return getattr(model_instance, self.attname)
        if raw is None:
            value = None
        else:
            value = blind_index_for(_scope(model_instance), self.purpose, raw)
        setattr(model_instance, self.attname, value)
        return value

    @functools.cached_property
    def _source_attname(self) -> str:
        return self.model._meta.get_field(self.source).attname

    def get_lookup(self, lookup_name: str) -> Any:
        if lookup_name not in ("exact", "in", "isnull"):
            raise FieldError(f"{self.name} is a blind index: only equality lookups make sense.")
        return super().get_lookup(lookup_name)


class SealedQuerySet(models.QuerySet):
    """Refuses to order or distinct by an encrypted field (its order is random)."""

    def order_by(self, *field_names: Any) -> SealedQuerySet:
        self._refuse_encrypted(field_names, "order by")
        return super().order_by(*field_names)

    def distinct(self, *field_names: Any) -> SealedQuerySet:
        self._refuse_encrypted(field_names, "distinct on")
        return super().distinct(*field_names)

    def update(self, **changes: Any) -> int:
        # Refused here, before Django opens its transaction: failing inside it
        # would doom the caller's enclosing atomic block.
        encrypted = {field.name for field in encrypted_fields(self.model)} | {
            field.attname for field in encrypted_fields(self.model)
        }
        written = sorted(encrypted & set(changes))
        if written:
            raise FieldError(f"{', '.join(written)} is encrypted: it is written by save(), never by update().")
        return super().update(**changes)

    def _refuse_encrypted(self, names: tuple[Any, ...], verb: str) -> None:
        encrypted = {field.name for field in encrypted_fields(self.model)}
        for name in names:
            if isinstance(name, str) and name.lstrip("-?").split("__")[0] in encrypted:
                raise FieldError(f"Cannot {verb} encrypted {name.lstrip('-')}.")


def encrypted_fields(model: type[models.Model]) -> list[EncryptedTextField]:
    return [field for field in model._meta.concrete_fields if isinstance(field, EncryptedTextField)]


def _sealed_cache(instance: models.Model) -> dict[str, tuple[str, bytes]]:
    return instance.__dict__.setdefault("_sealed_values", {})


def report_decryption_failure(
    model: type[models.Model], field_name: str, row_id: str | None, scope: str, error: Exception
) -> None:
    """Record a value that failed to open as a security event (never the value itself)."""
    details = {"model": model._meta.label, "field": field_name, "row": row_id, "scope": scope}
    details["reason"] = type(error).__name__
    security_logger.error("decryption_failed", extra=details)
    decryption_failed.send(sender=model, **details)


def reseal(instance: models.Model, field: EncryptedTextField) -> bool:
    """Re-seal one value under the scope's newest data key; False when it already is.

    Leaves a ``Sealed`` value on the instance, ready for ``bulk_update``.
    """
    raw = instance.__dict__.get(field.attname)
    if raw is None:
        return False
    if isinstance(raw, Sealed) and sealed_version(raw) == keys.primary_data_key(_scope(instance)).version:
        return False
    plaintext = getattr(instance, field.attname)
    instance.__dict__[field.attname] = Sealed(field.seal(instance, plaintext))
    return True


# --- the bulk path -------------------------------------------------------------------
# Imports, exports and list endpoints handle thousands of rows of one scope:
# these functions resolve the key, the associated-data prefix and the index
# key once per call instead of once per value. The format is the one the
# fields read and write, so values move freely between the two paths.


def seal_column(model: type[models.Model], field_name: str, scope: str, rows: Sequence[tuple[str, str]]) -> list[bytes]:
    """Seal one encrypted field for many rows of one scope: (row public id, plaintext) -> stored value."""
    key = keys.primary_data_key(scope)
    prefix = _associated_data_prefix(scope, model._meta.label_lower, field_name)
    return seal_many(key.aead, key.version, [(text.encode(), prefix + row_id.encode()) for row_id, text in rows])


def blind_index_column(scope: str, purpose: str, values: Sequence[str]) -> list[bytes]:
    """Blind indexes of many values of one scope (as BlindIndexField computes them)."""
    key, canonical = keys.index_key(scope, purpose), CANONICAL_FORMS[purpose]
    return [blind_index(key, canonical(value)) for value in values]


def open_column(
    model: type[models.Model],
    field_name: str,
    scope: str,
    rows: Sequence[tuple[str, bytes]],
    *,
    blind_indexes: Sequence[bytes] | None = None,
) -> list[str]:
    """Open one encrypted field for many rows of one scope: (row public id, stored value) -> plaintext.

    With ``blind_indexes`` (the rows' stored index of this field), each value
    is checked against its index as a single read is. A failure is reported
    and raised like a failed read, naming the row.
    """
    label = model._meta.label_lower
    prefix = _associated_data_prefix(scope, label, field_name)
    index_purpose = None
    if blind_indexes is not None:
        index_purpose = next(
            f.purpose
            for f in model._meta.concrete_fields
            if isinstance(f, BlindIndexField) and f.source == field_name and f.verify_on_read
        )
        index_key, canonical = keys.index_key(scope, index_purpose), CANONICAL_FORMS[index_purpose]
    opened = []
    append = opened.append
    for position, (row_id, blob) in enumerate(rows):
        blob = bytes(blob)
        try:
            key = keys.data_key(scope, sealed_version(blob))
            text = unseal(key.aead, blob, prefix + row_id.encode()).decode("utf-8")
            if index_purpose is not None and not hmac.compare_digest(
                bytes(blind_indexes[position]), blind_index(index_key, canonical(text))
            ):
                raise DecryptionError(f"The value does not match its blind index of {field_name}.")
        except (DecryptionError, UnicodeDecodeError) as error:
            report_decryption_failure(model, field_name, row_id, scope, error)
            raise DecryptionError(f"{model._meta.label}.{field_name} of {row_id} cannot be decrypted.") from error
        append(text)
    return opened
