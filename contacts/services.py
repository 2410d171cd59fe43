"""Every write to audiences.

Contacts are written one at a time (``create_contact``, ``update_contact``,
``upsert_contact``) or a batch at a time (``bulk_upsert``); all of them check
input with the same rules, so the dashboard, the API and its bulk endpoint
refuse the same things with the same messages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Final, Literal

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from accounts.models import Account
from audit.services import record
from contacts import segments
from contacts.models import Contact, ContactTag, CustomField, MailingList, Segment, SensitiveValue, Suppression, Tag
from contacts.selectors import contact_email_index, subscriber_count
from security.fields import blind_index_column
from security.identifiers import canonical_email

MAX_BULK_ITEMS: Final = 1000
MAX_EMAIL_LENGTH: Final = 254  # RFC 5321's limit on a forward path, as Django's EmailField has it
MAX_NAME_LENGTH: Final = 200
MAX_TEXT_VALUE_LENGTH: Final = 1000
MAX_TAG_LENGTH: Final = 100  # Tag.name
MAX_TAGS_PER_CONTACT: Final = 100
#: The statuses a caller may set; bounced, complained and erased are Bluespark's findings, not choices.
WRITABLE_STATUSES: Final = (Contact.Status.SUBSCRIBED, Contact.Status.UNSUBSCRIBED)
#: The fields a contact is written with, by name, as the API and the bulk items name them.
CONTACT_INPUT_FIELDS: Final = ("email", "first_name", "last_name", "status", "attributes", "tags")
READ_ONLY_FIELDS: Final = frozenset({"id", "source", "created_at", "updated_at", "sensitive_attributes"})


class _Unset:
    """A keyword argument that was not given (``None`` can be a value: it clears a custom field)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


class ContactError(Exception):
    """A contact change refused, with a message fit for the user and, per field, what is wrong."""

    def __init__(self, message: str, *, errors: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}


class ContactExists(ContactError):
    """The address is already a contact of the account."""

    MESSAGE = "A contact with this email address already exists."

    @classmethod
    def for_email(cls) -> ContactExists:
        return cls(cls.MESSAGE, errors={"email": [cls.MESSAGE]})


@dataclass(frozen=True)
class ItemResult:
    """What became of one item of a bulk upsert: ``created``, ``updated`` or ``error`` (with ``errors``)."""

    index: int
    status: Literal["created", "updated", "error"]
    contact: Contact | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class _Changes:
    """Checked input: ``None`` means "leave as it is"; attribute and sensitive values of ``None`` clear them."""

    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    status: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    sensitive: dict[int, tuple[CustomField, str | None]] = field(default_factory=dict)
    tags: list[str] | None = None


# --- lists ----------------------------------------------------------------------------------


def create_mailing_list(account: Account, *, name: str, description: str = "") -> MailingList:
    """Create a list in the account."""
    mailing_list = MailingList(account=account, name=name.strip(), description=description.strip())
    mailing_list.save()
    return mailing_list


# --- checking input -------------------------------------------------------------------------


def parse_contact_input(data: Any) -> dict[str, Any]:
    """The keyword arguments of the contact services from a request body; ContactError names every bad key.

    Only the keys present are returned, so a partial update stays partial.
    """
    if not isinstance(data, Mapping):
        raise ContactError("Send a JSON object.", errors={"non_field_errors": ["Expected a JSON object."]})
    errors: dict[str, list[str]] = {}
    for key in data:
        if key in READ_ONLY_FIELDS:
            errors[str(key)] = ["This field is read-only."]
        elif key not in CONTACT_INPUT_FIELDS:
            errors[str(key)] = ["Unknown field. Custom field values go under attributes."]
    if errors:
        raise ContactError("The request has unknown or read-only fields.", errors=errors)
    return {key: data[key] for key in CONTACT_INPUT_FIELDS if key in data}


def _fields_by_key(account: Account) -> dict[str, CustomField]:
    return {custom.key: custom for custom in CustomField.objects.filter(account=account)}


