"""Every write to audiences."""

from __future__ import annotations

from accounts.models import Account
from contacts.models import MailingList


def create_mailing_list(account: Account, *, name: str, description: str = "") -> MailingList:
    """Create a list in the account."""
    mailing_list = MailingList(account=account, name=name.strip(), description=description.strip())
    mailing_list.save()
    return mailing_list
