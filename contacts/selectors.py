"""Reads of audiences, always within one account."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib.postgres.expressions import ArraySubquery
from django.db import connections
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Account
from audit.actions import describe
from audit.selectors import account_events, people_named
from bluespark.cursors import beyond
from contacts.models import (
    Contact,
    ContactImport,
    ContactTag,
    CustomField,
    MailingList,
    Segment,
    SensitiveValue,
    Subscription,
    Tag,
)
from contacts.segments import contacts_matching
from security.fields import blind_index_for, open_column


def access_mailing_list(account: Account, public_id: str) -> MailingList:
    """The account's list with that id; Http404 when missing or another account's."""
    return get_object_or_404(MailingList.objects.filter(account=account), public_id=public_id)


def mailing_list_list(account: Account) -> QuerySet[MailingList]:
    return MailingList.objects.filter(account=account).order_by("-created_at", "-id")


def access_contact(account: Account, public_id: str) -> Contact:
    """The account's contact with that id; Http404 when missing or another account's."""
    return get_object_or_404(Contact.objects.filter(account=account), public_id=public_id)


def contact_email_index(account: Account, email: str) -> bytes:
    """The blind index of an address in this account (unrelated to the same address elsewhere)."""
    return blind_index_for(account.public_id, "email", email)


def contact_with_email(account: Account, email: str) -> Contact | None:
    """Exact, case- and Unicode-insensitive search through the blind index."""
    return Contact.objects.filter(account=account, email_index=contact_email_index(account, email)).first()


# --- The dashboard's contact pages and the CSV export ----------------------------------
# A page (50 rows) or an export batch (2,000) is read as plain values and its
# encrypted columns opened together with ``open_column``: one key lookup per
# column instead of one per value (see docs/contacts.md for the measurement).

_CONTACT_ROW_FIELDS = (
    "pk",
    "public_id",
    "email",
    "email_index",
    "first_name",
    "last_name",
    "status",
    "source",
    "created_at",
    "attributes",
)


@dataclass(frozen=True)
class ContactFilter:
    """What the contacts list and the export narrow by; lists, tags and segments already resolved in the account."""

    email: str = ""
    mailing_list: MailingList | None = None
    status: str = ""
    tag: Tag | None = None
    segment: Segment | None = None

    def is_empty(self) -> bool:
        return not (self.email or self.mailing_list or self.status or self.tag or self.segment)


_STATUS_LABELS = dict(Contact.Status.choices)


@dataclass(frozen=True)
class ContactRow:
    """One contact as a list page or an export shows it, decrypted."""

    pk: int
    public_id: str
    email: str
    first_name: str
    last_name: str
    status: str
    source: str
    created_at: datetime
    attributes: dict[str, Any]
    # Its tags' names, sorted, when asked for (contact_rows(with_tags=True)).
    tags: list[str] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def get_status_display(self) -> str:
        return _STATUS_LABELS.get(self.status, self.status)


def contact_list(account: Account, filters: ContactFilter | None = None) -> QuerySet[Contact]:
    """The account's contacts matching ``filters``, newest first by (created_at, id), the order keyset pages walk."""
    filters = filters or ContactFilter()
    if filters.segment is not None:
        contacts = contacts_matching(account, filters.segment.definition).filter(account=account)
    else:
        contacts = Contact.objects.filter(account=account)
    if filters.email:
        contacts = contacts.filter(email_index=contact_email_index(account, filters.email))
    if filters.status:
        contacts = contacts.filter(status=filters.status)
    if filters.mailing_list is not None:
        contacts = contacts.filter(
            Exists(
                Subscription.objects.filter(
                    account=account,
                    contact=OuterRef("pk"),
                    mailing_list=filters.mailing_list,
                    status=Subscription.Status.SUBSCRIBED,
                )
            )
        )
    if filters.tag is not None:
        contacts = contacts.filter(
            Exists(ContactTag.objects.filter(account=account, contact=OuterRef("pk"), tag=filters.tag))
        )
    return contacts.order_by("-created_at", "-id")


def contacts_after(contacts: QuerySet[Contact], position: tuple[datetime, int] | None) -> QuerySet[Contact]:
    """Keyset step: the contacts strictly after ``position`` (created_at, id) in newest-first order."""
    return beyond(contacts, "created_at", position)


def _tag_names_subquery(contacts: QuerySet[Contact]) -> ArraySubquery | None:
    """On PostgreSQL, each row's tags' names, sorted, as an array subquery on the contact-tag index; else None.

    Elsewhere (SQLite in development) the caller reads them with ``tag_names_of``. One probe of the
    ``(contact_id, tag_id)`` index per row costs half what a second query does on a 2,000-row export
    batch, where ``contact_id IN (…)`` makes the planner scan every tag link of the account.
    """
    if connections[contacts.db].vendor != "postgresql":
        return None
    return ArraySubquery(ContactTag.objects.filter(contact=OuterRef("pk")).order_by("tag__name").values("tag__name"))


