"""Re-authentication before sensitive actions ("re-verification of each transaction").

Creating API keys, changing roles, email, password or 2FA, exporting and
deleting data need a password check younger than
``REAUTHENTICATION_SECONDS``. Login counts as one. A successful check
rotates the session key: the session just gained privilege.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_http_methods

VERIFIED_AT_KEY = "bluespark_verified_at"

View = Callable[..., HttpResponse]


def mark_verified(request: HttpRequest) -> None:
    request.session[VERIFIED_AT_KEY] = time.time()


def is_recently_verified(request: HttpRequest) -> bool:
    verified_at = request.session.get(VERIFIED_AT_KEY)
    return verified_at is not None and time.time() - verified_at < settings.REAUTHENTICATION_SECONDS


def record_login_as_verification(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
    """``user_logged_in`` receiver: a password just checked is a fresh verification."""
    if request is not None and hasattr(request, "session"):
        mark_verified(request)


def require_recent_authentication(view: View) -> View:
    """Send the user to confirm their password first when their last check is too old.

    A POST that arrives too late is not carried out: the user confirms, comes
    back to the page and sends it again, knowingly.
    """

    @functools.wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if is_recently_verified(request):
            return view(request, *args, **kwargs)
        target = reverse("reauthenticate") + "?" + urlencode({"next": request.get_full_path()})
        if getattr(request, "htmx", False):
            response = HttpResponse(status=204)
            response["HX-Redirect"] = target
            return response
        return HttpResponseRedirect(target)

    checked.requires_recent_authentication = True  # type: ignore[attr-defined]
    return checked


class ConfirmPasswordForm(forms.Form):
    password = forms.CharField(strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))


@login_required
@require_http_methods(["GET", "POST"])
def reauthenticate(request: HttpRequest) -> HttpResponse:
    """Ask for the password again (through django-axes, so guesses count towards lockout)."""
    next_url = request.POST.get("next") or request.GET.get("next") or reverse("accounts:home")
    safe = url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    if not safe:
        next_url = reverse("accounts:home")
    form = ConfirmPasswordForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = authenticate(request, username=request.user.email, password=form.cleaned_data["password"])
        if user is not None and user.pk == request.user.pk:
            request.session.cycle_key()
            mark_verified(request)
            return HttpResponseRedirect(next_url)
        form.add_error("password", "That is not your password.")
    return render(request, "accounts/reauthenticate.html", {"form": form, "next": next_url}, status=200)
