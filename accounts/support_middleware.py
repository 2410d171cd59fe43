"""During a support session: the staff member acts as the member, in one account, within limits.

After authentication, a session carrying a support session id is checked on
every request (still open, grant still in force, member still a member); the
request then runs as the member (``request.user``), with the staff member on
``request.staff_user`` and the session on ``request.support_session``, so role
checks are the member's and every audit event and log line names both.

Reachable meanwhile: the session's account (``/a/<its id>/…``), the end of
the session, logout (which ends it first), static files and health probes.
Everything else, another account of the member's included, answers 403. In a
read-only session every non-safe method under the account is refused and
recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import resolve, reverse
from django.urls.exceptions import Resolver404

from accounts import support
from accounts.models import SupportSession

SUPPORT_SESSION_KEY = "bluespark_support_session"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


def refused(request: HttpRequest, message: str) -> HttpResponse:
    return render(request, "accounts/support/refused.html", {"message": message}, status=403)


class SupportSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.support_session = None
        request.staff_user = None
        user = getattr(request, "user", None)
        session_id = request.session.get(SUPPORT_SESSION_KEY) if user is not None and user.is_authenticated else None
        if session_id is None:
            return self.get_response(request)
        session = (
            SupportSession.objects_unscoped_dangerous.select_related("account", "staff", "acting_as", "grant")
            .filter(public_id=session_id, staff=user)
            .first()
        )
        ending = "missing" if session is None else support.reason_to_end(session)
        if ending is not None or request.path == reverse("accounts:logout"):
            if session is not None and session.ended_at is None:
                support.end_support_session(session, reason=ending or "logout")
            request.session.pop(SUPPORT_SESSION_KEY, None)
            # Leaving someone else's shoes is a privilege change.
            request.session.cycle_key()
            if ending is None:  # logging out: carry on as the staff member
                return self.get_response(request)
            messages.warning(request, "Your support session has ended.")
            return HttpResponseRedirect(reverse("staff:index"))
        request.support_session = session
        request.staff_user = user
        request.user = session.acting_as
        refusal = self._within_limits(request, session)
        if refusal is not None:
            return refusal
        response = self.get_response(request)
        if (
            request.method not in SAFE_METHODS
            and response.status_code < 400
            and request.path != reverse("staff:end_session")
        ):
            # Every change made in a session is in the trail under both names, whether or not
            # the feature records its own event.
            support.record_session_request(
                session, action="support.write_made", method=request.method, view=_view_name(request.path)
            )
        return response

    def _within_limits(self, request: HttpRequest, session: SupportSession) -> HttpResponse | None:
        path = request.path
        static = "/" + settings.STATIC_URL.lstrip("/")
        if path == reverse("staff:end_session") or path.startswith(static):
            return None
        if path in (reverse("healthz"), reverse("readyz")):
            return None
        if not path.startswith(f"/a/{session.account.public_id}/"):
            return refused(request, "Only this account can be reached during a support session. End it first.")
        if session.is_read_only and request.method not in SAFE_METHODS:
            support.record_session_request(
                session, action="support.write_refused", method=request.method, view=_view_name(path)
            )
            return refused(request, "This support session is read-only: nothing can be changed.")
        return None


def _view_name(path: str) -> str:
    try:
        return resolve(path).view_name
    except Resolver404:
        return ""


def refuse_customer_only_action(request: HttpRequest) -> HttpResponse:
    """Exports, API keys, credentials, 2FA, roles and deletions: recorded and refused in a support session."""
    support.record_session_request(
        request.support_session, action="support.action_refused", method=request.method, view=_view_name(request.path)
    )
    return refused(request, "Only the customer can do this: it is not available during a support session.")
