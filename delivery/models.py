"""Delivery: what the send records about its messages' recipients."""

from __future__ import annotations

from django.db import models

from accounts.tenancy import TenantModel


class EngagementEvent(TenantModel):
    """A contact opened a campaign's message or clicked a link in it: which kind, when, and of which campaign.

    Nothing else: no link (a URL can carry a name, an address or a token),
    no IP address, no user agent. So the rows hold no personal data, survive
    an erasure attached to the anonymised contact, and keep counting in
    campaign statistics. Written by ``delivery.services.record_engagement``.
    """

    class Kind(models.TextChoices):
        # The values are the acts contacts' segment language names ("opened", "clicked"): see delivery/apps.py.
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"

    # No index of its own: delivery_engagement_contact leads with it (cascades, the timeline, the export).
    # No reverse accessor either: contacts knows nothing of what is sent to its contacts.
    contact = models.ForeignKey("contacts.Contact", on_delete=models.CASCADE, related_name="+", db_index=False)
    # A deleted campaign leaves the fact.
    campaign = models.ForeignKey(
        "campaigns.Campaign", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=8, choices=Kind.choices)
    occurred_at = models.DateTimeField()

    class Meta(TenantModel.Meta):
        indexes = [
            # Segments' "opened/clicked within N days": the window's contact ids as one index-only range
            # scan, hashed into a semi- or anti-join with the account's contacts (docs/contacts.md).
            models.Index(fields=["account", "kind", "occurred_at", "contact"], name="delivery_engagement_recent"),
            # One contact's rows: newest first for the timeline, all for the export, and the cascade on delete
            # (which filters by contact alone, so this one cannot lead with the account).
            models.Index(fields=["contact", "occurred_at"], name="delivery_engagement_contact"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} ({self.pk})"
