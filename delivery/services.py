"""Delivery's writes: for now, the opens and clicks the send's tracking records.

The send and its tracking (a later step) record each open and click through
``record_engagement``. Contacts reads them without importing this app:
segments' ``engagement`` conditions, the contact's timeline and the person's
export ask the filters and sources that ``DeliveryConfig.ready()`` registers
(``delivery.selectors``). A row holds the kind, the time and the campaign,
never the link clicked nor anything else about the person.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from django.utils import timezone

from accounts.models import Account
from campaigns.models import Campaign
from contacts.models import Contact
from delivery.models import EngagementEvent

#: How far ahead of this machine's clock a time may be (another worker's clock may run a little fast).
CLOCK_SKEW: Final = dt.timedelta(minutes=5)


class EngagementError(ValueError):
    """An open or click that cannot be recorded as given (a programming error in the caller, not the person's)."""


def record_engagement(
    account: Account,
    contact: Contact,
    kind: str,
    *,
    campaign: Campaign | None = None,
    occurred_at: dt.datetime | None = None,
) -> EngagementEvent | None:
    """Record that ``contact`` opened (``kind="opened"``) or clicked (``"clicked"``) at ``occurred_at`` (now).

    An erased contact gets nothing recorded (an old message can still be opened): returns None. Raises
    EngagementError for another kind, a naive or future time, or another account's contact or campaign.
    No audit event: opens and clicks come by the thousand during a send, they are the person's acts rather
    than a member's, and the row is its own record.
    """
    if kind not in EngagementEvent.Kind.values:
        raise EngagementError(f"Unknown kind of engagement {kind!r} (known: {', '.join(EngagementEvent.Kind)}).")
    if contact.pk is None or contact.account_id != account.pk:
        raise EngagementError("The contact is not one of this account's.")
    if campaign is not None and (campaign.pk is None or campaign.account_id != account.pk):
        raise EngagementError("The campaign is not one of this account's.")
    now = timezone.now()
    if occurred_at is None:
        occurred_at = now
    elif timezone.is_naive(occurred_at):
        raise EngagementError("The time of an open or click needs a time zone.")
    elif occurred_at > now + CLOCK_SKEW:
        raise EngagementError("An open or click cannot happen in the future.")
    if contact.status == Contact.Status.ERASED:
        return None
    event = EngagementEvent(account=account, contact=contact, campaign=campaign, kind=kind, occurred_at=occurred_at)
    event.save(force_insert=True)
    return event
