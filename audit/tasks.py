"""Audit events written by a worker: those whose cause may be rolled back with the request that met it."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.core.cache import cache

from audit.services import record, target_type

logger = logging.getLogger("bluespark.security")

ACCOUNT_SCOPE_PREFIX = "acc_"

#: One ``security.decryption_failed`` event per field of a scope in this time, however many reads fail.
DECRYPTION_EVENT_SECONDS = 600


def queue_decryption_failure_event(
    sender: type, *, model: str, field: str, row: str | None, scope: str, reason: str, **_: Any
) -> None:
    """Receive ``security.fields.decryption_failed``: queue its audit event now, not at commit.

    The failed read usually ends its request's transaction with an error, so an
    event recorded inside it would be rolled back with it; the task records it
    in a transaction of its own, carrying the request's context (actor, address,
    request id). Only identifiers travel: the scope's and row's public ids, the
    model, the field and the kind of error. A broken key fails every read of a
    field: the first failure per field and scope in ``DECRYPTION_EVENT_SECONDS``
    is recorded (the security log has each one).
    """
    try:
        if not cache.add(f"audit:decryption-failed:{scope}:{model}.{field}", 1, timeout=DECRYPTION_EVENT_SECONDS):
            return
        record_decryption_failure.delay(scope, target_type(sender), row, model=model, field=field, reason=reason)
    except Exception:  # noqa: BLE001 - Redis or the broker is down: the failure is logged and raised anyway
        logger.warning("decryption_failure_not_audited", exc_info=True, extra={"scope": scope, "row": row})


@shared_task(name="audit.tasks.record_decryption_failure")
def record_decryption_failure(scope: str, kind: str, row: str | None, *, model: str, field: str, reason: str) -> None:
    """Append ``security.decryption_failed`` to the trail of the scope's account (the platform's for others)."""
    # An account's data is sealed under its public id; anything else (users' addresses, TOTP secrets) is the platform's.
    account = scope if scope.startswith(ACCOUNT_SCOPE_PREFIX) else None
    record(
        "security.decryption_failed",
        account=account,
        target=(kind, row) if row else None,
        data={"model": model, "field": field, "reason": reason, **({} if account else {"scope": scope})},
    )
