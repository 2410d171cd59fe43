"""The key store: per-scope data keys and index secrets, only ever stored wrapped.

These rows live in their own database (``KEYSTORE_DATABASE_URL``, routed by
``security.routers.KeyStoreRouter``), never in the application database, so a
backup of the application's data carries no key that opens it.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class WrappedKey(models.Model):
    """A 256-bit key of one scope (an account's public id, or ``platform``), wrapped by a KEK."""

    class Purpose(models.TextChoices):
        DATA = "data", "Data encryption key"
        INDEX = "index", "Blind-index secret"

    scope = models.CharField(max_length=64)
    purpose = models.CharField(max_length=8, choices=Purpose.choices)
    version = models.PositiveIntegerField()
    kek_id = models.CharField(max_length=64)
    wrapped = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "purpose", "version"], name="security_wrappedkey_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.purpose} key v{self.version} of {self.scope}"