def contact_rows(
    account: Account, contacts: QuerySet[Contact], *, limit: int, with_tags: bool = False
) -> list[ContactRow]:
    """The first ``limit`` contacts of ``contacts``, decrypted a column at a time (and their tags if asked).

    Each address is checked against its blind index, as a single read is; a
    value that fails to open raises ``DecryptionError`` naming its row.
    """
    fields = _CONTACT_ROW_FIELDS
    tags_in_rows = False
    if with_tags and (names := _tag_names_subquery(contacts)) is not None:
        contacts, fields, tags_in_rows = contacts.annotate(tag_names=names), (*fields, "tag_names"), True
    values = list(contacts.values_list(*fields)[:limit])
    if not values:
        return []
    if tags_in_rows:
        tags = [row[-1] or [] for row in values]
    elif with_tags:
        names = tag_names_of(account, [row[0] for row in values])
        tags = [names.get(row[0], []) for row in values]
    else:
        tags = [[] for _ in values]
    scope = account.public_id
    emails = open_column(
        Contact, "email", scope, [(row[1], row[2]) for row in values], blind_indexes=[row[3] for row in values]
    )
    first_names = open_column(Contact, "first_name", scope, [(row[1], row[4]) for row in values])
    last_names = open_column(Contact, "last_name", scope, [(row[1], row[5]) for row in values])
    return [
        ContactRow(
            pk=row[0],
            public_id=row[1],
            email=email,
            first_name=first_name,
            last_name=last_name,
            status=row[6],
            source=row[7],
            created_at=row[8],
            attributes=row[9] or {},
            tags=row_tags,
        )
        for row, email, first_name, last_name, row_tags in zip(
            values, emails, first_names, last_names, tags, strict=True
        )
    ]


def tag_names_of(account: Account, contact_pks: list[int]) -> dict[int, list[str]]:
    """Contact pk -> its tags' names (sorted), for a page or a batch, in one query."""
    names: dict[int, list[str]] = {}
    links = ContactTag.objects.filter(account=account, contact_id__in=contact_pks).values_list(
        "contact_id", "tag__name"
    )
    for contact_pk, name in links.order_by("tag__name"):
        names.setdefault(contact_pk, []).append(name)
    return names


def tag_list(account: Account) -> QuerySet[Tag]:
    return Tag.objects.filter(account=account).order_by("name")


def tag_named(account: Account, name: str) -> Tag:
    """The account's tag of that name; Http404 when there is none."""
    return get_object_or_404(Tag.objects.filter(account=account), name=name)


def tags_of_contact(account: Account, contact: Contact) -> list[str]:
    return list(tag_list(account).filter(contacttag__contact=contact).values_list("name", flat=True))


def custom_field_list(account: Account, *, sensitive: bool | None = None) -> QuerySet[CustomField]:
    fields = CustomField.objects.filter(account=account)
    if sensitive is not None:
        fields = fields.filter(sensitive=sensitive)
    return fields.order_by("key")


def sensitive_field_ids_with_values(account: Account, contact: Contact) -> set[int]:
    """Which sensitive fields the contact has a value for, without opening any value."""
    return set(SensitiveValue.objects.filter(account=account, contact=contact).values_list("field_id", flat=True))


def subscriptions_of_contact(account: Account, contact: Contact) -> QuerySet[Subscription]:
    return (
        Subscription.objects.filter(account=account, contact=contact)
        .select_related("mailing_list")
        .order_by("-consent_at", "-id")
    )


def mailing_list_list_with_counts(account: Account) -> QuerySet[MailingList]:
    """The account's lists, each with ``subscriber_count`` (subscribed only), in one grouped query."""
    return mailing_list_list(account).annotate(
        subscriber_count=Count("subscriptions", filter=Q(subscriptions__status=Subscription.Status.SUBSCRIBED))
    )


def subscriber_count(account: Account, mailing_list: MailingList) -> int:
    return Subscription.objects.filter(
        account=account, mailing_list=mailing_list, status=Subscription.Status.SUBSCRIBED
    ).count()


def access_segment(account: Account, public_id: str) -> Segment:
    """The account's segment with that id; Http404 when missing or another account's."""
    return get_object_or_404(Segment.objects.filter(account=account), public_id=public_id)


def segment_list(account: Account) -> QuerySet[Segment]:
    return Segment.objects.filter(account=account).order_by("-created_at", "-id")