def _clean_email(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("Enter a valid email address.")
    address = canonical_email(value)
    if len(address) > MAX_EMAIL_LENGTH:
        raise ValueError(f"An email address has at most {MAX_EMAIL_LENGTH} characters.")
    try:
        validate_email(address)
    except ValidationError:
        raise ValueError("Enter a valid email address.") from None
    return address


def _clean_name(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError("Enter text.")
    value = value.strip()
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"At most {MAX_NAME_LENGTH} characters.")
    return value


def _clean_status(value: Any) -> str:
    if value not in WRITABLE_STATUSES:
        raise ValueError("Choose subscribed or unsubscribed; bounced, complained and erased are set by Bluespark.")
    return str(value)


def _clean_tags(value: Any) -> list[str]:
    if not isinstance(value, list | tuple):
        raise ValueError("Send a list of tag names.")
    names: list[str] = []
    for name in value:
        if not isinstance(name, str) or not name.strip():
            raise ValueError("A tag is a non-empty name.")
        name = name.strip()
        if len(name) > MAX_TAG_LENGTH:
            raise ValueError(f"A tag has at most {MAX_TAG_LENGTH} characters.")
        if name not in names:
            names.append(name)
    if len(names) > MAX_TAGS_PER_CONTACT:
        raise ValueError(f"A contact has at most {MAX_TAGS_PER_CONTACT} tags.")
    return names


def _clean_field_value(custom: CustomField, value: Any) -> Any:
    """The value as ``attributes`` keeps it (JSON), checked against the field's type and choices."""
    kind = custom.type
    if kind == CustomField.Type.TEXT:
        if not isinstance(value, str):
            raise ValueError("Enter text.")
        value = value.strip()
        if len(value) > MAX_TEXT_VALUE_LENGTH:
            raise ValueError(f"At most {MAX_TEXT_VALUE_LENGTH} characters.")
        return value
    if kind == CustomField.Type.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError("Enter a number.")
        return value
    if kind == CustomField.Type.DATE:
        if isinstance(value, str) and len(value) == len("2000-01-01"):
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                pass
        raise ValueError("Enter a date as YYYY-MM-DD.")
    if kind == CustomField.Type.BOOLEAN:
        if not isinstance(value, bool):
            raise ValueError("Enter true or false.")
        return value
    if kind == CustomField.Type.CHOICE:
        # A choice is stored as its value, or as {"value": …, "label": …} when it has a label.
        choices = [choice.get("value") if isinstance(choice, dict) else choice for choice in custom.choices or []]
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"Choose one of: {', '.join(map(str, choices))}.")
        return value
    raise ValueError("This field has a type Bluespark does not know.")


