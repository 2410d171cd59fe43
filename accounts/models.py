"""The tenant (Account), people (User) and who may do what where (Membership)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.utils import timezone

from security.fields import BlindIndexField, EncryptedTextField, SealedQuerySet, blind_index_for
from security.identifiers import PublicIdField, canonical_email
from security.keys import PLATFORM_SCOPE


class Account(models.Model):
    """A customer of Bluespark: the unit every piece of data belongs to."""

    public_id = PublicIdField(prefix="acc", unique=True)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def user_email_index(email: str) -> bytes:
    """The blind index that finds a user by email (one index key for all users)."""
    return blind_index_for(PLATFORM_SCOPE, "email", email)


class UserManager(BaseUserManager.from_queryset(SealedQuerySet)):  # type: ignore[misc]
    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email_index=user_email_index(username or ""))

    def with_email(self, email: str) -> models.QuerySet[User]:
        return self.filter(email_index=user_email_index(email))

    def create_user(self, email: str, password: str | None = None, **fields: Any) -> User:
        user = self.model(email=canonical_email(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user


class User(AbstractBaseUser):
    """A person who signs in with an email address.

    The address is stored encrypted under the platform's key and found
    through its blind index. Staff (``is_staff``) are Bluespark's support
    people: they hold no membership and reach an account only through a
    support session.
    """

    public_id = PublicIdField(prefix="usr", unique=True)
    # Longer than Django's 128: the peppered hash also names its pepper.
    password = models.CharField(max_length=255)
    email = EncryptedTextField()
    email_index = BlindIndexField(source="email", purpose="email", unique=True)
    full_name = EncryptedTextField(default="", blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    # Django finds users by USERNAME_FIELD; ours is the index, and
    # get_by_natural_key turns an email into it.
    USERNAME_FIELD = "email_index"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.public_id

    def encryption_scope(self) -> str:
        return PLATFORM_SCOPE

    def clean(self) -> None:
        self.email = canonical_email(self.email)


class Role(models.TextChoices):
    """Need-to-access roles, each including everything below it."""

    VIEWER = "viewer", "Viewer"
    EDITOR = "editor", "Editor"
    ADMIN = "admin", "Admin"
    OWNER = "owner", "Owner"

    @property
    def rank(self) -> int:
        return _ROLE_RANK[self]

    def includes(self, other: Role) -> bool:
        return self.rank >= Role(other).rank


_ROLE_RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Membership(models.Model):
    """A user's role in one account. Staff never hold one."""

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["account", "user"], name="accounts_membership_account_user_uniq"),
        ]

    def __str__(self) -> str:
        return f"{self.user} is {self.role} of {self.account}"

    def has_role(self, minimum: Role | str) -> bool:
        return Role(self.role).includes(Role(minimum))
