"""Campaigns: what is sent, to whom, and when."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.tenancy import TenantModel, public_id_constraints
from security.identifiers import PublicIdField


class Campaign(TenantModel):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SCHEDULED = "scheduled", "Scheduled"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        CANCELLED = "cancelled", "Cancelled"

    public_id = PublicIdField(prefix="cmp")
    name = models.CharField(max_length=200)
    subject = models.CharField(max_length=998, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("campaigns_campaign")
        indexes = [models.Index(fields=["account", "-created_at"], name="campaigns_account_created")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_editable(self) -> bool:
        return self.status == self.Status.DRAFT
