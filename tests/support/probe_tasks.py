"""Tasks that report what they see, loaded by the tests and by the test worker (--include)."""

from __future__ import annotations

from celery import Task, shared_task

from accounts.models import Account
from accounts.tenancy import get_active_account, tenant_task
from audit.celery_context import CONTEXT_HEADER
from audit.context import current_context
from campaigns.selectors import campaign_list


@tenant_task(ignore_result=False)
def describe_scope(account: Account, label: str) -> dict:
    active = get_active_account()
    return {
        "label": label,
        "account": account.public_id,
        "active_account": active.public_id if active else None,
        "campaigns": sorted(campaign.public_id for campaign in campaign_list(account)),
    }


@tenant_task(bind=True, ignore_result=False)
def describe_bound_task(self, account: Account) -> dict:
    return {"task": self.name, "account": account.public_id}


@tenant_task()
def fail_in_scope(account: Account) -> None:
    raise RuntimeError(f"failed inside {account.public_id}")


@shared_task(bind=True, ignore_result=False)
def report_context(self: Task, label: str) -> dict:
    """The audit context the task runs in, and the context header its message carried."""
    return {
        "label": label,
        "context": current_context().as_headers(),
        "carried": (self.request.headers or {}).get(CONTEXT_HEADER),
    }


@shared_task(ignore_result=False)
def fail_in_context(label: str) -> None:
    raise RuntimeError(f"{label} failed with {current_context().as_headers()}")
