"""Re-authentication before sensitive actions ("re-verification of each transaction").

Creating API keys, changing roles, email, password or 2FA, exporting and
deleting data need a password check younger than
``REAUTHENTICATION_SECONDS``; a user with two-factor authentication also
gives a current code (or a recovery code), under the same replay protection
and throttle as at login. Login counts as one. A successful check rotates
the session key (the session just gained privilege) and is recorded as
``auth.reauthenticated``; a wrong password is an ``auth.login_failed`` like
any other, a wrong code an ``auth.two_factor_failed``.
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
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts import two_factor
from audit.services import record

VERIFIED_AT_KEY = "bluespark_verified_at"

View = Callable[..., HttpResponse]


def mark_verified(request: HttpRequest) -> None:
    request.session[VERIFIED_AT_KEY] = time.time()


def is_recently_verified(request: HttpRequest) -> bool:
    verified_at = request.session.get(VERIFIED_AT_KEY)
    return verified_at is not None and time.time() - verified_at < settings.REAUTHENTICATION_SECONDS


def confirm_verification(request: HttpRequest, *, second_factor: str | None) -> None:
    """A successful re-authentication: a new session key, a fresh check, and ``auth.reauthenticated``.

    The database session's new row and the event land together.
    """
    with transaction.atomic():
        request.session.cycle_key()
        mark_verified(request)
        factor = str(second_factor) if second_factor is not None else None
        record("auth.reauthenticated", actor=request.user, data={"second_factor": factor})


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
        if getattr(request, "support_session", None) is not None:
            # What needs the customer's own password is the customer's alone: never support's.
            from accounts.support_middleware import refuse_customer_only_action

            return refuse_customer_only_action(request)
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


class ConfirmPasswordAndCodeForm(ConfirmPasswordForm):
    code = forms.CharField(
        label="Authentication code",
        max_length=32,
        help_text="The 6-digit code your authenticator app shows, or one of your recovery codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "autocapitalize": "off", "spellcheck": "false"}),
    )


@sensitive_post_parameters("password", "code")
@login_required
@require_http_methods(["GET", "POST"])
def reauthenticate(request: HttpRequest) -> HttpResponse:
    """Ask for the password again (through django-axes, so guesses count towards lockout), and a 2FA code if enrolled.

    The code is checked only after the right password, so it cannot be probed alone.
    """
    next_url = request.POST.get("next") or request.GET.get("next") or reverse("accounts:home")
    safe = url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    if not safe:
        next_url = reverse("accounts:home")
    needs_code = two_factor.has_confirmed_device(request.user)
    form = (ConfirmPasswordAndCodeForm if needs_code else ConfirmPasswordForm)(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = authenticate(request, username=request.user.email, password=form.cleaned_data["password"])
        if user is None or user.pk != request.user.pk:
            form.add_error("password", "That is not your password.")
        else:
            try:
                second_factor = (
                    two_factor.verify_second_factor(request.user, code=form.cleaned_data["code"])
                    if needs_code
                    else None
                )
            except two_factor.TooManyCodeGuesses as error:
                response = render(request, "accounts/two_factor/too_many_attempts.html", status=429)
                response["Retry-After"] = str(error.retry_after)
                return response
            except two_factor.TwoFactorError as error:
                form.add_error("code", str(error))
            else:
                confirm_verification(request, second_factor=second_factor)
                return HttpResponseRedirect(next_url)
    context = {"form": form, "next": next_url, "needs_code": needs_code}
    return render(request, "accounts/reauthenticate.html", context, status=200)
