"""Reads of audiences, always within one account."""

from __future__ import annotations

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from accounts.models import Account
from contacts.models import MailingList


def access_mailing_list(account: Account, public_id: str) -> MailingList:
    """The account's list with that id; Http404 when missing or another account's."""
    return get_object_or_404(MailingList.objects.filter(account=account), public_id=public_id)


def mailing_list_list(account: Account) -> QuerySet[MailingList]:
    return MailingList.objects.filter(account=account).order_by("-created_at", "-id")
