"""The user's signed-in sessions: see them, end one, end all the others."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.sessions import SESSION_ID_KEY, revoke_other_sessions, revoke_session, session_list


@login_required
def session_index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "accounts/sessions.html",
        {"sessions": session_list(request.user), "current_session_id": request.session.get(SESSION_ID_KEY)},
    )


@login_required
@require_POST
def session_revoke(request: HttpRequest, session_id: str) -> HttpResponse:
    if session_id == request.session.get(SESSION_ID_KEY):
        messages.error(request, "To end this session, log out.")
    elif revoke_session(request.user, session_id):
        messages.success(request, "That session is ended.")
    return redirect("sessions:index")


@login_required
@require_POST
def session_revoke_others(request: HttpRequest) -> HttpResponse:
    ended = revoke_other_sessions(request.user, keep=request.session.get(SESSION_ID_KEY))
    messages.success(request, f"{ended} other session(s) ended.")
    return redirect("sessions:index")
