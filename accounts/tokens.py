"""Single-use, expiring tokens for links sent by email."""

from __future__ import annotations

from django.contrib.auth.tokens import PasswordResetTokenGenerator

from accounts.models import User


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
