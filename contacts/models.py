"""Audiences. This holds lists for now; contacts arrive with encryption at rest."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.tenancy import TenantModel, public_id_constraints
from security.identifiers import PublicIdField


class MailingList(TenantModel):
    """A list people subscribe to."""

    public_id = PublicIdField(prefix="lst")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("contacts_mailinglist")
        indexes = [models.Index(fields=["account", "-created_at"], name="contacts_list_account_created")]

    def __str__(self) -> str:
        return self.name
