"""Every write to accounts, users and memberships."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from axes.utils import reset as reset_axes_attempts
from django.apps import apps
from django.conf import settings
from django.contrib.auth import password_validation
from django.contrib.auth.hashers import make_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.key_cache import key_set_changed, token_hash
from accounts.lockout import lockout_cleared
from accounts.models import (
    Account,
    ApiKey,
    ApiScope,
    DataKeyRotation,
    EmailChange,
    Invitation,
    Membership,
    Role,
    User,
    user_email_index,
)
from accounts.sessions import end_other_sessions
from accounts.tenancy import TenantModel
from accounts.tokens import EMAIL_CHANGE_TIMEOUT, activation_tokens, email_change_tokens, password_reset_tokens
from audit.services import record
from security.fields import blind_index_for
from security.identifiers import canonical_email
from security.keys import add_data_key_version, destroy_scope_keys, retire_data_keys
from security.rotation import models_with_encrypted_fields, reseal_batch

logger = logging.getLogger(__name__)
security_logger = logging.getLogger("bluespark.security")


class AccountsError(Exception):
    """A request the accounts services refuse, with a message fit for the user."""


@dataclass(frozen=True)
class NewAccount:
    account: Account
    owner: User


def create_account(*, name: str, owner: User) -> Account:
    """Create an account with ``owner`` as its first owner, and record ``account.created``."""
    with transaction.atomic():
        account = Account.objects.create(name=name.strip())
        Membership.objects.create(account=account, user=owner, role=Role.OWNER)
        record("account.created", account=account, actor=owner, target=account)
    return account


def delete_account(account: Account, *, batch_rows: int | None = None) -> None:
    """Delete an account and crypto-shred it.

    Its keys go first: from then on its ciphertext, in this database and in
    every backup of it, can no longer be read, even if deleting the rows
    fails halfway.
    """
    destroy_scope_keys(account.public_id)
    for model in _tenant_models_children_first():
        _delete_in_batches(model.objects_unscoped_dangerous.filter(account=account), batch_rows or PURGE_BATCH_ROWS)
    with transaction.atomic():
        account.delete()


#: Rows deleted per transaction when an account is purged.
PURGE_BATCH_ROWS = 5_000


def _tenant_models_children_first() -> list[type[TenantModel]]:
    """Every account-owned model, a model before the models it points to (so cascades find nothing left)."""
    remaining = [m for m in apps.get_models() if issubclass(m, TenantModel) and not m._meta.proxy]
    targets = {
        model: {
            field.related_model for field in model._meta.concrete_fields if field.is_relation and field.related_model
        }
        - {model}
        for model in remaining
    }
    ordered: list[type[TenantModel]] = []
    while remaining:
        # Models no remaining model points to; a cycle (none today) is broken by taking the first one left.
        free = [m for m in remaining if not any(m in targets[other] for other in remaining)] or remaining[:1]
        ordered += free
        remaining = [m for m in remaining if m not in free]
    return ordered


def _delete_in_batches(rows: QuerySet, batch_rows: int = PURGE_BATCH_ROWS) -> int:
    """Delete ``rows`` a batch at a time, each batch (with its cascades) its own transaction; how many went.

    An account may hold millions of contacts, and a clean-up may find a long
    backlog: one ``delete()`` would collect every id in the worker's memory and
    hold every row lock in one transaction. A run cut short (a worker killed)
    leaves the rest for the task's next run.
    """
    deleted = 0
    while True:
        batch = list(rows.values_list("pk", flat=True)[:batch_rows])
        if not batch:
            return deleted
        with transaction.atomic():
            deleted += rows.filter(pk__in=batch).delete()[1].get(rows.model._meta.label, 0)


def rename_account(account: Account, *, name: str) -> Account:
    """Rename the account; ``account.renamed`` says only that it changed (a name can be personal data)."""
    name = name.strip()
    with transaction.atomic():
        changed = account.name != name
        account.name = name
        account.save(update_fields=["name"])
        if changed:
            record("account.renamed", account=account, target=account)
    return account


def close_account(account: Account, *, actor: User) -> None:
    """Delete an account at an owner's request.

    At once: its keys are destroyed (its data, here and in every backup, can
    no longer be read), and its memberships, invitations and API keys go, so
    no one and nothing reaches it any more. Its remaining rows are removed by
    a background task (an account may hold millions of them).
    """
    from accounts.tasks import purge_account

    destroy_scope_keys(account.public_id)
    with transaction.atomic():
        ApiKey.objects.filter(account=account).delete()
        key_set_changed()
        Invitation.objects.filter(account=account).delete()
        Membership.objects.filter(account=account).delete()
        # The account's events stay when its rows are purged: they hold no foreign key.
        record("account.deleted", account=account, actor=actor, target=account)
        transaction.on_commit(lambda: purge_account.delay(account.public_id))
    security_logger.warning("account_deleted", extra={"account": account.public_id, "user": actor.public_id})


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


ROTATION_BATCH_SIZE = 500


def encrypted_tenant_models() -> list[type[TenantModel]]:
    """Every tenant model holding encrypted values, in a stable order."""
    return models_with_encrypted_fields([m for m in apps.get_models() if issubclass(m, TenantModel)])


def start_data_key_rotation(account: Account) -> DataKeyRotation:
    """Give the account a new data key and re-seal its values with it in the background.

    Reads keep working throughout: old values open with the old key until the
    rotation has moved them and destroys it. Raises AccountsError when a
    rotation is already running.
    """
    from accounts.tasks import reseal_account_data

    if DataKeyRotation.objects.filter(account=account, status=DataKeyRotation.Status.RUNNING).exists():
        raise AccountsError("A key rotation is already running for this account.")
    version = add_data_key_version(account.public_id)
    total = sum(model.objects.filter(account=account).count() for model in encrypted_tenant_models())
    rotation = DataKeyRotation(account=account, target_version=version, rows_total=total)
    rotation.save()
    transaction.on_commit(lambda: reseal_account_data.delay(account.public_id, rotation.public_id))
    return rotation


def advance_data_key_rotation(
    account: Account, rotation: DataKeyRotation, *, time_budget: float, batch_size: int = ROTATION_BATCH_SIZE
) -> float | None:
    """Re-seal batches for about ``time_budget`` seconds.

    Returns how many seconds to wait before calling again, or None once the
    rotation is done and the old keys are destroyed. A Redis lock keeps a
    redelivered task from working on the same rotation at the same time.
    """
    lock = f"bluespark:rotation:{rotation.public_id}"
    if not cache.add(lock, "1", timeout=int(time_budget) + 60):
        return time_budget
    try:
        return _advance_rotation(account, rotation, time_budget=time_budget, batch_size=batch_size)
    finally:
        cache.delete(lock)


def _advance_rotation(
    account: Account, rotation: DataKeyRotation, *, time_budget: float, batch_size: int
) -> float | None:
    models = encrypted_tenant_models()
    labels = [model._meta.label for model in models]
    deadline = time.monotonic() + time_budget
    if rotation.pass_started_at is None:
        rotation.pass_started_at = timezone.now()
    position = labels.index(rotation.cursor_model) if rotation.cursor_model in labels else 0
    while position < len(models):
        result = reseal_batch(
            models[position].objects.filter(account=account), after_pk=rotation.cursor_pk, batch_size=batch_size
        )
        if result.examined:
            rotation.cursor_model, rotation.cursor_pk = labels[position], result.last_pk
            rotation.resealed_this_pass += result.resealed
            if rotation.passes == 1:
                rotation.rows_done += result.examined
        else:
            position += 1
            rotation.cursor_model, rotation.cursor_pk = (labels[position] if position < len(labels) else ""), None
        _save_rotation(rotation)
        if position < len(models) and time.monotonic() > deadline:
            return 0
    settled_at = rotation.started_at + timedelta(seconds=settings.DATA_KEY_CACHE_SECONDS)
    if rotation.resealed_this_pass == 0 and rotation.pass_started_at >= settled_at:
        retire_data_keys(account.public_id, older_than=rotation.target_version)
        rotation.status = DataKeyRotation.Status.DONE
        rotation.finished_at = timezone.now()
        rotation.rows_done = max(rotation.rows_done, rotation.rows_total)
        _save_rotation(rotation)
        return None
    rotation.passes += 1
    rotation.pass_started_at = None
    rotation.resealed_this_pass = 0
    rotation.cursor_model, rotation.cursor_pk = "", None
    _save_rotation(rotation)
    return max(0.0, (settled_at - timezone.now()).total_seconds())


def _save_rotation(rotation: DataKeyRotation) -> None:
    rotation.save(
        update_fields=[
            "status",
            "rows_done",
            "passes",
            "pass_started_at",
            "resealed_this_pass",
            "cursor_model",
            "cursor_pk",
            "finished_at",
        ]
    )


# --- API keys -------------------------------------------------------------------------

API_KEY_TAG = "bsk"
API_KEY_PREFIX_BYTES = 6
API_KEY_SECRET_BYTES = 32


@dataclass(frozen=True)
class IssuedApiKey:
    key: ApiKey
    token: str  # shown once, never stored


def create_api_key(
    account: Account, *, name: str, scopes: list[str], created_by: User, expires_at: datetime | None = None
) -> IssuedApiKey:
    """Issue a key; the token is in the result and nowhere else. Raises AccountsError on bad input.

    ``api_key.created`` keeps the scopes and the expiry, not the name (free text an admin typed).
    """
    unknown = set(scopes) - set(ApiScope.values)
    if unknown or not scopes:
        raise AccountsError("Choose at least one known scope.")
    if expires_at is not None and expires_at <= timezone.now():
        raise AccountsError("The expiry must be in the future.")
    prefix = base64.b32encode(secrets.token_bytes(API_KEY_PREFIX_BYTES)).decode("ascii").rstrip("=").lower()
    token = f"{API_KEY_TAG}_{prefix}_{secrets.token_urlsafe(API_KEY_SECRET_BYTES)}"
    key = ApiKey(
        account=account,
        name=name.strip(),
        prefix=prefix,
        secret_hash=token_hash(token),
        scopes=sorted(set(scopes)),
        created_by=created_by,
        expires_at=expires_at,
    )
    with transaction.atomic():
        key.save()
        record(
            "api_key.created",
            account=account,
            actor=created_by,
            target=key,
            data={"scopes": key.scopes, "expires_at": expires_at.isoformat() if expires_at else None},
        )
    return IssuedApiKey(key, token)


def revoke_api_key(account: Account, key: ApiKey) -> ApiKey:
    """Revoke a key at once; revoking twice keeps the first time."""
    if key.account_id != account.pk:
        raise AccountsError("This key belongs to another account.")
    if key.revoked_at is None:
        with transaction.atomic():
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            record("api_key.revoked", account=account, target=key)
            # Processes that keep verified keys (accounts.key_cache) forget them now and at commit.
            key_set_changed()
    return key


# ``bsk_<prefix>_<secret>``: the prefix is 6 random bytes in unpadded, lower-case base32.
_API_KEY_PREFIX = re.compile(r"[a-z2-7]{10}")


def api_key_prefix(token: str) -> str | None:
    """The non-secret prefix of a token shaped like one of our keys, or None.

    Only a well-formed prefix is returned, so whatever a client put in its
    place (a secret pasted whole, an address) is never kept.
    """
    tag, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    if tag != API_KEY_TAG or not secret or not _API_KEY_PREFIX.fullmatch(prefix):
        return None
    return prefix


def verify_api_key(token: str) -> ApiKey | None:
    """The live key a token names, or None: unknown prefix, wrong secret, revoked or expired look alike.

    Looked up by its non-secret prefix (across accounts: the request names no
    account), then the token's SHA-256 is compared in constant time.
    """
    tag, _, rest = token.partition("_")
    prefix, _, secret = rest.partition("_")
    if tag != API_KEY_TAG or not prefix or not secret or len(token) > 200:
        return None
    try:
        # get(), not first(): the prefix is unique, and first()'s ORDER BY only costs planning on every request.
        key = ApiKey.objects_unscoped_dangerous.select_related("account").get(prefix=prefix)
    except ApiKey.DoesNotExist:
        return None
    if not hmac.compare_digest(bytes(key.secret_hash), token_hash(token)):
        return None
    if not key.is_usable_at(timezone.now()):
        return None
    return key


API_KEY_LAST_USED_PRECISION = timedelta(minutes=1)


def note_api_key_use(key: ApiKey) -> None:
    """Record when a key was last used, at most once a minute (not one write per request)."""
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= API_KEY_LAST_USED_PRECISION:
        ApiKey.objects_unscoped_dangerous.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now


# --- Passwords ------------------------------------------------------------------------

PASSWORD_RESET_REQUESTS_PER_EMAIL = 5
PASSWORD_RESET_REQUESTS_PER_IP = 20
PASSWORD_RESET_WINDOW_SECONDS = 3600
PASSWORD_CHANGE_ATTEMPTS_PER_USER = 10
PASSWORD_CHANGE_WINDOW_SECONDS = 3600
INVALID_RESET_LINK = "This password reset link is invalid or has expired. Ask for a new one."


class TooManyAttempts(AccountsError):
    """A request refused because too many like it came in recently; the caller answers 429."""


class PasswordRefused(AccountsError):
    """A new password the validators (length, similarity, common passwords) refuse."""


def count_attempt_within_limit(bucket: str, *, limit: int, window_seconds: int) -> bool:
    """Count one attempt in ``bucket``'s fixed window; False once the window holds more than ``limit``.

    The window lives in the shared cache (Redis): ``add`` opens it only when none
    is running and ``incr`` is atomic there, so every process shares one count.
    """
    key = f"bluespark:attempts:{bucket}"
    cache.add(key, 0, timeout=window_seconds)
    try:
        count = cache.incr(key)
    except ValueError:
        # The window closed between add and incr: this attempt opens the next one.
        cache.add(key, 1, timeout=window_seconds)
        count = 1
    return count <= limit


def request_password_reset(*, email: str, ip: str | None) -> None:
    """Email a reset link to the active user with that address; the caller learns nothing either way.

    An unknown or inactive address gets no mail after the same lookup and token
    hashing. Raises TooManyAttempts past 5 requests an hour for one address or
    20 from one IP, whether the address is registered or not.
    """
    address = canonical_email(email)
    # Counted under the blind index, so the cache never holds the address.
    within_email = count_attempt_within_limit(
        f"password-reset:email:{user_email_index(address).hex()}",
        limit=PASSWORD_RESET_REQUESTS_PER_EMAIL,
        window_seconds=PASSWORD_RESET_WINDOW_SECONDS,
    )
    within_ip = count_attempt_within_limit(
        f"password-reset:ip:{ip or 'unknown'}",
        limit=PASSWORD_RESET_REQUESTS_PER_IP,
        window_seconds=PASSWORD_RESET_WINDOW_SECONDS,
    )
    if not (within_email and within_ip):
        raise TooManyAttempts("Too many password reset requests. Wait an hour, then try again.")
    user = User.objects.with_email(address).filter(is_active=True).first()
    if user is None:
        password_reset_tokens.make_token(User(email=address))  # the work a real link costs
        return
    token = password_reset_tokens.make_token(user)
    path = reverse("accounts:password_reset_confirm", kwargs={"user_id": user.public_id, "token": token})
    context = {"reset_url": settings.BASE_URL + path, "hours": settings.PASSWORD_RESET_TIMEOUT // 3600}
    with transaction.atomic():
        record("auth.password_reset_requested", actor=user)
        transaction.on_commit(
            lambda: _send_email(
                user.email, "Reset your Bluespark password", "accounts/email/password_reset.txt", context
            )
        )


def check_password_reset_link(*, user_id: str, token: str) -> User:
    """The active user a reset link names; raises AccountsError when the link is bad, used or expired."""
    user = User.objects.filter(public_id=user_id, is_active=True).first()
    if user is None or not password_reset_tokens.check_token(user, token):
        raise AccountsError(INVALID_RESET_LINK)
    return user


def reset_password(*, user_id: str, token: str, new_password: str) -> User:
    """Set the password of the user a reset link names, which ends the link and every session.

    Sessions end because their stored hash derives from the old password, and
    their rows leave the user's session list; the user's failed logins are
    forgiven. Raises AccountsError on a bad, used or expired link,
    PasswordRefused for a password the validators refuse.
    """
    with transaction.atomic():
        # The row lock keeps the link single-use when two submissions race: the
        # second one reads the new password hash, which its token no longer matches.
        user = User.objects.select_for_update().filter(public_id=user_id, is_active=True).first()
        if user is None or not password_reset_tokens.check_token(user, token):
            raise AccountsError(INVALID_RESET_LINK)
        _validate_new_password(new_password, user)
        user.set_password(new_password)
        user.save(update_fields=["password"])
        ended = end_other_sessions(user, keep=None)
        record("auth.password_reset", actor=user, data={"sessions_ended": ended})
        # Axes knows the user by the blind index's hex (accounts/lockout.py).
        reset_axes_attempts(username=bytes(user.email_index).hex())
        lockout_cleared(user, reason="password_reset")
    return user


def change_password(user: User, *, current_password: str, new_password: str, keep_session: str | None = None) -> None:
    """Replace a signed-in user's password and tell them by email.

    Every session but ``keep_session`` (a ``UserSession`` public id) ends: it
    leaves the session list, and its stored hash no longer matches. The caller
    keeps its own with ``update_session_auth_hash``. Raises AccountsError on a
    wrong current password, PasswordRefused for a new one the validators
    refuse, TooManyAttempts past 10 tries an hour.
    """
    if not count_attempt_within_limit(
        f"password-change:user:{user.public_id}",
        limit=PASSWORD_CHANGE_ATTEMPTS_PER_USER,
        window_seconds=PASSWORD_CHANGE_WINDOW_SECONDS,
    ):
        raise TooManyAttempts("Too many attempts to change your password. Wait an hour, then try again.")
    if not user.check_password(current_password):
        raise AccountsError("That is not your current password.")
    _validate_new_password(new_password, user)
    context = {"reset_request_url": settings.BASE_URL + reverse("accounts:password_reset")}
    with transaction.atomic():
        user.set_password(new_password)
        user.save(update_fields=["password"])
        ended = end_other_sessions(user, keep=keep_session)
        record("auth.password_changed", actor=user, data={"other_sessions_ended": ended})
        transaction.on_commit(
            lambda: _send_email(
                user.email, "Your Bluespark password was changed", "accounts/email/password_changed.txt", context
            )
        )


def _validate_new_password(password: str, user: User) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as error:
        raise PasswordRefused(" ".join(error.messages)) from None


# --- team -----------------------------------------------------------------------------

INVITATION_DAYS = 7


@dataclass(frozen=True)
class SentInvitation:
    invitation: Invitation
    token: str  # in the emailed link only


def _invitation_token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _check_can_grant(actor: Membership, role: str) -> None:
    if role not in Role.values:
        raise AccountsError("Choose a role.")
    if role == Role.OWNER and not actor.has_role(Role.OWNER):
        raise AccountsError("Only an owner can make someone an owner.")


def invite_member(account: Account, *, email: str, role: str, invited_by: Membership) -> SentInvitation:
    """Invite someone by email with a role; the link is signed by a random token and expires in a week.

    Raises AccountsError for a bad address, a role the inviter may not grant,
    or someone who is already a member.
    """
    address = canonical_email(email)
    try:
        validate_email(address)
    except ValidationError:
        raise AccountsError("Enter a valid email address.") from None
    _check_can_grant(invited_by, role)
    if Membership.objects.filter(account=account, user__email_index=user_email_index(address)).exists():
        raise AccountsError("This person is already a member of the account.")
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        invitation = Invitation(
            account=account,
            email=address,
            role=role,
            token_hash=_invitation_token_hash(token),
            invited_by=invited_by.user,
            expires_at=timezone.now() + timedelta(days=INVITATION_DAYS),
        )
        invitation.save()
        # The role only: the address is personal data, and the trail is never edited.
        record("member.invited", account=account, actor=invited_by.user, target=invitation, data={"role": role})
        link = settings.BASE_URL + reverse("invitations:accept", kwargs={"token": token})
        context = {"account_name": account.name, "role": Role(role).label, "link": link, "days": INVITATION_DAYS}
        transaction.on_commit(
            lambda: _send_email(address, f"Join {account.name} on Bluespark", "accounts/email/invitation.txt", context)
        )
    return SentInvitation(invitation, token)


def find_open_invitation(token: str) -> Invitation | None:
    """The open invitation a link names (not expired, used or withdrawn), or None."""
    invitation = (
        Invitation.objects_unscoped_dangerous.select_related("account")
        .filter(token_hash=_invitation_token_hash(token))
        .first()
    )
    if invitation is None or not invitation.is_open_at(timezone.now()):
        return None
    return invitation


def accept_invitation(invitation: Invitation, *, user: User) -> Membership:
    """Make the invited person a member; only the address that was invited may accept."""
    if not hmac.compare_digest(bytes(invitation.email_index), bytes(user_email_index_for_account(invitation, user))):
        raise AccountsError("This invitation was sent to another email address.")
    with transaction.atomic():
        locked = Invitation.objects_unscoped_dangerous.select_for_update().get(pk=invitation.pk)
        if not locked.is_open_at(timezone.now()):
            raise AccountsError("This invitation is no longer valid.")
        membership, joined = Membership.objects.get_or_create(
            account=invitation.account, user=user, defaults={"role": invitation.role}
        )
        locked.accepted_at = timezone.now()
        locked.save(update_fields=["accepted_at"])
        if joined:
            record(
                "member.joined",
                account=invitation.account,
                actor=user,
                target=("user", user.public_id),
                data={"role": membership.role, "invitation": invitation.public_id},
            )
    return membership


def user_email_index_for_account(invitation: Invitation, user: User) -> bytes:
    """The user's address indexed the way the invitation's is (under the account's index key)."""
    return blind_index_for(invitation.account.public_id, "email", user.email)


def withdraw_invitation(account: Account, invitation: Invitation) -> None:
    """Withdraw an open invitation; an accepted or already withdrawn one is left as it is."""
    if invitation.accepted_at is None and invitation.revoked_at is None:
        with transaction.atomic():
            invitation.revoked_at = timezone.now()
            invitation.save(update_fields=["revoked_at"])
            record("member.invitation_withdrawn", account=account, target=invitation)


def purge_dead_invitations() -> int:
    """Delete every account's invitations that were never accepted and now cannot be; how many went.

    Their address is personal data, and the team page lists open invitations
    only, so no one reads these again. Accepted ones stay (the member they made
    has the address anyway). Beat runs this hourly (``accounts.tasks``); safe
    to run twice. No event: the withdrawal has its own, and an expiry is no one's action.
    """
    dead = Invitation.objects_unscoped_dangerous.filter(accepted_at__isnull=True).filter(
        Q(expires_at__lte=timezone.now()) | Q(revoked_at__isnull=False)
    )
    return _delete_in_batches(dead)


def _owner_count(account: Account) -> int:
    return Membership.objects.select_for_update().filter(account=account, role=Role.OWNER).count()


def change_member_role(account: Account, membership: Membership, *, role: str, actor: Membership) -> Membership:
    """Change a member's role; the account always keeps an owner, and only owners touch owners."""
    _check_can_grant(actor, role)
    if membership.role == Role.OWNER and not actor.has_role(Role.OWNER):
        raise AccountsError("Only an owner can change another owner's role.")
    with transaction.atomic():
        if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(account) <= 1:
            raise AccountsError("The account needs at least one owner: make someone else an owner first.")
        old_role = membership.role
        membership.role = role
        membership.save(update_fields=["role"])
        if old_role != role:
            record(
                "member.role_changed",
                account=account,
                actor=actor.user,
                target=("user", membership.user.public_id),
                data={"old": old_role, "new": role},
            )
    return membership


def remove_member(account: Account, membership: Membership, *, actor: Membership) -> None:
    """Remove a member (or let one leave); the last owner cannot go."""
    if membership.role == Role.OWNER and not actor.has_role(Role.OWNER):
        raise AccountsError("Only an owner can remove an owner.")
    with transaction.atomic():
        if membership.role == Role.OWNER and _owner_count(account) <= 1:
            raise AccountsError("The account needs at least one owner: make someone else an owner first.")
        member = membership.user.public_id
        membership.delete()
        record(
            "member.removed",
            account=account,
            actor=actor.user,
            target=("user", member),
            data={"role": membership.role},
        )


# --- Profile and email ----------------------------------------------------------------

EMAIL_CHANGE_REQUESTS_PER_USER = 5
EMAIL_CHANGE_WINDOW_SECONDS = 3600
INVALID_EMAIL_CHANGE_LINK = (
    "This email change link is invalid, was already used, was replaced by a newer request, or has expired. "
    "Ask for a new one from your profile."
)
EMAIL_TAKEN_SINCE = "Another Bluespark account now uses this address, so it cannot become yours. Nothing was changed."


def change_full_name(user: User, *, full_name: str) -> User:
    """Set the name the user is shown and addressed by (blank is allowed, as at sign-up)."""
    user.full_name = full_name.strip()
    user.save(update_fields=["full_name"])
    return user


def request_email_change(user: User, *, new_email: str) -> None:
    """Ask the new address to confirm that the user may sign in with it; nothing changes until it does.

    The new address gets a single-use link valid for a day or, when another
    user already has it, a note saying so instead: the caller's answer is the
    same either way. The current address is told of the request. A newer
    request withdraws the older ones. Raises AccountsError for an invalid
    address or the current one, TooManyAttempts past 5 requests an hour.
    """
    address = canonical_email(new_email)
    try:
        validate_email(address)
    except ValidationError:
        raise AccountsError("Enter a valid email address.") from None
    if not count_attempt_within_limit(
        f"email-change:user:{user.public_id}",
        limit=EMAIL_CHANGE_REQUESTS_PER_USER,
        window_seconds=EMAIL_CHANGE_WINDOW_SECONDS,
    ):
        raise TooManyAttempts("Too many email change requests. Wait an hour, then try again.")
    index = user_email_index(address)
    if index == bytes(user.email_index):
        raise AccountsError("This is already your email address.")
    hours = EMAIL_CHANGE_TIMEOUT // 3600
    with transaction.atomic():
        # The row lock orders two requests of one user: the later one withdraws the earlier.
        # Used requests go too, so a user's former addresses are not kept here.
        User.objects.select_for_update().filter(pk=user.pk).first()
        EmailChange.objects.filter(user=user).delete()
        if User.objects.filter(email_index=index).exists():
            email_change_tokens.make_token(EmailChange(user=user, email=address))  # the work a real link costs
            to_new_address = (
                "Your Bluespark email change",
                "accounts/email/email_change_taken.txt",
                {"reset_request_url": settings.BASE_URL + reverse("accounts:password_reset")},
            )
        else:
            change = EmailChange(user=user, email=address, expires_at=timezone.now() + timedelta(hours=hours))
            change.save()
            token = email_change_tokens.make_token(change)
            path = reverse("accounts:email_change_confirm", kwargs={"user_id": user.public_id, "token": token})
            to_new_address = (
                "Confirm your new Bluespark email address",
                "accounts/email/email_change_confirm.txt",
                {"confirm_url": settings.BASE_URL + path, "hours": hours},
            )
        # Neither address: the trail holds no personal data.
        record("auth.email_change_requested", actor=user)
        current_address = user.email
        notice = {"reset_request_url": settings.BASE_URL + reverse("accounts:password_reset"), "hours": hours}
        transaction.on_commit(lambda: _send_email(address, *to_new_address))
        transaction.on_commit(
            lambda: _send_email(
                current_address,
                "A change of your Bluespark email address was requested",
                "accounts/email/email_change_requested.txt",
                notice,
            )
        )
    security_logger.info("email_change_requested", extra={"user": user.public_id})


def check_email_change_link(user: User, *, user_id: str, token: str) -> EmailChange:
    """The pending change a link confirms, for the signed-in user it was sent for.

    Raises AccountsError when the link is bad, someone else's, used, replaced
    by a newer request, or expired: all alike.
    """
    change = _open_email_change(user) if user_id == user.public_id else None
    if change is None or not email_change_tokens.check_token(change, token):
        raise AccountsError(INVALID_EMAIL_CHANGE_LINK)
    return change


def confirm_email_change(user: User, *, user_id: str, token: str, keep_session: str | None = None) -> User:
    """Make the address a link confirms the user's sign-in address, which ends the link.

    Every session but ``keep_session`` (a ``UserSession`` public id) ends; the
    caller rotates its own key. The previous address is told. Raises
    AccountsError on a link ``check_email_change_link`` refuses, or when
    another user took the address after the link was sent.
    """
    with transaction.atomic():
        # The row lock keeps the link single-use when two confirmations race: the
        # second one reads the new address, which its token no longer matches.
        locked = User.objects.select_for_update().filter(pk=user.pk, is_active=True).first()
        if locked is None:
            raise AccountsError(INVALID_EMAIL_CHANGE_LINK)
        change = check_email_change_link(locked, user_id=user_id, token=token)
        previous_address = locked.email
        locked.email = change.email
        try:
            with transaction.atomic():
                locked.save(update_fields=["email", "email_index"])
        except IntegrityError:
            raise AccountsError(EMAIL_TAKEN_SINCE) from None
        change.used_at = timezone.now()
        change.save(update_fields=["used_at"])
        ended = end_other_sessions(locked, keep=keep_session)
        record("auth.email_changed", actor=locked, data={"other_sessions_ended": ended})
        context = {"reset_request_url": settings.BASE_URL + reverse("accounts:password_reset")}
        transaction.on_commit(
            lambda: _send_email(
                previous_address,
                "Your Bluespark email address was changed",
                "accounts/email/email_changed.txt",
                context,
            )
        )
    security_logger.info("email_changed", extra={"user": locked.public_id})
    return locked


def purge_spent_email_changes() -> int:
    """Delete the email changes no link can confirm any more: used, or past their day; how many went.

    The pending address is personal data with no use once its link is dead, and a
    user who never follows (or never repeats) the request kept it for ever. Beat
    runs this hourly (``accounts.tasks``); safe to run twice. No event: the request
    and the change already have theirs, and an expiry is no one's action.
    """
    spent = EmailChange.objects.filter(Q(used_at__isnull=False) | Q(expires_at__lte=timezone.now()))
    return _delete_in_batches(spent)


def _open_email_change(user: User) -> EmailChange | None:
    """The user's newest pending change, if it is still open (the only one a link may confirm)."""
    change = (
        EmailChange.objects.filter(user=user, used_at__isnull=True, expires_at__gt=timezone.now())
        .order_by("-created_at", "-id")
        .first()
    )
    if change is not None:
        change.user = user
    return change


# --- retention --------------------------------------------------------------------------------
