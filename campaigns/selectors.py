"""Reads of campaigns, always within one account."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Account
from campaigns.models import Campaign


def access_campaign(account: Account, public_id: str) -> Campaign:
    """The account's campaign with that id; Http404 when missing or another account's."""
    return get_object_or_404(Campaign.objects.filter(account=account), public_id=public_id)


def campaign_list(account: Account, *, status: str | None = None) -> QuerySet[Campaign]:
    campaigns = Campaign.objects.filter(account=account)
    if status:
        campaigns = campaigns.filter(status=status)
    return campaigns.order_by("-created_at", "-id")