@dataclass(frozen=True)
class ActivityItem:
    """One line of a contact's timeline: an audit event, a change of a subscription, or a registered source's."""

    occurred_at: datetime
    description: str
    detail: str = ""
    actor: str = ""


#: At most this many audit events, and this many items from each registered source, on a timeline.
TIMELINE_EVENTS = 100

#: ``source(account, contact)``: more of the contact's timeline (any order, at most ``TIMELINE_EVENTS``).
ActivitySource = Callable[[Account, Contact], list[ActivityItem]]

_ACTIVITY_SOURCES: list[ActivitySource] = []


def register_activity_source(source: ActivitySource) -> None:
    """Add ``source``'s items to every contact's timeline; called from another app's AppConfig.ready()."""
    if source not in _ACTIVITY_SOURCES:
        _ACTIVITY_SOURCES.append(source)


@contextmanager
def using_activity_sources(*sources: ActivitySource) -> Iterator[None]:
    """Build timelines from ``sources`` (none: contacts' own items only) inside the block only; for tests."""
    previous = _ACTIVITY_SOURCES[:]
    _ACTIVITY_SOURCES[:] = sources
    try:
        yield
    finally:
        _ACTIVITY_SOURCES[:] = previous


def contact_activity(account: Account, contact: Contact) -> list[ActivityItem]:
    """What happened to the contact, newest first: audit events naming it, subscription changes, sources' items.

    Audit events are the latest ``TIMELINE_EVENTS``; the registered activity sources (delivery's opens and
    clicks) add theirs.
    """
    events = list(account_events(account).filter(target_type="contact", target_id=contact.public_id)[:TIMELINE_EVENTS])
    people = people_named(events)
    items = [
        ActivityItem(
            occurred_at=event.occurred_at,
            description=describe(event.action),
            detail=event.action,
            actor=people.get(event.actor_id, "") or ("API key" if event.api_key_id else "Bluespark"),
        )
        for event in events
    ]
    for subscription in subscriptions_of_contact(account, contact):
        name = subscription.mailing_list.name
        source = Contact.Source(subscription.consent_source).label if subscription.consent_source else ""
        items.append(ActivityItem(subscription.consent_at, f"Signed up to {name}", source))
        if subscription.confirmed_at:
            items.append(ActivityItem(subscription.confirmed_at, f"Confirmed the subscription to {name}"))
        if subscription.unsubscribed_at:
            items.append(ActivityItem(subscription.unsubscribed_at, f"Unsubscribed from {name}"))
    for source in _ACTIVITY_SOURCES:
        items += source(account, contact)
    items.sort(key=lambda item: item.occurred_at, reverse=True)
    return items


# --- The API's contacts ----------------------------------------------------------------
# The API pages through plain values (its cursor reads ``created_at`` from each
# row) and opens a page's encrypted columns together, as the dashboard does.

API_CONTACT_VALUES = (
    "pk",
    "public_id",
    "email",
    "email_index",
    "first_name",
    "last_name",
    "status",
    "source",
    "attributes",
    "created_at",
    "updated_at",
)


def contact_values(contacts: QuerySet[Contact]) -> QuerySet[Contact]:
    """The rows ``open_contact_values`` reads, as dicts; sealed columns stay sealed until then.

    On PostgreSQL each row also brings its tags' names, sorted, from the same
    query (an array subquery on the contact-tag index): a page then costs one
    round trip instead of two (bench/bench_api.py). Elsewhere (SQLite in
    development) ``open_contact_values`` reads the tags in a second query.
    """
    values = contacts.values(*API_CONTACT_VALUES)
    names = _tag_names_subquery(contacts)
    return values if names is None else values.annotate(tags=names)


