"""The person's rights (GDPR articles 15, 17 and 20): everything held about them, and erasure.

Erasure keeps the contact row, anonymised, with status ``erased``: rows that
point at it (subscriptions, and the opens, clicks and messages a send
records) keep counting in lists' and campaigns' statistics, while nothing
left in them identifies the person. A keyed tombstone,
``Suppression(reason=erased)`` under the account's blind index of the
address, stops the address from being imported or mailed again; only the
person lifts it, by subscribing again through a form and following the
confirmation link.

Apps that hold more about a contact (delivery: opens and clicks; later
messages, bounces) register it with ``register_person_data``, so this module
needs to know nothing about them (imports flow one way: delivery ->
contacts). Delivery's opens and clicks hold only a kind, a time and a
campaign: they are exported, and registered with no ``erase`` step, so
erasure leaves them as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts.models import Account
from audit.actions import describe
from audit.selectors import account_events
from audit.services import record
from contacts.consent import suppress_index
from contacts.models import Contact, ContactTag, CustomField, SensitiveValue, Subscription, Suppression, Tag

#: The domain of the address an erased contact is left with: reserved, never deliverable (RFC 2606).
ERASED_DOMAIN = "erased.invalid"
EXPORT_FORMAT = "bluespark.person/1"


class GdprError(Exception):
    """A request about a person's data refused, with a message fit for the user."""


@dataclass(frozen=True)
class PersonData:
    """Another app's data about a contact: how to export it (JSON-ready) and how to erase it (a count)."""

    export: Callable[[Account, Contact], Any]
    erase: Callable[[Account, Contact], int] | None = None


_PERSON_DATA: dict[str, PersonData] = {}


def register_person_data(
    name: str,
    *,
    export: Callable[[Account, Contact], Any],
    erase: Callable[[Account, Contact], int] | None = None,
) -> None:
    """Add a section to every export (and a step to every erasure); called from an AppConfig.ready()."""
    _PERSON_DATA[name] = PersonData(export=export, erase=erase)


@contextmanager
def using_person_data(sections: dict[str, PersonData]) -> Iterator[None]:
    """Export and erase with ``sections`` (empty: contacts' own data only) inside the block only; for tests."""
    previous = dict(_PERSON_DATA)
    _PERSON_DATA.clear()
    _PERSON_DATA.update(sections)
    try:
        yield
    finally:
        _PERSON_DATA.clear()
        _PERSON_DATA.update(previous)


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export_person(account: Account, contact: Contact) -> dict[str, Any]:
    """Everything the account holds about one contact, decrypted, as JSON-ready data.

    Fields, custom fields (sensitive ones decrypted), tags, subscriptions with
    their consent evidence, the suppression of the address, the audit events
    naming the contact, and the registered sections (delivery: every open and
    click). Only this contact's rows of this account are read.
    """
    fields = {custom.key: custom for custom in CustomField.objects.filter(account=account)}
    custom_fields = [
        {
            "key": key,
            "label": fields[key].label if key in fields else key,
            "sensitive": False,
            "value": value,
        }
        for key, value in sorted((contact.attributes or {}).items())
    ]
    sensitive = SensitiveValue.objects.filter(account=account, contact=contact).select_related("field")
    custom_fields += [
        {"key": item.field.key, "label": item.field.label, "sensitive": True, "value": item.value}
        for item in sorted(sensitive, key=lambda item: item.field.key)
    ]
    tags = list(Tag.objects.filter(account=account, contacts=contact).order_by("name").values_list("name", flat=True))
    subscriptions = [
        {
            "list": {"id": subscription.mailing_list.public_id, "name": subscription.mailing_list.name},
            "status": subscription.status,
            "consent": {
                "source": subscription.consent_source,
                "at": _when(subscription.consent_at),
                "ip": subscription.consent_ip,
                "text": subscription.consent_text,
                "confirmed_at": _when(subscription.confirmed_at),
            },
            "unsubscribed_at": _when(subscription.unsubscribed_at),
            "created_at": _when(subscription.created_at),
        }
        for subscription in Subscription.objects.filter(account=account, contact=contact)
        .select_related("mailing_list")
        .order_by("created_at", "id")
    ]
    suppression = Suppression.objects.filter(account=account, email_index=bytes(contact.email_index)).first()
    events = [
        {
            "at": _when(event.occurred_at),
            "action": event.action,
            "description": describe(event.action),
            "by": event.actor_type,
            "details": event.data,
        }
        for event in account_events(account)
        .filter(target_type="contact", target_id=contact.public_id)
        .order_by("occurred_at", "id")
    ]
    data: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "exported_at": _when(timezone.now()),
        "account": {"id": account.public_id, "name": account.name},
        "contact": {
            "id": contact.public_id,
            "email": contact.email,
            "first_name": contact.first_name,
            "last_name": contact.last_name,
            "status": contact.status,
            "source": contact.source,
            "created_at": _when(contact.created_at),
            "updated_at": _when(contact.updated_at),
        },
        "custom_fields": custom_fields,
        "tags": tags,
        "subscriptions": subscriptions,
        "suppression": {
            "suppressed": suppression is not None,
            "reason": suppression.reason if suppression is not None else None,
            "since": _when(suppression.created_at) if suppression is not None else None,
        },
        "events": events,
    }
    for name, section in sorted(_PERSON_DATA.items()):
        data[name] = section.export(account, contact)
    return data


