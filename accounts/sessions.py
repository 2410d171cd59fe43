"""Signed-in sessions: listed, revocable, and ended when idle or too old.

Each login creates a ``UserSession`` whose public id the Django session
carries. On every request the middleware finds that row (one indexed
query), ends the session when the row is gone (revoked), idle longer than
``SESSION_IDLE_SECONDS`` or older than ``SESSION_ABSOLUTE_SECONDS``, and
notes the time seen at most once a minute.

Logins, logouts and revocations are audit events of the user (the platform
chain), written in the transaction that adds or removes the session's row.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from accounts.models import User, UserSession
from audit.context import context_for
from audit.services import record

SESSION_ID_KEY = "bluespark_session"
LAST_SEEN_PRECISION = timedelta(minutes=1)
# Set on the request by SessionTrackingMiddleware before it logs a session out: why it ended.
LOGOUT_REASON_ATTR = "bluespark_logout_reason"


def start_session(sender: Any, request: HttpRequest, user: User, **kwargs: Any) -> None:
    """``user_logged_in`` receiver: record the new browser session, and ``auth.login`` with it."""
    if request is None or not hasattr(request, "session"):
        return
    tracked = UserSession(
        user=user,
        user_agent=request.headers.get("User-Agent", "")[:300],
        ip_address=getattr(request, "client_ip", None) or "",
    )
    with transaction.atomic():
        tracked.save()
        record("auth.login", actor=user, target=tracked, context=context_for(request))
    request.session[SESSION_ID_KEY] = tracked.public_id


def end_session(sender: Any, request: HttpRequest, user: User | None, **kwargs: Any) -> None:
    """``user_logged_out`` receiver: forget the browser session, and record ``auth.logout`` with its reason.

    The reason is ``requested`` (the user logged out), or ``revoked``, ``idle``
    or ``expired`` when the session tracking ended it.
    """
    if request is None or not hasattr(request, "session"):
        return
    session_id = request.session.get(SESSION_ID_KEY)
    with transaction.atomic():
        if session_id:
            UserSession.objects.filter(public_id=session_id).delete()
        if user is not None:
            record(
                "auth.logout",
                actor=user,
                target=("user_session", session_id) if session_id else None,
                data={"reason": getattr(request, LOGOUT_REASON_ATTR, "requested")},
                context=context_for(request),
            )


def revoke_session(user: User, session_id: str) -> bool:
    """End one of the user's sessions at its next request; False if it was not theirs or is gone.

    Records ``session.revoked`` when a session ended.
    """
    with transaction.atomic():
        deleted, _ = UserSession.objects.filter(user=user, public_id=session_id).delete()
        if deleted:
            record("session.revoked", actor=user, target=("user_session", session_id))
    return bool(deleted)


def revoke_other_sessions(user: User, *, keep: str | None) -> int:
    """End every session of the user except ``keep``, at their request; returns how many.

    Records ``session.others_revoked`` with the count, even when it is 0.
    """
    with transaction.atomic():
        ended = end_other_sessions(user, keep=keep)
        record("session.others_revoked", actor=user, data={"sessions_ended": ended})
    return ended


def end_other_sessions(user: User, *, keep: str | None) -> int:
    """End every session of the user except ``keep``; returns how many.

    Part of another change (a new password or address), whose own event says
    how many sessions ended: no event of its own.
    """
    with transaction.atomic():
        deleted, _ = UserSession.objects.filter(user=user).exclude(public_id=keep or "").delete()
    return deleted


def end_lapsed_sessions(*, batch_rows: int = 1_000) -> int:
    """End the sessions past their absolute lifetime that no request came back to end; how many.

    The middleware ends a lapsed session at its next request; one never used
    again kept its row (with its encrypted address) on the user's security
    page for ever, and no ``auth.logout`` said it had ended. Past
    ``SESSION_ABSOLUTE_SECONDS`` no request can revive it, so this records the
    ``auth.logout`` the middleware would have (reason ``idle`` when it went idle
    before reaching that lifetime, else ``expired``) and deletes the row, in
    batches, each in its own transaction. Run hourly by beat; safe to run twice
    (a row already gone is not recorded again).
    """
    now = timezone.now()
    lifetime = timedelta(seconds=settings.SESSION_ABSOLUTE_SECONDS)
    idle = timedelta(seconds=settings.SESSION_IDLE_SECONDS)
    ended = 0
    while True:
        with transaction.atomic():
            lapsed = list(
                UserSession.objects.select_for_update(skip_locked=True)
                .select_related("user")
                .filter(created_at__lt=now - lifetime)
                .order_by("pk")[:batch_rows]
            )
            if not lapsed:
                return ended
            UserSession.objects.filter(pk__in=[row.pk for row in lapsed]).delete()
            for row in lapsed:
                went_idle = row.last_seen_at + idle < row.created_at + lifetime
                record(
                    "auth.logout",
                    actor=row.user,
                    target=("user_session", row.public_id),
                    data={"reason": "idle" if went_idle else "expired"},
                )
        ended += len(lapsed)


def session_list(user: User) -> list[UserSession]:
    return list(UserSession.objects.filter(user=user).order_by("-last_seen_at", "-id"))


class SessionTrackingMiddleware:
    """Ends revoked, idle and expired sessions; keeps ``last_seen_at`` roughly current."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            ended = self._check(request, user)
            if ended is not None:
                return ended
        return self.get_response(request)

    def _check(self, request: HttpRequest, user: User) -> HttpResponse | None:
        session_id = request.session.get(SESSION_ID_KEY)
        tracked = UserSession.objects.filter(user=user, public_id=session_id).first() if session_id else None
        now = timezone.now()
        if tracked is None:
            cause, reason = "revoked", "This session was ended. Please log in again."
        elif now - tracked.last_seen_at > timedelta(seconds=settings.SESSION_IDLE_SECONDS):
            cause, reason = "idle", "You were logged out after a while without activity."
        elif now - tracked.created_at > timedelta(seconds=settings.SESSION_ABSOLUTE_SECONDS):
            cause, reason = "expired", "Your session reached its maximum length. Please log in again."
        else:
            if now - tracked.last_seen_at >= LAST_SEEN_PRECISION:
                UserSession.objects.filter(pk=tracked.pk).update(last_seen_at=now)
            return None
        setattr(request, LOGOUT_REASON_ATTR, cause)
        logout(request)
        if request.path.startswith("/api/"):
            return None
        messages.info(request, reason)
        return redirect(settings.LOGIN_URL)