def open_contact_values(account: Account, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with email and names decrypted a column at a time, and each contact's ``tags``.

    The tags come with the rows when ``contact_values`` could bring them,
    else from one query for the page. Each address is checked against its
    blind index, as a single read is.
    """
    if not rows:
        return []
    scope = account.public_id
    ids = [row["public_id"] for row in rows]
    emails = open_column(
        Contact,
        "email",
        scope,
        list(zip(ids, (row["email"] for row in rows), strict=True)),
        blind_indexes=[row["email_index"] for row in rows],
    )
    first_names = open_column(
        Contact, "first_name", scope, list(zip(ids, (r["first_name"] for r in rows), strict=True))
    )
    last_names = open_column(Contact, "last_name", scope, list(zip(ids, (r["last_name"] for r in rows), strict=True)))
    if "tags" in rows[0]:
        tags = [row["tags"] for row in rows]
    else:
        names = tag_names_of(account, [row["pk"] for row in rows])
        tags = [names.get(row["pk"], []) for row in rows]
    return [
        {**row, "email": email, "first_name": first, "last_name": last, "tags": row_tags}
        for row, email, first, last, row_tags in zip(rows, emails, first_names, last_names, tags, strict=True)
    ]


# The API's list with no filter is its hottest read: one fixed statement on PostgreSQL
# instead of the queryset ``contact_values`` builds. Building and compiling that
# queryset and converting its rows cost about twice what PostgreSQL's answer does
# (bench/bench_api.py); the statement is the one the ORM writes, with the account
# given by the caller and bound, never formatted in.

_API_PAGE_SQL = """
SELECT c.id, c.public_id, c.email, c.email_index, c.first_name, c.last_name, c.status, c.source,
       c.attributes, c.created_at, c.updated_at,
       ARRAY(SELECT t.name FROM contacts_contacttag l JOIN contacts_tag t ON t.id = l.tag_id
              WHERE l.account_id = %(account)s AND l.contact_id = c.id ORDER BY t.name)
  FROM contacts_contact c
 WHERE c.account_id = %(account)s{beyond}
 ORDER BY c.created_at {order}, c.id {order}
 LIMIT %(limit)s
"""
# Beyond a position in newest-first order, or before it. The first bound is redundant with the
# pair beside it, but it is what starts the index scan at the position (see ``bluespark.cursors.beyond``).
_API_PAGE_BEYOND = {
    False: " AND c.created_at <= %(at)s AND (c.created_at < %(at)s OR (c.created_at = %(at)s AND c.id < %(id)s))",
    True: " AND c.created_at >= %(at)s AND (c.created_at > %(at)s OR (c.created_at = %(at)s AND c.id > %(id)s))",
}
_API_PAGE_STATEMENTS = {
    (has_position, backward): _API_PAGE_SQL.format(
        beyond=_API_PAGE_BEYOND[backward] if has_position else "", order="ASC" if backward else "DESC"
    )
    for has_position in (False, True)
    for backward in (False, True)
}
_API_PAGE_COLUMNS = (*API_CONTACT_VALUES, "tags")


def api_contact_page_available() -> bool:
    """Whether ``api_contact_page`` can run here: it is PostgreSQL's SQL (SQLite in development pages a queryset)."""
    return connections[Contact.objects.db].vendor == "postgresql"


def api_contact_page(
    account: Account, position: tuple[datetime, int] | None, backward: bool, limit: int
) -> list[dict[str, Any]]:
    """Up to ``limit`` of the account's contacts beyond ``position`` (created_at, id), as ``contact_values`` rows.

    Newest first after the position; with ``backward``, the ones before it,
    nearest first (``KeysetCursorPagination.paginate_rows`` reads pages so).
    The rows are what ``contact_values`` gives for the same window, tags
    included, and open with ``open_contact_values``.
    """
    parameters: dict[str, Any] = {"account": account.pk, "limit": limit}
    if position is not None:
        parameters["at"], parameters["id"] = position
    with connections[Contact.objects.db].cursor() as cursor:
        cursor.execute(_API_PAGE_STATEMENTS[position is not None, backward], parameters)
        rows = [dict(zip(_API_PAGE_COLUMNS, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        # PostgreSQL's jsonb comes as text through Django's connection, as JSONField reads it.
        row["attributes"] = json.loads(row["attributes"]) if row["attributes"] is not None else None
    return rows


def sensitive_field_keys_of_contact(account: Account, contact: Contact) -> list[str]:
    """The keys of the sensitive fields the contact has a value for, without opening any value."""
    values = SensitiveValue.objects.filter(account=account, contact=contact)
    return sorted(values.values_list("field__key", flat=True))


def mailing_list_with_id(account: Account, public_id: str) -> MailingList | None:
    """The account's list with that id, or None (for filters, where a missing list is a bad parameter)."""
    return mailing_list_list(account).filter(public_id=public_id).first()


def segment_with_id(account: Account, public_id: str) -> Segment | None:
    return segment_list(account).filter(public_id=public_id).first()


def tag_with_name(account: Account, name: str) -> Tag | None:
    return tag_list(account).filter(name=name).first()


def subscription_on_list(account: Account, contact: Contact, mailing_list: MailingList) -> Subscription:
    """The contact's subscription to the list; Http404 when it never subscribed."""
    return get_object_or_404(subscriptions_of_contact(account, contact), mailing_list=mailing_list)


def contact_import_list(account: Account, *, limit: int = 50) -> list[ContactImport]:
    """The account's most recent imports, newest first (the wizard's index)."""
    imports = ContactImport.objects.filter(account=account).select_related("mailing_list", "created_by")
    return list(imports.order_by("-created_at", "-id")[:limit])