def export_person_for_download(account: Account, contact: Contact, *, actor: object = None) -> dict[str, Any]:
    """``export_person``, recorded as ``contact.data_exported`` (who asked, when; never the data)."""
    with transaction.atomic():
        record("contact.data_exported", account=account, actor=actor, target=("contact", contact.public_id))
        return export_person(account, contact)


def erase_person(account: Account, contact: Contact, *, actor: object = None) -> None:
    """Erase a contact's personal data and leave a keyed tombstone; records ``contact.erased``.

    The row stays (status ``erased``) with its address replaced by one made
    of its random id, its names, custom fields, tags and sensitive values
    gone, and its subscriptions ended without their consent text or IP
    address; registered sections' erase steps run in the same transaction
    (delivery registers none: its opens and clicks hold nothing personal).
    Raises GdprError for a contact already erased.
    """
    with transaction.atomic():
        status = (
            Contact.objects.select_for_update()
            .filter(account=account, pk=contact.pk)
            .values_list("status", flat=True)
            .first()
        )
        if status is None or status == Contact.Status.ERASED:
            raise GdprError("This contact was erased already.")
        index = bytes(contact.email_index)
        counts = {name: section.erase(account, contact) for name, section in _PERSON_DATA.items() if section.erase}
        counts["sensitive_values"] = SensitiveValue.objects.filter(account=account, contact=contact).delete()[0]
        counts["tags"] = ContactTag.objects.filter(account=account, contact=contact).delete()[0]
        now = timezone.now()
        subscriptions = list(Subscription.objects.select_for_update().filter(account=account, contact=contact))
        for subscription in subscriptions:
            subscription.consent_text = ""
            subscription.consent_ip = None
            if subscription.status != Subscription.Status.UNSUBSCRIBED:
                subscription.status = Subscription.Status.UNSUBSCRIBED
                subscription.unsubscribed_at = now
            subscription.save(update_fields=["consent_text", "consent_ip", "status", "unsubscribed_at", "updated_at"])
        counts["subscriptions"] = len(subscriptions)
        contact.email = f"{contact.public_id}@{ERASED_DOMAIN}"
        contact.first_name = ""
        contact.last_name = ""
        contact.attributes = {}
        contact.status = Contact.Status.ERASED
        contact.save(
            update_fields=[
                "email",
                "email_index",
                "email_domain_index",
                "first_name",
                "last_name",
                "attributes",
                "status",
                "updated_at",
            ]
        )
        # After the row lost the address: the tombstone's event names no contact, so the trail
        # never links the anonymised row to the index of the address it had.
        suppress_index(account, index, reason=Suppression.Reason.ERASED, actor=actor)
        record("contact.erased", account=account, actor=actor, target=("contact", contact.public_id), data=counts)
