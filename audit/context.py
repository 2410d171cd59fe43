"""Who is acting, for every audit event and log line: the request's context, or the task's.

A request binds itself here for its whole life (``RequestContextMiddleware``),
and the context is read from it when needed, because the user, the API key,
the account and a support session become known at different layers. A Celery
task started during the request carries a snapshot of it in its message
headers and binds that snapshot while it runs (``audit.celery_context``).

Everything here is an identifier (public ids, a request id, an address): no
secret and no personal data in clear.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields
from typing import Any

from django.http import HttpRequest


@dataclass(frozen=True)
class AuditContext:
    """The identifiers an audit event records about who did something, from where."""

    request_id: str | None = None
    ip: str | None = None
    # The person signed in; during a support session, the staff member.
    user_id: str | None = None
    # During a support session: the member the staff member acts as.
    acting_as_id: str | None = None
    support_session_id: str | None = None
    api_key_id: str | None = None
    account_id: str | None = None

    def as_headers(self) -> dict[str, str]:
        """For a Celery message: only the fields that are set."""
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_headers(cls, headers: dict[str, Any]) -> AuditContext:
        known = {field.name for field in fields(cls)}
        return cls(**{name: str(value) for name, value in headers.items() if name in known and value is not None})


EMPTY = AuditContext()

_request: ContextVar[HttpRequest | None] = ContextVar("bluespark_audit_request", default=None)
_snapshot: ContextVar[AuditContext | None] = ContextVar("bluespark_audit_snapshot", default=None)


def _public_id(value: object) -> str | None:
    return getattr(value, "public_id", None) if value is not None else None


def context_of(request: HttpRequest) -> AuditContext:
    user = getattr(request, "user", None)
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    support = getattr(request, "support_session", None)
    return AuditContext(
        request_id=getattr(request, "request_id", None),
        ip=getattr(request, "client_ip", None),
        user_id=_public_id(getattr(support, "staff", None)) or (_public_id(user) if authenticated else None),
        acting_as_id=_public_id(getattr(support, "acting_as", None)),
        support_session_id=_public_id(support),
        api_key_id=_public_id(getattr(request, "api_key", None)),
        account_id=_public_id(getattr(request, "account", None)),
    )


def current_context() -> AuditContext:
    """The context of the request or task running now (empty in a management command)."""
    request = _request.get()
    if request is not None:
        return context_of(request)
    return _snapshot.get() or EMPTY


@contextmanager
def bound_request(request: HttpRequest) -> Iterator[None]:
    token = _request.set(request)
    try:
        yield
    finally:
        _request.reset(token)


@contextmanager
def bound_context(context: AuditContext) -> Iterator[None]:
    """Run with a fixed context: a task's, or a command acting for someone."""
    request_token = _request.set(None)
    snapshot_token = _snapshot.set(context)
    try:
        yield
    finally:
        _snapshot.reset(snapshot_token)
        _request.reset(request_token)


def context_for(request: HttpRequest | None) -> AuditContext:
    """The context of a signal's request: the bound one, else read from the request itself.

    A request that did not pass through the audit middleware (a test client's
    ``force_login``, a request built by hand) still names what it can.
    """
    context = current_context()
    if context == EMPTY and request is not None:
        return context_of(request)
    return context
