"""Reads of audiences, always within one account."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Account
from contacts.models import Contact, MailingList
from security.fields import blind_index_for


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
