"""Tasks that report what they see, loaded by the tests and by the test worker (--include)."""

from __future__ import annotations

from accounts.models import Account
from accounts.tenancy import get_active_account, tenant_task
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
