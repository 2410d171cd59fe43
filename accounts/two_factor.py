"""Two-factor authentication: TOTP devices (RFC 6238) and single-use recovery codes.

A code is accepted in the current 30-second step or one step either side
(clock drift), and only in a step later than the last one accepted for the
device, so a code seen over a shoulder or in a proxy log cannot be used
again. Wrong codes (TOTP and recovery alike) are counted per user in a Redis
token bucket: five in a burst, refilling over 15 minutes; while the bucket is
empty every code is refused, right or wrong, and the lockout and its end are
logged on ``bluespark.security`` under the user's public id, never the code.
The same changes, wrong codes and lockouts are audit events of the user (the
platform chain); the account's rule is an event of the account.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import re
import secrets
import time
from datetime import UTC, datetime

import pyotp
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.models import Account, Membership, RecoveryCode, TOTPDevice, User
from accounts.services import AccountsError
from audit.services import record
from security.ratelimit import RateLimit, hit

security_logger = logging.getLogger("bluespark.security")

ISSUER = "Bluespark"
# One step either side of now: a phone whose clock is up to 30 s off still works.
VALID_WINDOW = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_CODE_LENGTH = 10
# No 0/o, 1/l/i: codes are copied by hand from paper. 31**10 is about 2**49.
RECOVERY_CODE_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"
CODE_GUESSES = RateLimit("two-factor-codes", capacity=5, period=15 * 60)
LOCKOUT_MARKER_SECONDS = 24 * 3600

_TOTP_CODE = re.compile(r"\d{6}")
_SEPARATORS = re.compile(r"[\s-]+")


class TwoFactorError(AccountsError):
    """A two-factor request refused, with a message fit for the user."""


class WrongCode(TwoFactorError):
    """The code is not a current TOTP code nor an unused recovery code (or it was already used)."""


class TooManyCodeGuesses(TwoFactorError):
    """Refused without looking at the code: too many wrong codes lately. The caller answers 429."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TwoFactorRequired(TwoFactorError):
    """Two-factor authentication cannot be turned off: staff, or a member of an account requiring it."""


class SecondFactor(enum.StrEnum):
    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"


# --- reads ------------------------------------------------------------------------------


def has_confirmed_device(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed_at__isnull=False).exists()


def pending_device_for(user: User) -> TOTPDevice | None:
    """The device the user is enrolling (not confirmed yet), or None."""
    return TOTPDevice.objects.filter(user=user, confirmed_at__isnull=True).first()


def confirmed_device_for(user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed_at__isnull=False).first()


def recovery_codes_left(user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


def is_two_factor_required(user: User) -> bool:
    """Staff must use 2FA, and so must every member of an account that requires it."""
    return user.is_staff or Membership.objects.filter(user=user, account__require_two_factor=True).exists()


def two_factor_state(user: User) -> tuple[bool, bool]:
    """(has a confirmed device, is required to have one), in one query: the middleware asks on every request."""
    row = (
        User.objects.filter(pk=user.pk)
        .annotate(
            enrolled=Exists(TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed_at__isnull=False)),
            in_requiring_account=Exists(
                Membership.objects.filter(user=OuterRef("pk"), account__require_two_factor=True)
            ),
        )
        .values_list("enrolled", "in_requiring_account", "is_staff")
        .first()
    )
    if row is None:
        return False, False
    enrolled, in_requiring_account, is_staff = row
    return enrolled, is_staff or in_requiring_account


def members_without_two_factor(account: Account) -> int:
    """How many of the account's members have not confirmed a device."""
    confirmed = TOTPDevice.objects.filter(user=OuterRef("user"), confirmed_at__isnull=False)
    return Membership.objects.filter(account=account).exclude(Exists(confirmed)).count()