def _sensitive_text(value: Any) -> str:
    """How a sensitive value is stored (encrypted text): JSON's spelling for flags, digits for numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _clean_attributes(value: Any, fields: dict[str, CustomField], changes: _Changes) -> list[str]:
    if not isinstance(value, Mapping):
        return ["Send an object of custom field keys and values."]
    problems = []
    for key, raw in value.items():
        custom = fields.get(key)
        if custom is None:
            problems.append(f"{key}: no custom field has this key; an admin adds fields in the dashboard.")
            continue
        try:
            cleaned = None if raw is None else _clean_field_value(custom, raw)
        except ValueError as error:
            problems.append(f"{key}: {error}")
            continue
        if custom.sensitive:
            changes.sensitive[custom.pk] = (custom, None if cleaned is None else _sensitive_text(cleaned))
        else:
            changes.attributes[key] = cleaned
    return problems


def _clean(
    fields: dict[str, CustomField],
    *,
    email: Any = UNSET,
    first_name: Any = UNSET,
    last_name: Any = UNSET,
    status: Any = UNSET,
    attributes: Any = UNSET,
    tags: Any = UNSET,
) -> _Changes:
    """Check every given value; ContactError lists every problem at once, by field."""
    changes = _Changes()
    errors: dict[str, list[str]] = {}
    cleaners = {"email": _clean_email, "first_name": _clean_name, "last_name": _clean_name}
    cleaners |= {"status": _clean_status, "tags": _clean_tags}
    given = {"email": email, "first_name": first_name, "last_name": last_name, "status": status, "tags": tags}
    for name, value in given.items():
        if value is UNSET:
            continue
        try:
            setattr(changes, name, cleaners[name](value))
        except ValueError as error:
            errors[name] = [str(error)]
    if attributes is not UNSET:
        problems = _clean_attributes(attributes, fields, changes)
        if problems:
            errors["attributes"] = problems
    if errors:
        raise ContactError(_first_message(errors), errors=errors)
    return changes


def _consent_refusal(current: str | None, changes: _Changes, suppression: str | None) -> ContactError | None:
    """Why this write may not make the contact ``subscribed``, if it may not (``current``: None for a new contact).

    Only the person undoes their own choice (docs/contacts.md, "Consent"): a
    suppressed address, or a contact that unsubscribed, bounced or complained,
    is never set back to ``subscribed`` by a member or an integrator.
    """
    if current == Contact.Status.ERASED:
        return ContactError("This contact was erased.", errors={"email": ["This contact was erased."]})
    if suppression == Suppression.Reason.ERASED:
        # The person asked to be forgotten: their data is not stored again, whatever the status.
        message = "This person asked to be erased: their address is not stored again unless they subscribe themself."
        return ContactError(message, errors={"email": [message]})
    subscribing = changes.status == Contact.Status.SUBSCRIBED or (current is None and changes.status is None)
    if not subscribing:
        return None
    if suppression is not None:
        message = (
            f"This address is on the account's suppression list ({suppression}): it cannot be subscribed "
            "through the API. Only the person can subscribe again, through a subscribe form."
        )
        return ContactError(message, errors={"email": [message]})
    if current is not None and current != Contact.Status.SUBSCRIBED:
        message = (
            f"This contact is {current}: it cannot be set back to subscribed. Only the person's own consent "
            "subscribes them again (a subscribe form, or a new subscription to a list recorded with its evidence)."
        )
        return ContactError(message, errors={"status": [message]})
    return None


# --- writing --------------------------------------------------------------------------------


def _apply(contact: Contact, changes: _Changes) -> list[str]:
    """Set the changed values on the contact; the names of the columns that changed."""
    changed = []
    for name in ("first_name", "last_name", "status"):
        value = getattr(changes, name)
        if value is not None and getattr(contact, name) != value:
            setattr(contact, name, value)
            changed.append(name)
    if changes.email is not None and changes.email != contact.email:
        contact.email = changes.email
        changed += ["email", "email_index", "email_domain_index"]
    if changes.attributes:
        attributes = dict(contact.attributes or {})
        for key, value in changes.attributes.items():
            if value is None:
                attributes.pop(key, None)
            else:
                attributes[key] = value
        if attributes != contact.attributes:
            contact.attributes = attributes
            changed.append("attributes")
    return changed


def _tags_named(account: Account, names: Iterable[str]) -> dict[str, Tag]:
    """The account's tags of these names, creating the missing ones (concurrent creators agree)."""
    wanted = set(names)
    if not wanted:
        return {}
    found = {tag.name: tag for tag in Tag.objects.filter(account=account, name__in=wanted)}
    missing = wanted - set(found)
    if missing:
        Tag.objects.bulk_create([Tag(account=account, name=name) for name in missing], ignore_conflicts=True)
        found = {tag.name: tag for tag in Tag.objects.filter(account=account, name__in=wanted)}
    return found


