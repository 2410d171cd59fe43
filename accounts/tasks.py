"""Background work on accounts."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.core.management import call_command

from accounts import services
from accounts.idempotency import purge_idempotency_records
from accounts.models import Account
from accounts.selectors import access_data_key_rotation
from accounts.sessions import end_lapsed_sessions
from accounts.tenancy import tenant_task

ROTATION_TASK_SECONDS = 20.0


@tenant_task(bind=True)
def reseal_account_data(self: Any, account: Account, rotation_id: str) -> None:
    """Advance a data-key rotation for a while, then queue the rest (no long-running task)."""
    rotation = access_data_key_rotation(account, rotation_id)
    if rotation is None or rotation.status != rotation.Status.RUNNING:
        return
    wait = services.advance_data_key_rotation(account, rotation, time_budget=ROTATION_TASK_SECONDS)
    if wait is not None:
        self.apply_async(args=[account.public_id, rotation_id], countdown=wait)


@tenant_task()
def purge_account(account: Account) -> None:
    """Remove the rows of an account its owner deleted (already unreadable and unreachable: see close_account)."""
    services.delete_account(account)


# Beat's clean-ups (CELERY_BEAT_SCHEDULE) belong to no account: plain tasks, each safe to run twice
# or at once on two workers (they only delete what has already expired).


@shared_task(name="accounts.tasks.purge_expired_idempotency_records")
def purge_expired_idempotency_records() -> int:
    """Delete every account's ``Idempotency-Key`` records past their 24 hours; how many went."""
    return purge_idempotency_records()


@shared_task(name="accounts.tasks.clear_expired_sessions")
def clear_expired_sessions() -> int:
    """End the browser sessions past their lifetime (with their ``auth.logout``), then delete the expired rows
    of Django's session store, which never deletes them itself (``clearsessions``); how many sessions ended."""
    ended = end_lapsed_sessions()
    call_command("clearsessions")
    return ended


@shared_task(name="accounts.tasks.purge_spent_email_changes")
def purge_spent_email_changes() -> int:
    """Delete the pending email changes whose link was used or has expired (their new address goes); how many."""
    return services.purge_spent_email_changes()


@shared_task(name="accounts.tasks.purge_dead_invitations")
def purge_dead_invitations() -> int:
    """Delete every account's expired or withdrawn invitations that were never accepted (their address goes)."""
    return services.purge_dead_invitations()
