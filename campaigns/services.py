"""Every write to campaigns."""

from __future__ import annotations

from accounts.models import Account
from campaigns.models import Campaign


class CampaignError(Exception):
    """A change the campaign's state does not allow."""


def create_campaign(account: Account, *, name: str, subject: str = "") -> Campaign:
    """Create a draft campaign in the account."""
    campaign = Campaign(account=account, name=name.strip(), subject=subject.strip())
    campaign.save()
    return campaign


def update_campaign(account: Account, campaign: Campaign, *, name: str, subject: str) -> Campaign:
    """Change a draft's name and subject; raises CampaignError once it left draft."""
    if campaign.account_id != account.pk:
        raise CampaignError("This campaign belongs to another account.")
    if not campaign.is_editable:
        raise CampaignError("Only a draft campaign can be edited.")
    campaign.name = name.strip()
    campaign.subject = subject.strip()
    campaign.save(update_fields=["name", "subject", "updated_at"])
    return campaign