def provisioning_uri(user: User, device: TOTPDevice) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code. It holds the secret."""
    return pyotp.TOTP(device.secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def format_recovery_code(code: str) -> str:
    """``abcdefghjk`` as the user sees it: ``abcde-fghjk``."""
    middle = len(code) // 2
    return f"{code[:middle]}-{code[middle:]}"


def normalise_code(code: str) -> str:
    """What the user typed, without spaces or hyphens, lower-cased."""
    return _SEPARATORS.sub("", code).lower()


# --- writes -----------------------------------------------------------------------------


def start_enrolment(user: User) -> TOTPDevice:
    """Give the user a new, unconfirmed TOTP device with a fresh 160-bit secret.

    An earlier unconfirmed device is replaced, so only the last QR code shown
    can be confirmed. Raises TwoFactorError when a confirmed device exists:
    it must be turned off first.
    """
    with transaction.atomic():
        existing = TOTPDevice.objects.select_for_update().filter(user=user).first()
        if existing is not None and existing.is_confirmed:
            raise TwoFactorError("Two-factor authentication is already on.")
        if existing is not None:
            existing.delete()
        device = TOTPDevice(user=user, secret=pyotp.random_base32())
        device.save()
    security_logger.info("two_factor_enrolment_started", extra={"user": user.public_id})
    return device


@sensitive_variables("code", "codes")
def confirm_enrolment(user: User, *, code: str) -> list[str]:
    """Confirm the unconfirmed device with a current code; returns 10 new recovery codes, shown once.

    Only their hashes are stored. Raises WrongCode, TooManyCodeGuesses, or
    TwoFactorError when there is no enrolment to confirm.
    """
    _refuse_while_locked(user)
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=True).first()
        if device is None:
            raise TwoFactorError("Start setting up two-factor authentication again.")
        step = _accepted_step(device, normalise_code(code))
        if step is not None:
            device.confirmed_at = timezone.now()
            device.last_used_step = step
            device.save(update_fields=["confirmed_at", "last_used_step"])
            codes = _replace_recovery_codes(user)
            record("auth.two_factor_enabled", actor=user, target=device)
    if step is None:
        _count_wrong_code(user, during="enrolment")
        raise WrongCode("That code is not right. Enter the code your app shows now.")
    security_logger.info("two_factor_enabled", extra={"user": user.public_id, "device": device.public_id})
    return codes


@sensitive_variables("code", "normalised")
def verify_second_factor(user: User, *, code: str) -> SecondFactor:
    """Accept a current TOTP code (never one of an already used step) or an unused recovery code, once.

    A recovery code is marked used in the same transaction that finds it, under
    a row lock, so two requests cannot both spend it. Raises WrongCode or
    TooManyCodeGuesses; TwoFactorError when the user has no confirmed device.
    """
    _refuse_while_locked(user)
    normalised = normalise_code(code)
    accepted: SecondFactor | None = None
    codes_left = 0
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=False).first()
        if device is None:
            raise TwoFactorError("Two-factor authentication is not on for this user.")
        if _TOTP_CODE.fullmatch(normalised):
            step = _accepted_step(device, normalised)
            if step is not None:
                device.last_used_step = step
                device.save(update_fields=["last_used_step"])
                accepted = SecondFactor.TOTP
        elif len(normalised) == RECOVERY_CODE_LENGTH:
            spent = (
                RecoveryCode.objects.select_for_update()
                .filter(user=user, used_at__isnull=True, code_hash=_recovery_code_hash(user, normalised))
                .first()
            )
            if spent is not None:
                spent.used_at = timezone.now()
                spent.save(update_fields=["used_at"])
                accepted = SecondFactor.RECOVERY_CODE
                codes_left = recovery_codes_left(user)
                record("auth.recovery_code_used", actor=user, data={"codes_left": codes_left})
    if accepted is None:
        _count_wrong_code(user, during="verification")
        raise WrongCode("That code is not right, or it was already used.")
    if accepted is SecondFactor.RECOVERY_CODE:
        security_logger.warning("recovery_code_used", extra={"user": user.public_id, "recovery_codes_left": codes_left})
    return accepted


@sensitive_variables("codes")
def regenerate_recovery_codes(user: User) -> list[str]:
    """Replace every recovery code of an enrolled user with 10 new ones; returns them, shown once.

    Raises TwoFactorError when the user has no confirmed device.
    """
    with transaction.atomic():
        if not TOTPDevice.objects.select_for_update().filter(user=user, confirmed_at__isnull=False).exists():
            raise TwoFactorError("Turn on two-factor authentication first.")
        codes = _replace_recovery_codes(user)
        record("auth.recovery_codes_regenerated", actor=user, data={"count": len(codes)})
    security_logger.info("recovery_codes_regenerated", extra={"user": user.public_id})
    return codes


def disable_two_factor(user: User) -> None:
    """Remove the user's device and recovery codes.

    Raises TwoFactorRequired for staff and for members of an account that
    requires two-factor authentication.
    """
    if user.is_staff:
        raise TwoFactorRequired("Bluespark staff must use two-factor authentication.")
    with transaction.atomic():
        requiring = (
            Membership.objects.select_related("account")
            .filter(user=user, account__require_two_factor=True)
            .order_by("account__name")
            .first()
        )
        if requiring is not None:
            raise TwoFactorRequired(f"{requiring.account.name} requires two-factor authentication of its members.")
        confirmed = confirmed_device_for(user)
        TOTPDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        # Dropping an enrolment that was never confirmed turns nothing off.
        if confirmed is not None:
            record("auth.two_factor_disabled", actor=user, target=("totp_device", confirmed.public_id))
    security_logger.warning("two_factor_disabled", extra={"user": user.public_id})


def set_two_factor_requirement(account: Account, *, required: bool, actor: User) -> Account:
    """Require (or stop requiring) two-factor authentication of every member of the account.

    Members without a device are sent to enrol at their next request. A
    change is recorded as ``account.two_factor_required``.
    """
    with transaction.atomic():
        locked = Account.objects.select_for_update().get(pk=account.pk)
        changed = locked.require_two_factor != required
        locked.require_two_factor = required
        locked.save(update_fields=["require_two_factor"])
        if changed:
            record(
                "account.two_factor_required", account=locked, actor=actor, target=locked, data={"required": required}
            )
    account.require_two_factor = required
    if changed:
        security_logger.warning(
            "two_factor_requirement_changed",
            extra={"account": account.public_id, "user": actor.public_id, "required": required},
        )
    return account


# --- internals --------------------------------------------------------------------------


def _accepted_step(device: TOTPDevice, code: str) -> int | None:
    """The time step whose code this is, if it is within the window and later than the last one used."""
    if not _TOTP_CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(device.secret)
    current = totp.timecode(time.time())
    last_used = device.last_used_step if device.last_used_step is not None else -1
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if step > last_used and hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _recovery_code_hash(user: User, code: str) -> bytes:
    # The user's id is mixed in so one precomputed table cannot serve every user's codes.
    return hashlib.sha256(f"{user.public_id}:{code}".encode("ascii", "replace")).digest()


def _replace_recovery_codes(user: User) -> list[str]:
    RecoveryCode.objects.filter(user=user).delete()
    codes = [
        "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    RecoveryCode.objects.bulk_create(RecoveryCode(user=user, code_hash=_recovery_code_hash(user, c)) for c in codes)
    return [format_recovery_code(code) for code in codes]


def _lockout_marker(user: User) -> str:
    return f"bluespark:two-factor-locked:{user.public_id}"


def _refuse_while_locked(user: User) -> None:
    """Raise TooManyCodeGuesses while the user's bucket is empty; note the end of a lockout."""
    decision = hit(CODE_GUESSES, user.public_id, now=time.time(), cost=0)
    if not decision.allowed:
        security_logger.warning(
            "two_factor_attempt_refused", extra={"user": user.public_id, "retry_after": decision.retry_after}
        )
        raise TooManyCodeGuesses("Too many attempts, try again later.", retry_after=decision.retry_after)
    if cache.delete(_lockout_marker(user)):
        security_logger.info("two_factor_lockout_ended", extra={"user": user.public_id})
        record("auth.two_factor_lockout_ended", actor=user)


def _count_wrong_code(user: User, *, during: str) -> None:
    """Count a wrong code (``during`` "enrolment" or "verification": a login or a re-authentication)."""
    now = time.time()
    hit(CODE_GUESSES, user.public_id, now=now)
    security_logger.warning("two_factor_code_rejected", extra={"user": user.public_id})
    record("auth.two_factor_failed", actor=user, data={"during": during})
    after = hit(CODE_GUESSES, user.public_id, now=now, cost=0)
    if not after.allowed:
        # That was the last guess the bucket held: codes are refused until it refills a little.
        locked_until = datetime.fromtimestamp(now + after.retry_after, tz=UTC)
        cache.set(_lockout_marker(user), now, timeout=LOCKOUT_MARKER_SECONDS)
        security_logger.warning(
            "two_factor_lockout_started", extra={"user": user.public_id, "locked_until": locked_until.isoformat()}
        )
        record("auth.two_factor_lockout_started", actor=user, data={"locked_until": locked_until.isoformat()})
