"""The audit trail: append-only, hash-chained events.

Events name people, accounts, keys and targets by public id only, stored as
plain strings, not foreign keys: deleting a user, a member or an account
keeps its events (nothing cascades into this table), and the table holds no
personal data that a right-to-erasure request would oblige us to edit.
"""

from __future__ import annotations

import hashlib

from django.db import models
from django.utils import timezone

from security.identifiers import PublicIdField

# Events of no account chain apart from the accounts' trails: a user's own events (logins,
# password, 2FA) on that user's chain, events of no one known (a failed login for an
# unknown address, a guessed key) on one of a few platform shards chosen by the address.
# Spreading them keeps a burst of failed logins from queueing on one chain's lock.
PLATFORM_CHAIN = "platform"
PLATFORM_SHARDS = 16


def user_chain(user_public_id: str) -> str:
    return f"user:{user_public_id}"


def platform_chain(ip: str | None) -> str:
    if not ip:
        return PLATFORM_CHAIN
    shard = int.from_bytes(hashlib.sha256(ip.encode()).digest()[:2], "big") % PLATFORM_SHARDS
    return f"{PLATFORM_CHAIN}:{shard:02d}"


class AuditEvent(models.Model):
    """One key action. Written once, in the transaction of the change it records; never updated."""

    class ActorType(models.TextChoices):
        USER = "user", "User"
        API_KEY = "api_key", "API key"
        STAFF = "staff", "Bluespark support"
        # Someone not signed in: a failed login for an unknown address, a guessed key.
        ANONYMOUS = "anonymous", "Someone not signed in"
        SYSTEM = "system", "Bluespark"

    public_id = PublicIdField(prefix="evt", unique=True)
    # An account's public id, a user's chain or a platform shard; each chain is hashed on its own.
    chain = models.CharField(max_length=40)
    sequence = models.BigIntegerField()
    account_id = models.CharField(max_length=40, blank=True, default="")
    occurred_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=64)
    actor_type = models.CharField(max_length=16, choices=ActorType.choices)
    # The person signed in (during a support session: the staff member).
    actor_id = models.CharField(max_length=40, blank=True, default="")
    # During a support session: the member the staff member acted as.
    acting_as_id = models.CharField(max_length=40, blank=True, default="")
    support_session_id = models.CharField(max_length=40, blank=True, default="")
    api_key_id = models.CharField(max_length=40, blank=True, default="")
    target_type = models.CharField(max_length=32, blank=True, default="")
    target_id = models.CharField(max_length=40, blank=True, default="")
    ip = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="")
    # Old and new values and other details: identifiers, flags, counts; never personal data in clear.
    data = models.JSONField(default=dict, blank=True)
    previous_hash = models.BinaryField(max_length=32)
    hash = models.BinaryField(max_length=32)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "sequence"], name="audit_event_chain_sequence")]
        indexes = [
            # An account's trail, newest first, and its filters: fast at millions of rows.
            models.Index(fields=["account_id", "-occurred_at", "-id"], name="audit_account_time"),
            models.Index(fields=["account_id", "action", "-occurred_at"], name="audit_account_action"),
            models.Index(fields=["account_id", "actor_id", "-occurred_at"], name="audit_account_actor"),
            models.Index(fields=["actor_id", "-occurred_at"], name="audit_actor_time"),
            models.Index(fields=["support_session_id"], name="audit_support_session"),
            models.Index(fields=["action", "-occurred_at"], name="audit_action_time"),
            # security_report's volume check reads a window of every account's events.
            models.Index(fields=["occurred_at", "account_id"], name="audit_time_account"),
        ]

    def __str__(self) -> str:
        return f"{self.action} ({self.public_id})"

    @staticmethod
    def account_filter(account: models.Model) -> dict[str, str]:
        """How the tenant API views narrow events to one account."""
        return {"account_id": account.public_id}


class AuditChainHead(models.Model):
    """The last event of each chain: appends lock it, and audit_verify checks the chain reaches it."""

    chain = models.CharField(max_length=40, unique=True)
    sequence = models.BigIntegerField(default=0)
    hash = models.BinaryField(max_length=32)

    def __str__(self) -> str:
        return f"{self.chain} at {self.sequence}"
