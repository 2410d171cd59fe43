"""Recording audit events: ``record()``, called by services inside the transaction of their change."""

from __future__ import annotations

import re
from typing import Any

from django.db import IntegrityError, transaction

from audit.actions import check_action
from audit.chain import GENESIS, event_hash
from audit.context import AuditContext, current_context
from audit.models import AuditChainHead, AuditEvent, platform_chain, user_chain

# A value that looks like an email address is refused in event data: the
# trail is append-only, so personal data written there could never be erased.
_EMAIL_LIKE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class UnsafeAuditData(ValueError):
    """Event data holding something that must not be in the trail (an email address, an object)."""


def _public_id(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return value.public_id


def _target(target: Any) -> tuple[str, str]:
    if target is None:
        return "", ""
    if isinstance(target, tuple):
        kind, identifier = target
        return str(kind), str(identifier)
    return target_type(type(target)), target.public_id


def target_type(model: type) -> str:
    """The name events give a target of this class: ApiKey -> api_key, TOTPDevice -> totp_device (as the API says)."""
    return _CAMEL_BOUNDARY.sub("_", model.__name__).lower()


def _check_data(value: Any, path: str = "data") -> None:
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, str):
        if _EMAIL_LIKE.search(value):
            raise UnsafeAuditData(f"{path} looks like an email address: audit data holds no personal data.")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_data(item, f"{path}[{index}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise UnsafeAuditData(f"{path} has a key that is not a string.")
            _check_data(item, f"{path}.{key}")
        return
    raise UnsafeAuditData(f"{path} is a {type(value).__name__}: audit data holds strings, numbers and flags only.")


def _actor(context: AuditContext, actor: Any) -> tuple[str, str | None]:
    if context.support_session_id:
        return AuditEvent.ActorType.STAFF, context.user_id
    if actor is not None:
        return AuditEvent.ActorType.USER, _public_id(actor)
    if context.user_id:
        return AuditEvent.ActorType.USER, context.user_id
    if context.api_key_id:
        return AuditEvent.ActorType.API_KEY, None
    if context.request_id:
        return AuditEvent.ActorType.ANONYMOUS, None
    return AuditEvent.ActorType.SYSTEM, None


def _locked_head(chain: str) -> AuditChainHead:
    head = AuditChainHead.objects.select_for_update().filter(chain=chain).first()
    if head is not None:
        return head
    try:
        with transaction.atomic():
            AuditChainHead.objects.create(chain=chain, sequence=0, hash=GENESIS)
    except IntegrityError:
        pass  # another transaction started the chain first
    return AuditChainHead.objects.select_for_update().get(chain=chain)


def record(
    action: str,
    *,
    account: Any = None,
    actor: Any = None,
    target: Any = None,
    data: dict[str, Any] | None = None,
    context: AuditContext | None = None,
) -> AuditEvent:
    """Append one event to the account's chain (without an account: the actor's, else a platform shard).

    ``account`` is an Account or its public id. ``actor`` names the user when
    no one is signed in yet (a login, a reset link) and is otherwise read from
    the request's or task's context, as are the API key, the support session,
    the address and the request id. ``target`` is a model instance with a
    public id, or a ``(type, public_id)`` pair. ``data`` holds old and new
    values and details: strings, numbers, flags, never personal data.
    Call it inside the transaction of the change, so both land or neither.
    """
    check_action(action)
    details = dict(data or {})
    _check_data(details)
    context = context or current_context()
    account_id = _public_id(account)
    actor_type, actor_id = _actor(context, actor)
    if account_id:
        chain = account_id
    elif actor_id:
        chain = user_chain(actor_id)
    else:
        chain = platform_chain(context.ip)
    target_type, target_id = _target(target)
    with transaction.atomic():
        head = _locked_head(chain)
        event = AuditEvent(
            chain=chain,
            sequence=head.sequence + 1,
            account_id=account_id or "",
            action=action,
            actor_type=actor_type,
            actor_id=actor_id or "",
            acting_as_id=(context.acting_as_id or "") if context.support_session_id else "",
            support_session_id=context.support_session_id or "",
            api_key_id=context.api_key_id or "",
            target_type=target_type,
            target_id=target_id,
            ip=context.ip,
            request_id=context.request_id or "",
            data=details,
            previous_hash=bytes(head.hash),
        )
        event.hash = event_hash(event, bytes(head.hash))
        event.save(force_insert=True)
        head.sequence, head.hash = event.sequence, event.hash
        head.save(update_fields=["sequence", "hash"])
    return event
