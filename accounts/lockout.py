"""How django-axes names the user behind a failed login; failed logins and lockouts as audit and security events."""

from __future__ import annotations

import logging
from datetime import timedelta

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from django.conf import settings
from django.core.cache import cache
from django.db.models import Sum
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import User, user_email_index
from audit.context import context_for
from audit.request_context import client_ip
from audit.services import record

security_logger = logging.getLogger("bluespark.security")
LOCKOUT_MARKER_SECONDS = 24 * 3600 + int(settings.AXES_COOLOFF_TIME.total_seconds())


def canonical_login_username(request: HttpRequest, credentials: dict | None = None) -> str:
    """A keyed digest of the canonical email: never the address itself.

    Axes stores what this returns in its tables; the blind index keeps the
    email out of them while ``Alice@X`` and ``alice@x `` still share one
    counter. After a successful login axes passes the user's USERNAME_FIELD,
    which already is that index.
    """
    username = (credentials or {}).get("username")
    if username is None:
        data = getattr(request, "data", None) or request.POST
        username = data.get("username", "")
    if isinstance(username, bytes | memoryview):
        return bytes(username).hex()
    return user_email_index(str(username)).hex()


def record_login_failed(sender: object, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    """Receiver of ``user_login_failed``: ``auth.login_failed``, by the user the typed address names, if any.

    The typed address itself is never kept: it may be a member's, mistyped,
    or someone else's entirely.
    """
    username = credentials.get("username")
    user = User.objects.with_email(str(username)).first() if isinstance(username, str) and username else None
    record("auth.login_failed", actor=user, context=context_for(request))


# --- lockouts as security and audit events ----------------------------------------------------
#
# Axes locks a username and a client address separately. When either crosses
# the limit, ``login_lockout_started`` is logged (and ``auth.lockout_started``
# recorded) once, not at every refused attempt, with when it ends;
# ``login_lockout_ended`` (``auth.lockout_ended``) when the lockout is seen to
# be over: the next attempt after the cool-off, or a password reset that clears
# the counters. Users are named by their public id, never their address; a
# locked address is the event's own ``ip``, not part of its data.


def _marker(kind: str, value: str) -> str:
    return f"bluespark:login-lockout:{kind}:{value}"


def _failures(**filters: str) -> int:
    return AccessAttempt.objects.filter(**filters).aggregate(n=Sum("failures_since_start"))["n"] or 0


def _user_public_id(username: str) -> str | None:
    try:
        index = bytes.fromhex(username)
    except ValueError:
        return None
    return User.objects.filter(email_index=index).values_list("public_id", flat=True).first()


def _subject(kind: str, value: str) -> dict[str, str | None]:
    if kind == "username":
        return {"locked_by": kind, "user": _user_public_id(value), "ip": None}
    return {"locked_by": kind, "user": None, "ip": value}


def _end(kind: str, value: str, *, reason: str, request: HttpRequest | None = None) -> None:
    if cache.delete(_marker(kind, value)):
        subject = _subject(kind, value)
        security_logger.info("login_lockout_ended", extra={**subject, "reason": reason})
        record(
            "auth.lockout_ended",
            actor=subject["user"],
            data={"locked_by": kind, "reason": reason},
            context=context_for(request),
        )


def record_lockout(
    sender: object, request: HttpRequest, username: str | None, ip_address: str | None, **kwargs
) -> None:
    """Receiver of axes' ``user_locked_out``, sent at the lockout and at every attempt refused during it."""
    now = timezone.now()
    locked_until = now + (get_cool_off(request) or timedelta(0))
    limit = settings.AXES_FAILURE_LIMIT
    subjects = []
    if username and _failures(username=username) >= limit:
        subjects.append(("username", username))
    if ip_address and _failures(ip_address=ip_address) >= limit:
        subjects.append(("ip", ip_address))
    for kind, value in subjects:
        previous = cache.get(_marker(kind, value))
        if previous is not None and previous <= now.timestamp():
            _end(kind, value, reason="expired", request=request)
            previous = None
        # Kept a day past the end, so the end is still noticed at a later attempt.
        cache.set(_marker(kind, value), locked_until.timestamp(), timeout=LOCKOUT_MARKER_SECONDS)
        if previous is None:
            subject = _subject(kind, value)
            security_logger.warning(
                "login_lockout_started", extra={**subject, "locked_until": locked_until.isoformat()}
            )
            record(
                "auth.lockout_started",
                actor=subject["user"],
                data={"locked_by": kind, "locked_until": locked_until.isoformat()},
                context=context_for(request),
            )


def _note_ended_lockouts(request: HttpRequest | None, username: str | None) -> None:
    if request is None or getattr(request, "axes_locked_out", False):
        return
    now = timezone.now().timestamp()
    for kind, value in (("username", username), ("ip", client_ip(request))):
        if not value:
            continue
        until = cache.get(_marker(kind, value))
        if until is not None and until <= now:
            _end(kind, value, reason="expired", request=request)


def note_login_failed(sender: object, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    """Receiver of ``user_login_failed``: an attempt axes let through means its lockouts are over."""
    if request is not None:
        _note_ended_lockouts(request, canonical_login_username(request, credentials))


def note_logged_in(sender: object, request: HttpRequest | None, user: User, **kwargs) -> None:
    _note_ended_lockouts(request, bytes(user.email_index).hex())


def lockout_cleared(user: User, *, reason: str) -> None:
    """The user's failures were cleared by hand (a password reset): their lockout, if any, is over."""
    _end("username", bytes(user.email_index).hex(), reason=reason)
