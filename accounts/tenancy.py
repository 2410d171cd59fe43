"""The tenant scope: which account the running code may read and write.

A scope is entered in exactly three places: the dashboard middleware (after a
membership check), API authentication (from the API key) and the tenant task
decorator (from the task's ``account_id``). ``TenantModel.objects`` refuses to
run outside a scope and only ever sees the active account's rows.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any, TypeVar

from celery import shared_task
from django.db import models

from security.fields import SealedQuerySet

if TYPE_CHECKING:
    from accounts.models import Account

logger = logging.getLogger(__name__)

_active_account: ContextVar[Account | None] = ContextVar("bluespark_active_account", default=None)

F = TypeVar("F", bound=Callable[..., Any])


class TenantScopeError(RuntimeError):
    """Tenant data was touched with no account scope, or across scopes."""


def get_active_account() -> Account | None:
    return _active_account.get()


def enter_account_scope(account: Account) -> Token[Account | None]:
    if account is None or account.pk is None:
        raise TenantScopeError("A scope needs a saved account.")
    return _active_account.set(account)


def leave_account_scope(token: Token[Account | None]) -> None:
    _active_account.reset(token)


@contextmanager
def account_scope(account: Account) -> Iterator[Account]:
    """Run a block as ``account``; the previous scope comes back even on error."""
    token = enter_account_scope(account)
    try:
        yield account
    finally:
        leave_account_scope(token)


class TenantManager(models.Manager.from_queryset(SealedQuerySet)):  # type: ignore[misc]
    """Filters by the active account and refuses to run without one."""

    def get_queryset(self) -> models.QuerySet:
        account = get_active_account()
        if account is None:
            raise TenantScopeError(
                f"{self.model.__name__} was queried outside an account scope. Enter one with "
                "accounts.tenancy.account_scope(account), or go through an access_* selector."
            )
        return super().get_queryset().filter(account_id=account.pk)


class TenantModel(models.Model):
    """Base of every model that belongs to one account.

    ``objects`` is scoped. ``objects_unscoped_dangerous`` crosses accounts: it
    exists for migrations, account deletion and operator commands, and the
    guard test forbids it in views, API views and tasks.
    """

    account = models.ForeignKey(
        "accounts.Account", on_delete=models.CASCADE, related_name="+", editable=False, db_index=False
    )

    objects = TenantManager()
    objects_unscoped_dangerous = models.Manager()  # noqa: DJ012 - both managers are the point of this class

    class Meta:
        abstract = True
        base_manager_name = "objects_unscoped_dangerous"

    def save(self, *args: Any, **kwargs: Any) -> None:
        active = get_active_account()
        if active is not None and self.account_id != active.pk:
            raise TenantScopeError(
                f"Refusing to save a {type(self).__name__} of another account inside this account's scope."
            )
        super().save(*args, **kwargs)

    def encryption_scope(self) -> str:
        """Encrypted fields of a tenant row are sealed with its account's keys."""
        active = get_active_account()
        if active is not None and active.pk == self.account_id:
            return active.public_id
        return self.account.public_id


def public_id_constraints(model_label: str) -> list[models.UniqueConstraint]:
    """Unique public ids, led by ``account_id`` so they shard by account."""
    return [models.UniqueConstraint(fields=["account", "public_id"], name=f"{model_label}_account_public_id_uniq")]


def tenant_task(*task_args: Any, **task_options: Any) -> Callable[[F], Any]:
    """A Celery task run inside the scope of the account named by its first argument.

    The task is called with the account's public id (``task.delay(account.public_id, …)``);
    the function receives the ``Account``. A task for an account deleted since it
    was queued does nothing. The scope is left even when the task raises.
    """

    def decorator(func: F) -> Any:
        bound = bool(task_options.get("bind"))

        @functools.wraps(func)
        def run_in_scope(*args: Any, **kwargs: Any) -> Any:
            from accounts.models import Account

            head, (account_id, *rest) = (args[:1], args[1:]) if bound else ((), args)
            account = Account.objects.filter(public_id=account_id).first()
            if account is None:
                logger.warning("Task %s skipped: account %s no longer exists.", func.__name__, account_id)
                return None
            with account_scope(account):
                return func(*head, account, *rest, **kwargs)

        options = {"name": f"{func.__module__}.{func.__name__}", **task_options}
        return shared_task(*task_args, **options)(run_in_scope)

    return decorator
