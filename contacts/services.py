"""Every write to audiences."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from accounts.models import Account
from contacts.models import Contact, MailingList
from security.identifiers import canonical_email


class ContactError(Exception):
    """A contact change refused, with a message fit for the user."""


def create_mailing_list(account: Account, *, name: str, description: str = "") -> MailingList:
    """Create a list in the account."""
    mailing_list = MailingList(account=account, name=name.strip(), description=description.strip())
    mailing_list.save()
    return mailing_list


def create_contact(account: Account, *, email: str, first_name: str = "", last_name: str = "") -> Contact:
    """Add a contact; raises ContactError for an invalid address or one already in the account."""
    address = canonical_email(email)
    try:
        validate_email(address)
    except ValidationError:
        raise ContactError("Enter a valid email address.") from None
    contact = Contact(account=account, email=address, first_name=first_name.strip(), last_name=last_name.strip())
    try:
        with transaction.atomic():
            contact.save()
    except IntegrityError:
        raise ContactError("A contact with this email address already exists.") from None
    return contact
