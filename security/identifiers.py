"""Public identifiers and canonical forms.

Every identifier a customer or integrator sees is random (128 bits) and carries
a short type prefix (``acc_``, ``cmp_``…), the Stripe convention: ids cannot be
enumerated or counted, and a pasted id says what it names.
"""

from __future__ import annotations

import base64
import functools
import secrets
import unicodedata
from typing import Any

from django.db import models

PUBLIC_ID_RANDOM_BYTES = 16


def new_public_id(prefix: str) -> str:
    token = base64.b32encode(secrets.token_bytes(PUBLIC_ID_RANDOM_BYTES)).decode("ascii")
    return f"{prefix}_{token.rstrip('=').lower()}"


def canonical_email(value: str) -> str:
    """The form in which two spellings of one address compare equal."""
    return unicodedata.normalize("NFKC", value).strip().lower()


class PublicIdField(models.CharField):
    """A random public id with a type prefix, generated on creation."""

    def __init__(self, *args: Any, prefix: str, **kwargs: Any) -> None:
        if not prefix.isalpha() or not prefix.islower():
            raise ValueError(f"A public id prefix is lower-case letters, not {prefix!r}.")
        self.prefix = prefix
        kwargs["max_length"] = len(prefix) + 1 + 26
        kwargs["editable"] = False
        # Generated when the object is built, not when it is saved, so the id
        # can be bound into encryption associated data before the INSERT.
        kwargs["default"] = functools.partial(new_public_id, prefix)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> tuple[str, str, list[Any], dict[str, Any]]:
        name, path, args, kwargs = super().deconstruct()
        kwargs["prefix"] = self.prefix
        for generated in ("max_length", "editable", "default"):
            kwargs.pop(generated, None)
        return name, path, args, kwargs
