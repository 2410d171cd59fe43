"""Single-use, expiring tokens for links sent by email."""

from __future__ import annotations

from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.utils.crypto import constant_time_compare
from django.utils.http import base36_to_int

from accounts.models import EmailChange, User


class ActivationTokenGenerator(PasswordResetTokenGenerator):
    """Signs the user's activation state: the link stops working once used.

    Expiry is ``PASSWORD_RESET_TIMEOUT``; the salt keeps activation and reset
    tokens from being interchangeable.
    """

    key_salt = "bluespark.accounts.ActivationTokenGenerator"

    def _make_hash_value(self, user: User, timestamp: int) -> str:
        return f"{user.public_id}{user.is_active}{user.password}{timestamp}"


activation_tokens = ActivationTokenGenerator()


class PasswordResetTokens(PasswordResetTokenGenerator):
    """Django's reset token under its own salt.

    Django's hash covers the password hash and ``last_login``, so a link stops
    working once the password changes or the user logs in; expiry is
    ``PASSWORD_RESET_TIMEOUT``.
    """

    key_salt = "bluespark.accounts.PasswordResetTokens"


password_reset_tokens = PasswordResetTokens()


EMAIL_CHANGE_TIMEOUT = 24 * 3600


class EmailChangeTokens(PasswordResetTokenGenerator):
    """Signs one pending email change for the link sent to the new address.

    The hash covers the user's current email index and the pending change
    (its id, its address and whether it was used): the link stops working once
    followed, once the user's address changes any other way, and once a newer
    change is requested (only the newest pending change is ever checked). It
    expires after ``EMAIL_CHANGE_TIMEOUT``, whatever ``PASSWORD_RESET_TIMEOUT``
    says.
    """

    key_salt = "bluespark.accounts.EmailChangeTokens"

    def _make_hash_value(self, change: EmailChange, timestamp: int) -> str:  # type: ignore[override]
        current = f"{change.user.public_id}{bytes(change.user.email_index).hex()}"
        return f"{current}{change.public_id}{change.email}{change.used_at}{timestamp}"

    def check_token(self, change: EmailChange | None, token: str | None) -> bool:  # type: ignore[override]
        """Django's check, with this generator's own expiry."""
        if change is None or not token:
            return False
        timestamp_b36, separator, _ = token.partition("-")
        if not separator:
            return False
        try:
            timestamp = base36_to_int(timestamp_b36)
        except ValueError:
            return False
        if self._num_seconds(self._now()) - timestamp > EMAIL_CHANGE_TIMEOUT:
            return False
        return any(
            constant_time_compare(self._make_token_with_timestamp(change, timestamp, secret), token)
            for secret in (self.secret, *self.secret_fallbacks)
        )


email_change_tokens = EmailChangeTokens()
