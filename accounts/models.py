"""The tenant (Account), people (User) and who may do what where (Membership)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.db import models
from django.utils import timezone

from accounts.tenancy import TenantModel, public_id_constraints
from security.fields import BlindIndexField, EncryptedTextField, SealedQuerySet, blind_index_for
from security.identifiers import PublicIdField, canonical_email
from security.keys import PLATFORM_SCOPE


class Account(models.Model):
    """A customer of Bluespark: the unit every piece of data belongs to."""

    public_id = PublicIdField(prefix="acc", unique=True)
    name = models.CharField(max_length=200)
    # Set by an owner: every member must use two-factor authentication here.
    require_two_factor = models.BooleanField(default=False)
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


class DataKeyRotation(TenantModel):
    """Moving an account's encrypted values onto its newest data key, in the background.

    Passes over every encrypted row until one pass finds nothing left on an
    older key and began after every process had learned of the new key
    (``settings.DATA_KEY_CACHE_SECONDS``); then the old keys are
    destroyed.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    public_id = PublicIdField(prefix="rot")
    target_version = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    rows_total = models.PositiveBigIntegerField(default=0)
    rows_done = models.PositiveBigIntegerField(default=0)
    passes = models.PositiveIntegerField(default=1)
    # None between passes: set when the next pass reads its first batch.
    pass_started_at = models.DateTimeField(null=True, blank=True, default=timezone.now)
    resealed_this_pass = models.PositiveBigIntegerField(default=0)
    cursor_model = models.CharField(max_length=100, blank=True)
    cursor_pk = models.BigIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("accounts_datakeyrotation")

    def __str__(self) -> str:
        return f"rotation to data key v{self.target_version}"

    @property
    def progress_percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        if not self.rows_total:
            return 0
        return min(99, self.rows_done * 100 // self.rows_total)


class ApiScope(models.TextChoices):
    """What an API key may do. Read scopes never write; write scopes include their read."""

    CONTACTS_READ = "contacts:read", "Read contacts, lists and segments"
    CONTACTS_WRITE = "contacts:write", "Create, change and delete contacts and lists"
    CAMPAIGNS_READ = "campaigns:read", "Read campaigns and their reports"
    CAMPAIGNS_WRITE = "campaigns:write", "Create, change and send campaigns"
    AUDIT_READ = "audit:read", "Read the audit trail"


class ApiKey(TenantModel):
    """An integrator's credential for one account.

    The token (``bsk_<prefix>_<secret>``) is shown once; only its SHA-256 is
    kept. The prefix is not secret: it finds the row, and the hash is then
    compared in constant time. The prefix is unique across accounts because a
    request names no account: the key does.
    """

    public_id = PublicIdField(prefix="key")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.BinaryField(max_length=32)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("accounts_apikey")
        indexes = [models.Index(fields=["account", "-created_at"], name="accounts_apikey_recent")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_usable_at(self, moment: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > moment)

    def has_scope(self, scope: str) -> bool:
        if scope in self.scopes:
            return True
        resource, _, action = scope.partition(":")
        return action == "read" and f"{resource}:write" in self.scopes


class TOTPDevice(models.Model):
    """A user's authenticator app (RFC 6238 TOTP). The secret is encrypted under the platform key."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="totp_device")
    public_id = PublicIdField(prefix="otp", unique=True)
    secret = EncryptedTextField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # The last accepted time step: a code is never accepted twice (replay).
    last_used_step = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.public_id

    def encryption_scope(self) -> str:
        return PLATFORM_SCOPE

    @property
    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None


class RecoveryCode(models.Model):
    """A single-use code for when the authenticator is lost; only its SHA-256 is kept."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="recovery_codes")
    code_hash = models.BinaryField(max_length=32)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"recovery code of {self.user}"


class UserSession(models.Model):
    """A signed-in browser, listed on the user's security page and revocable there.

    The Django session carries this row's public id, which survives the
    session key's rotations; deleting the row ends the session at its next
    request. The address is personal data and is encrypted.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="browser_sessions")
    public_id = PublicIdField(prefix="ses", unique=True)
    user_agent = models.CharField(max_length=300, blank=True)
    ip_address = EncryptedTextField(default="", blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["user", "-last_seen_at"], name="accounts_session_user_seen")]

    def __str__(self) -> str:
        return self.public_id

    def encryption_scope(self) -> str:
        return PLATFORM_SCOPE


class Invitation(TenantModel):
    """An invitation to join an account with a role; the link's token is kept as a SHA-256."""

    public_id = PublicIdField(prefix="inv")
    email = EncryptedTextField()
    email_index = BlindIndexField(source="email", purpose="email")
    role = models.CharField(max_length=16, choices=Role.choices)
    token_hash = models.BinaryField(max_length=32, unique=True)
    invited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("accounts_invitation")

    def __str__(self) -> str:
        return self.public_id

    def is_open_at(self, moment: datetime) -> bool:
        return self.accepted_at is None and self.revoked_at is None and self.expires_at > moment


class EmailChange(models.Model):
    """A user's request to sign in with another address, waiting for that address to confirm it.

    The pending address is personal data: encrypted under the platform key
    like the user's own, with the same blind index, so it can be compared with
    ``User.email_index`` without being opened. A user has at most one: a new
    request deletes the earlier ones. It is used once and expires after a day
    (``accounts.tokens.EMAIL_CHANGE_TIMEOUT``); beat then deletes it
    (``services.purge_spent_email_changes``).
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="email_changes")
    public_id = PublicIdField(prefix="emc", unique=True)
    email = EncryptedTextField()
    email_index = BlindIndexField(source="email", purpose="email")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "-created_at"], name="accounts_emailchange_recent")]

    def __str__(self) -> str:
        return self.public_id

    def encryption_scope(self) -> str:
        return PLATFORM_SCOPE

    def is_open_at(self, moment: datetime) -> bool:
        return self.used_at is None and self.expires_at > moment


class SupportGrant(TenantModel):
    """An owner's or admin's permission for Bluespark support to enter the account, for a while."""

    class Access(models.TextChoices):
        READ_ONLY = "read_only", "Read only"
        READ_WRITE = "read_write", "Read and write"

    public_id = PublicIdField(prefix="grt")
    access = models.CharField(max_length=16, choices=Access.choices, default=Access.READ_ONLY)
    # A ticket number in Bluespark's help desk, typed by the customer: not personal data.
    ticket = models.CharField(max_length=64, blank=True, default="")
    granted_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    withdrawn_at = models.DateTimeField(null=True, blank=True)
    withdrawn_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("accounts_supportgrant")
        indexes = [models.Index(fields=["account", "-expires_at"], name="accounts_supportgrant_current")]

    def __str__(self) -> str:
        return self.public_id

    def is_active_at(self, moment: datetime) -> bool:
        return self.withdrawn_at is None and self.expires_at > moment


class SupportSession(TenantModel):
    """A staff member inside one account, acting as one of its members, for a limited time.

    The reason and a break-glass justification are typed by staff about the
    customer's problem and may hold personal data: encrypted with the
    account's keys.
    """

    public_id = PublicIdField(prefix="sup")
    staff = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    acting_as = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, related_name="+")
    grant = models.ForeignKey(SupportGrant, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    access = models.CharField(max_length=16, choices=SupportGrant.Access.choices)
    reason = EncryptedTextField()
    ticket = models.CharField(max_length=64, blank=True, default="")
    break_glass = models.BooleanField(default=False)
    justification = EncryptedTextField(blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, blank=True, default="")

    class Meta(TenantModel.Meta):
        constraints = public_id_constraints("accounts_supportsession")
        indexes = [models.Index(fields=["account", "-started_at"], name="accounts_supportsession_recent")]

    def __str__(self) -> str:
        return self.public_id

    @property
    def is_read_only(self) -> bool:
        return self.access == SupportGrant.Access.READ_ONLY

    def is_open_at(self, moment: datetime) -> bool:
        return self.ended_at is None and self.expires_at > moment


class IdempotencyRecord(TenantModel):
    """The answer given to a POST with an ``Idempotency-Key``, replayed when the same key comes again.

    Keyed per account and API key; the request's fingerprint (method, path,
    body digest) guards against reusing a key for another request. The stored
    answer may hold personal data (a contact's address), so it is encrypted.
    Records are kept for a day.
    """

    public_id = PublicIdField(prefix="idem")
    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_fingerprint = models.BinaryField(max_length=32)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = EncryptedTextField(blank=True, default="")
    # The answer's Content-Type as sent; empty for an answer with none (a 204).
    response_content_type = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta(TenantModel.Meta):
        constraints = [
            *public_id_constraints("accounts_idempotencyrecord"),
            models.UniqueConstraint(fields=["account", "api_key", "key"], name="accounts_idempotency_key_uniq"),
        ]
        indexes = [models.Index(fields=["created_at"], name="accounts_idempotency_created")]

    def __str__(self) -> str:
        return self.public_id
