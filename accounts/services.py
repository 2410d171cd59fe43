"""Every write to accounts, users and memberships."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse

from accounts.models import Account, Membership, Role, User
from accounts.tokens import activation_tokens
from security.identifiers import canonical_email
from security.keys import destroy_scope_keys

logger = logging.getLogger(__name__)


class AccountsError(Exception):
    """A request the accounts services refuse, with a message fit for the user."""


@dataclass(frozen=True)
class NewAccount:
    account: Account
    owner: User


def create_account(*, name: str, owner: User) -> Account:
    """Create an account with ``owner`` as its first owner."""
    with transaction.atomic():
        account = Account.objects.create(name=name.strip())
        Membership.objects.create(account=account, user=owner, role=Role.OWNER)
    return account


def delete_account(account: Account) -> None:
    """Delete an account and crypto-shred it.

    Its keys go first: from then on its ciphertext, in this database and in
    every backup of it, can no longer be read, even if deleting the rows
    fails halfway.
    """
    destroy_scope_keys(account.public_id)
    with transaction.atomic():
        account.delete()


def sign_up(*, email: str, password: str, account_name: str, full_name: str = "") -> None:
    """Start a sign-up; the caller learns nothing about whether the email is known.

    A new address gets an inactive user, its account, and an activation link by
    email. A registered address gets a notice instead. Both paths hash a
    password, so they take the same time.
    """
    address = canonical_email(email)
    existing = User.objects.with_email(address).first()
    if existing is not None:
        make_password(password)
        _send_email(
            address,
            "Someone tried to sign up with your address",
            "accounts/email/already_registered.txt",
            {"login_url": settings.BASE_URL + reverse("accounts:login")},
        )
        return
    with transaction.atomic():
        user = User.objects.create_user(address, password, full_name=full_name.strip(), is_active=False)
        create_account(name=account_name, owner=user)
    transaction.on_commit(lambda: send_activation_email(user))


def send_activation_email(user: User) -> None:
    token = activation_tokens.make_token(user)
    path = reverse("accounts:activate", kwargs={"user_id": user.public_id, "token": token})
    _send_email(
        user.email,
        "Confirm your Bluespark sign-up",
        "accounts/email/activate.txt",
        {"activation_url": settings.BASE_URL + path},
    )


def activate_user(*, user_id: str, token: str) -> User:
    """Activate the user named by a sign-up link; raises AccountsError on a bad or used link."""
    user = User.objects.filter(public_id=user_id, is_active=False).first()
    if user is None or not activation_tokens.check_token(user, token):
        raise AccountsError("This link is invalid or has expired. Sign up again or log in.")
    user.is_active = True
    user.save(update_fields=["is_active"])
    return user


def _send_email(address: str, subject: str, template: str, context: dict) -> None:
    send_mail(subject, render_to_string(template, context), None, [address])
