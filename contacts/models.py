"""Audiences: contacts and the lists they subscribe to."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from accounts.tenancy import TenantModel, public_id_constraints
from security.fields import BlindIndexField, EncryptedTextField
from security.identifiers import PublicIdField


class Contact(TenantModel):
    """A person in an account's audience. Email and names are encrypted under the account's keys."""

    class Status(models.TextChoices):
        SUBSCRIBED = "subscribed", "Subscribed"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        ERASED = "erased", "Erased"

    public_id = PublicIdField(prefix="con")
    email = EncryptedTextField()
    email_index = BlindIndexField(source="email", purpose="email")
    first_name = EncryptedTextField(default="", blank=True)
    last_name = EncryptedTextField(default="", blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUBSCRIBED)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta(TenantModel.Meta):
        constraints = [
            *public_id_constraints("contacts_contact"),
            models.UniqueConstraint(fields=["account", "email_index"], name="contacts_contact_account_email_uniq"),
        ]
        indexes = [models.Index(fields=["account", "-created_at", "-id"], name="contacts_contact_recent")]

    def __str__(self) -> str:
        return self.public_id


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
