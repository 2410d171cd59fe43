"""The shared cast of every test (STYLE.md), built once per test class.

Acme: alice (owner), bob (editor), vic (viewer); Globex: charlie (owner);
sam is Bluespark support staff with no membership, and uses two-factor
authentication (staff must). Each account has a list and a campaign.
"""

from __future__ import annotations

import pyotp
from django.test import TestCase
from django.utils import timezone

from accounts.models import Account, Membership, Role, TOTPDevice, User
from accounts.tenancy import account_scope
from campaigns.services import create_campaign
from contacts.services import create_mailing_list

PASSWORD = "correct horse battery staple 42"


def make_user(email: str, *, full_name: str = "", is_staff: bool = False) -> User:
    return User.objects.create_user(email, PASSWORD, full_name=full_name, is_staff=is_staff)


def make_account(name: str, members: dict[User, Role]) -> Account:
    account = Account.objects.create(name=name)
    for user, role in members.items():
        Membership.objects.create(account=account, user=user, role=role)
    return account


class Cast:
    """Attributes set on the test class by ``build_cast``."""

    alice: User
    bob: User
    vic: User
    charlie: User
    sam: User
    sam_totp_secret: str
    acme: Account
    globex: Account


def build_cast(target: type) -> None:
    target.alice = make_user("alice@acme.test", full_name="Alice Owner")
    target.bob = make_user("bob@acme.test", full_name="Bob Editor")
    target.vic = make_user("vic@acme.test", full_name="Vic Viewer")
    target.charlie = make_user("charlie@globex.test", full_name="Charlie Owner")
    target.sam = make_user("sam@bluespark.test", full_name="Sam Support", is_staff=True)
    target.sam_totp_secret = pyotp.random_base32()
    TOTPDevice.objects.create(user=target.sam, secret=target.sam_totp_secret, confirmed_at=timezone.now())
    target.acme = make_account("Acme", {target.alice: Role.OWNER, target.bob: Role.EDITOR, target.vic: Role.VIEWER})
    target.globex = make_account("Globex", {target.charlie: Role.OWNER})
    for account, prefix in ((target.acme, "acme"), (target.globex, "globex")):
        with account_scope(account):
            setattr(target, f"{prefix}_list", create_mailing_list(account, name=f"{account.name} customers"))
            setattr(target, f"{prefix}_campaign", create_campaign(account, name=f"{account.name} launch"))


class CastTestCase(TestCase, Cast):
    """A Django TestCase with the cast built once for the class."""

    @classmethod
    def setUpTestData(cls) -> None:
        build_cast(cls)
