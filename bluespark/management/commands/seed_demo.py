"""``manage.py seed_demo``: the demo account of the embedded run (``make run``).

Idempotent: every run leaves exactly one active demo user, one "Demo Company"
account it owns, and at least one list and one campaign in it. The password is
generated once, kept in ``VAR_DIR/demo_password`` (mode 0600) and applied
again on every run, so the printed login always works. Refuses to run in
production.

It lives in ``bluespark`` rather than ``accounts`` because it writes through the
accounts, contacts and campaigns services: only the project may import all
three (DESIGN.md §2).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Account, Role, User
from accounts.services import create_account
from accounts.tenancy import account_scope
from campaigns.selectors import campaign_list
from campaigns.services import create_campaign
from contacts.selectors import mailing_list_list
from contacts.services import create_mailing_list

DEMO_ACCOUNT_NAME = "Demo Company"
LOGIN_FILE_NAME = "demo_password"


class Command(BaseCommand):
    help = "Create (or repair) the demo user, account, list and campaign, and print the login."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.IS_PROD:
            raise CommandError("seed_demo makes a user with a known password: it never runs in production.")
        password = demo_password(Path(settings.VAR_DIR) / LOGIN_FILE_NAME)
        with transaction.atomic():
            user = ensure_demo_user(settings.DEMO_USER_EMAIL, password)
            account = ensure_demo_account(user)
            with account_scope(account):
                if not mailing_list_list(account).exists():
                    create_mailing_list(account, name="Newsletter", description="Everyone who asked for news.")
                if not campaign_list(account).exists():
                    create_campaign(account, name="Welcome", subject="Welcome to Demo Company")
        self.stdout.write(f"Demo login: {user.email} with password {password} (account {account.public_id})")


def demo_password(path: Path) -> str:
    """The stored demo password, generated on first use; the file is made 0600 before anything is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        password = path.read_text(encoding="utf-8").strip()
        if not password:
            raise CommandError(f"{path} is empty: delete it and run seed_demo again.") from None
        return password
    password = secrets.token_urlsafe(18)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(password + "\n")
    return password


def ensure_demo_user(email: str, password: str) -> User:
    """The active demo user, whose password is ``password`` (re-applied when it was changed)."""
    user = User.objects.with_email(email).first()
    if user is None:
        return User.objects.create_user(email, password, full_name="Demo User")
    changed = []
    if not user.is_active:
        user.is_active = True
        changed.append("is_active")
    if not user.check_password(password):
        user.set_password(password)
        changed.append("password")
    if changed:
        user.save(update_fields=changed)
    return user


def ensure_demo_account(user: User) -> Account:
    """The "Demo Company" account that ``user`` owns, created on the first run."""
    account = (
        Account.objects.filter(name=DEMO_ACCOUNT_NAME, memberships__user=user, memberships__role=Role.OWNER)
        .order_by("created_at", "id")
        .first()
    )
    return account or create_account(name=DEMO_ACCOUNT_NAME, owner=user)