def _write_tags_and_values(account: Account, written: Sequence[tuple[Contact, _Changes]]) -> set[int]:
    """Set the tags and sensitive values the changes name, for many contacts in a few queries.

    Returns the pks of the contacts whose tags or sensitive values changed.
    """
    touched: set[int] = set()
    tagged = [(contact, changes.tags) for contact, changes in written if changes.tags is not None]
    if tagged:
        tags = _tags_named(account, (name for _, names in tagged for name in names or []))
        wanted = {(contact.pk, tags[name].pk) for contact, names in tagged for name in names or []}
        links = ContactTag.objects.filter(account=account, contact_id__in=[contact.pk for contact, _ in tagged])
        current = {
            (contact_pk, tag_pk): pk for pk, contact_pk, tag_pk in links.values_list("pk", "contact_id", "tag_id")
        }
        stale = {pair: pk for pair, pk in current.items() if pair not in wanted}
        if stale:
            ContactTag.objects.filter(account=account, pk__in=stale.values()).delete()
            touched |= {contact_pk for contact_pk, _ in stale}
        fresh = wanted - set(current)
        touched |= {contact_pk for contact_pk, _ in fresh}
        ContactTag.objects.bulk_create(
            [ContactTag(account=account, contact_id=contact_pk, tag_id=tag_pk) for contact_pk, tag_pk in fresh],
            ignore_conflicts=True,
        )
    by_field: dict[int, list[tuple[Contact, str | None]]] = {}
    fields: dict[int, CustomField] = {}
    for contact, changes in written:
        for field_pk, (custom, value) in changes.sensitive.items():
            fields[field_pk] = custom
            by_field.setdefault(field_pk, []).append((contact, value))
    for field_pk, values in by_field.items():
        # Replaced rather than updated: each value gets a fresh row id, so its ciphertext is bound anew.
        SensitiveValue.objects.filter(
            account=account, field_id=field_pk, contact_id__in=[contact.pk for contact, _ in values]
        ).delete()
        SensitiveValue.objects.bulk_create(
            [
                SensitiveValue(account=account, contact=contact, field=fields[field_pk], value=value)
                for contact, value in values
                if value is not None
            ]
        )
        touched |= {contact.pk for contact, _ in values}
    return touched


def create_contact(
    account: Account,
    *,
    email: str,
    first_name: str = "",
    last_name: str = "",
    status: str = Contact.Status.SUBSCRIBED,
    attributes: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    source: str = Contact.Source.MANUAL,
) -> Contact:
    """Add a contact. Raises ContactExists for an address already in the account, ContactError for bad input.

    A suppressed address is refused as ``subscribed``; it may be kept as ``unsubscribed``.
    """
    changes = _clean(
        _fields_by_key(account) if attributes else {},
        email=email,
        first_name=first_name,
        last_name=last_name,
        status=status,
        attributes=attributes if attributes is not None else UNSET,
        tags=tags if tags is not None else UNSET,
    )
    assert changes.email is not None
    index = contact_email_index(account, changes.email)
    refusal = _consent_refusal(None, changes, _suppression_reasons(account, [index]).get(index))
    if refusal is not None:
        raise refusal
    contact = Contact(
        account=account,
        email=changes.email,
        first_name=changes.first_name or "",
        last_name=changes.last_name or "",
        status=changes.status or Contact.Status.SUBSCRIBED,
        source=source,
        attributes={key: value for key, value in changes.attributes.items() if value is not None},
    )
    try:
        with transaction.atomic():
            contact.save()
            _write_tags_and_values(account, [(contact, changes)])
    except IntegrityError:
        raise ContactExists.for_email() from None
    return contact


def update_contact(
    account: Account,
    contact: Contact,
    *,
    email: Any = UNSET,
    first_name: Any = UNSET,
    last_name: Any = UNSET,
    status: Any = UNSET,
    attributes: Any = UNSET,
    tags: Any = UNSET,
) -> Contact:
    """Change the given values only (attributes merge; ``None`` clears one; ``tags`` replaces the set).

    Raises ContactError for bad input, for an erased contact, and for subscribing a suppressed address
    or a contact that left; ContactExists when the new address belongs to another contact.
    """
    changes = _clean(
        _fields_by_key(account) if attributes is not UNSET else {},
        email=email,
        first_name=first_name,
        last_name=last_name,
        status=status,
        attributes=attributes,
        tags=tags,
    )
    address = changes.email if changes.email is not None else contact.email
    index = contact_email_index(account, address)
    suppression = _suppression_reasons(account, [index]).get(index)
    refusal = _consent_refusal(contact.status, changes, suppression)
    if refusal is None and changes.email is not None and contact.status == Contact.Status.SUBSCRIBED:
        # A subscribed contact moved onto a suppressed address would be mailed there: refused like a new one.
        refusal = _consent_refusal(None, changes, suppression)
    if refusal is not None:
        raise refusal
    try:
        with transaction.atomic():
            changed = _apply(contact, changes)
            touched = _write_tags_and_values(account, [(contact, changes)])
            if changed or touched:
                contact.save(update_fields=[*changed, "updated_at"])
    except IntegrityError:
        raise ContactExists.for_email() from None
    return contact


