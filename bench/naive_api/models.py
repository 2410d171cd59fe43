"""The peer's table: the same contacts in plaintext, created and filled by the benchmark (no migrations)."""

from __future__ import annotations

from django.db import models

STATUSES = [(value, value) for value in ("subscribed", "unsubscribed", "bounced", "complained", "erased")]
SOURCES = [(value, value) for value in ("form", "import", "api", "manual")]


class NaiveContact(models.Model):
    """What a contact would be with no account, no encryption and tags kept inline."""

    public_id = models.CharField(max_length=40, unique=True)
    email = models.EmailField(max_length=254)
    first_name = models.CharField(max_length=200, blank=True)
    last_name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=20, choices=STATUSES)
    source = models.CharField(max_length=20, choices=SOURCES)
    tags = models.JSONField(default=list)
    attributes = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        managed = False  # bench_api.py creates the table with the schema editor
        db_table = "bench_naive_contact"
        # The index a cursor page over (created_at, id) needs, as the real table has one.
        indexes = [models.Index(fields=["-created_at", "-id"], name="bench_naive_contact_recent")]

    def __str__(self) -> str:
        return self.public_id
