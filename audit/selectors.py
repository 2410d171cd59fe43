"""Reading an account's audit trail: filtered, newest first, with the people named."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from accounts.models import Account, User
from audit.models import AuditEvent


@dataclass(frozen=True)
class EventFilter:
    action: str | None = None
    actor_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    support_session_id: str | None = None


def account_events(account: Account, filters: EventFilter | None = None) -> QuerySet[AuditEvent]:
    """The account's events (and only its own), newest first."""
    events = AuditEvent.objects.filter(account_id=account.public_id)
    filters = filters or EventFilter()
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.actor_id:
        events = events.filter(actor_id=filters.actor_id)
    if filters.support_session_id:
        events = events.filter(support_session_id=filters.support_session_id)
    if filters.since:
        events = events.filter(occurred_at__gte=filters.since)
    if filters.until:
        events = events.filter(occurred_at__lt=filters.until)
    return events.order_by("-occurred_at", "-id")


def people_named(events: list[AuditEvent]) -> dict[str, str]:
    """Public id -> how to show the person, for the actors and members acted as in ``events``.

    Read at display time (names and emails are not stored in the trail); a
    person deleted since is shown by public id.
    """
    ids = {event.actor_id for event in events if event.actor_id} | {
        event.acting_as_id for event in events if event.acting_as_id
    }
    named = {}
    for user in User.objects.filter(public_id__in=ids):
        named[user.public_id] = f"{user.full_name} <{user.email}>" if user.full_name else user.email
    return {public_id: named.get(public_id, f"deleted user {public_id}") for public_id in ids}