def upsert_contact(
    account: Account,
    *,
    email: Any,
    first_name: Any = UNSET,
    last_name: Any = UNSET,
    status: Any = UNSET,
    attributes: Any = UNSET,
    tags: Any = UNSET,
    source: str,
) -> tuple[Contact, bool]:
    """Create the contact with this address, or update the one that has it; True when created.

    Found through the address's blind index. The rules are bulk_upsert's; its item error is raised as ContactError.
    """
    item = {"email": email, "first_name": first_name, "last_name": last_name, "status": status}
    item |= {"attributes": attributes, "tags": tags}
    [result] = bulk_upsert(account, [{k: v for k, v in item.items() if v is not UNSET}], source=source)
    if result.status == "error":
        raise ContactError(_first_message(result.errors), errors=result.errors)
    assert result.contact is not None
    return result.contact, result.status == "created"


def _first_message(errors: dict[str, list[str]]) -> str:
    return next((messages[0] for messages in errors.values() if messages), "The contact was refused.")


def _suppression_reasons(account: Account, indexes: list[bytes]) -> dict[bytes, str]:
    rows = Suppression.objects.filter(account=account, email_index__in=indexes).values_list("email_index", "reason")
    return {bytes(index): reason for index, reason in rows}


def bulk_upsert(account: Account, items: Sequence[Any], *, source: str) -> list[ItemResult]:
    """Create or update up to MAX_BULK_ITEMS contacts by address; one result per item, in order.

    A bad item gets an ``error`` result and never stops the others. Existing
    contacts and suppressions are found with one query each for the whole
    batch; new contacts are inserted together. Raises ContactError only for
    a batch that is too large.
    """
    if len(items) > MAX_BULK_ITEMS:
        raise ContactError(
            f"At most {MAX_BULK_ITEMS:,} contacts per request.",
            errors={"contacts": [f"At most {MAX_BULK_ITEMS:,} contacts per request; send {len(items):,} in parts."]},
        )
    fields = _fields_by_key(account) if any(isinstance(i, Mapping) and "attributes" in i for i in items) else {}
    results: dict[int, ItemResult] = {}
    checked: list[tuple[int, _Changes]] = []
    for index, item in enumerate(items):
        try:
            given = parse_contact_input(item)
            if "email" not in given:
                raise ContactError("An email address is required.", errors={"email": ["This field is required."]})
            checked.append((index, _clean(fields, **given)))
        except ContactError as error:
            results[index] = ItemResult(index, "error", errors=error.errors or {"non_field_errors": [error.message]})
    if checked:
        results |= _upsert_checked(account, checked, source=source)
        if any(result.status in ("created", "updated") for result in results.values()):
            segments.audience_changed(account)
    return [results[index] for index in range(len(items))]


