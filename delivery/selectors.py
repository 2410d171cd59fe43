"""Delivery's reads: opens and clicks, as contacts' segments, timeline and export ask for them.

Contacts may not import delivery (DESIGN.md §2), so it does not call these:
``DeliveryConfig.ready()`` registers them with contacts' registries.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Exists, OuterRef, Q

from accounts.models import Account
from contacts.models import Contact
from contacts.selectors import TIMELINE_EVENTS, ActivityItem
from delivery.models import EngagementEvent

_TIMELINE_WORDS = {EngagementEvent.Kind.OPENED: "Opened", EngagementEvent.Kind.CLICKED: "Clicked a link in"}


def engaged_since(act: str, since: dt.datetime) -> Q:
    """Contacts who did ``act`` ("opened" or "clicked") at ``since`` or later: segments' ``engagement`` filter.

    An EXISTS over the scoped manager, which adds the active account, so PostgreSQL reads the window's contact
    ids from delivery_engagement_recent alone (a hash semi-join, or anti-join under a ``not``).
    """
    return Q(Exists(EngagementEvent.objects.filter(contact=OuterRef("pk"), kind=act, occurred_at__gte=since)))


def engagement_activity(account: Account, contact: Contact) -> list[ActivityItem]:
    """The contact's latest ``TIMELINE_EVENTS`` opens and clicks for its timeline, naming each one's campaign."""
    events = (
        EngagementEvent.objects.filter(account=account, contact=contact)
        .order_by("-occurred_at", "-id")
        .values_list("kind", "occurred_at", "campaign__name")[:TIMELINE_EVENTS]
    )
    return [
        ActivityItem(occurred_at, f"{_TIMELINE_WORDS[kind]} {campaign_name or 'a campaign'}")
        for kind, occurred_at, campaign_name in events
    ]


def engagement_export(account: Account, contact: Contact) -> list[dict[str, Any]]:
    """Every open and click of the contact, oldest first, for the person's export (the campaign while it exists)."""
    return [
        {
            "kind": kind,
            "at": occurred_at.isoformat(),
            "campaign": {"id": campaign_id, "name": name} if campaign_id else None,
        }
        for kind, occurred_at, campaign_id, name in EngagementEvent.objects.filter(account=account, contact=contact)
        .order_by("occurred_at", "id")
        .values_list("kind", "occurred_at", "campaign__public_id", "campaign__name")
    ]