def _upsert_checked(account: Account, checked: list[tuple[int, _Changes]], *, source: str) -> dict[int, ItemResult]:
    results: dict[int, ItemResult] = {}
    indexes = blind_index_column(account.public_id, "email", [changes.email or "" for _, changes in checked])
    existing = {
        bytes(contact.email_index): contact
        for contact in Contact.objects.filter(account=account, email_index__in=indexes)
    }
    suppressed = _suppression_reasons(account, indexes)
    first_seen: dict[bytes, int] = {}
    created: list[tuple[int, Contact, _Changes]] = []
    updated: list[tuple[int, Contact, _Changes, list[str]]] = []
    for (index, changes), email_index in zip(checked, indexes, strict=True):
        if email_index in first_seen:
            results[index] = ItemResult(
                index,
                "error",
                errors={"email": [f"This address is also item {first_seen[email_index]} of the request."]},
            )
            continue
        first_seen[email_index] = index
        contact = existing.get(email_index)
        refusal = _consent_refusal(contact.status if contact else None, changes, suppressed.get(email_index))
        if refusal is not None:
            results[index] = ItemResult(index, "error", errors=refusal.errors)
            continue
        if contact is None:
            contact = Contact(
                account=account,
                email=changes.email,
                first_name=changes.first_name or "",
                last_name=changes.last_name or "",
                status=changes.status or Contact.Status.SUBSCRIBED,
                source=source,
                attributes={key: value for key, value in changes.attributes.items() if value is not None},
            )
            created.append((index, contact, changes))
        else:
            updated.append((index, contact, changes, _apply(contact, changes)))
    with transaction.atomic():
        results |= _insert_new(created)
        written = [(contact, changes) for index, contact, changes in created if results[index].status == "created"]
        written += [(contact, changes) for _, contact, changes, _ in updated]
        touched = _write_tags_and_values(account, written)
        for index, contact, _, changed in updated:
            if changed or contact.pk in touched:
                contact.save(update_fields=[*changed, "updated_at"])
            results[index] = ItemResult(index, "updated", contact)
    return results


def _insert_new(created: list[tuple[int, Contact, _Changes]]) -> dict[int, ItemResult]:
    """Insert new contacts together; if another request inserted one of the addresses meanwhile, one by one."""
    if not created:
        return {}
    try:
        with transaction.atomic():
            Contact.objects.bulk_create([contact for _, contact, _ in created])
        return {index: ItemResult(index, "created", contact) for index, contact, _ in created}
    except IntegrityError:
        pass
    results = {}
    for index, contact, _ in created:
        contact.pk = None
        try:
            with transaction.atomic():
                contact.save(force_insert=True)
            results[index] = ItemResult(index, "created", contact)
        except IntegrityError:
            message = "Another request added this address at the same moment; send the item again to update it."
            results[index] = ItemResult(index, "error", errors={"email": [message]})
    return results


def delete_contact(account: Account, contact: Contact) -> None:
    """Delete the contact with its subscriptions, tags and values; records ``contact.deleted``.

    Deleting does not suppress the address: to forget a person for good, erase them (GDPR).
    """
    with transaction.atomic():
        record("contact.deleted", account=account, target=contact)
        contact.delete()


# --- lists and segments (dashboard) ---------------------------------------------------------


def save_mailing_list(account: Account, mailing_list: MailingList, data: dict[str, Any]) -> MailingList:
    """Create or change a list's name, description, opt-in, public form and consent text."""
    mailing_list.name = data["name"].strip()
    mailing_list.description = data.get("description", "").strip()
    mailing_list.opt_in = data["opt_in"]
    mailing_list.form_enabled = bool(data.get("form_enabled"))
    mailing_list.consent_text = data.get("consent_text", "").strip()
    with transaction.atomic():
        mailing_list.save()
    return mailing_list


def delete_mailing_list(account: Account, mailing_list: MailingList) -> None:
    """Delete the list and its subscriptions (one DELETE each), recorded as ``list.deleted``; contacts stay."""
    with transaction.atomic():
        record(
            "list.deleted",
            account=account,
            target=("list", mailing_list.public_id),
            data={"subscribers": subscriber_count(account, mailing_list)},
        )
        mailing_list.delete()


def save_segment(account: Account, segment: Segment | None, *, name: str, definition: dict[str, Any]) -> Segment:
    """Create or change a segment; a changed definition forgets the background count until it is counted again."""
    segment = segment or Segment(account=account)
    if segment.pk is not None and segment.definition != definition:
        segment.cached_count = None
        segment.counted_at = None
    segment.name = name.strip()
    segment.definition = definition
    with transaction.atomic():
        segment.save()
    return segment
