"""Two-factor pages: enrolment with a QR code, the login's second step, recovery codes, the account rule."""

from __future__ import annotations

import time
from typing import Any

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from accounts import two_factor
from accounts.models import Role, TOTPDevice, User
from accounts.reauth import mark_verified, require_recent_authentication
from accounts.roles import require_role
from accounts.views import BluesparkLoginView

# Set after a correct password for a user with a confirmed device: who, when, and where to go.
PENDING_LOGIN_KEY = "bluespark_pending_login"
PENDING_LOGIN_SECONDS = 5 * 60


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Authentication code",
        max_length=32,
        help_text="The 6-digit code your authenticator app shows, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "autofocus": True, "autocapitalize": "off", "spellcheck": "false"}
        ),
    )


class EnrolmentCodeForm(forms.Form):
    code = forms.CharField(
        label="Code from your app",
        max_length=16,
        help_text="The 6-digit code your authenticator app shows for Bluespark.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True}),
    )


class RequirementForm(forms.Form):
    require_two_factor = forms.BooleanField(label="Require two-factor authentication of every member", required=False)


# --- the login's second step ----------------------------------------------------------


class TwoFactorLoginView(BluesparkLoginView):
    """The password step: a user with a confirmed device is not logged in yet, only remembered as pending.

    The password still goes through django-axes (the form's ``authenticate``).
    """

    def form_valid(self, form: Any) -> HttpResponse:
        user = form.get_user()
        if not two_factor.has_confirmed_device(user):
            return super().form_valid(form)
        # A correct password is a step up: no one who knew the old key may share what follows.
        self.request.session.cycle_key()
        self.request.session[PENDING_LOGIN_KEY] = {
            "user": user.public_id,
            "at": time.time(),
            "backend": user.backend,
            "next": self.get_success_url(),  # already checked against this host
        }
        return redirect("two_factor:verify")


def _pending_login(request: HttpRequest) -> tuple[User, dict[str, Any]] | None:
    pending = request.session.get(PENDING_LOGIN_KEY)
    if not isinstance(pending, dict):
        return None
    age = time.time() - float(pending.get("at", 0))
    user = User.objects.filter(public_id=pending.get("user"), is_active=True).first()
    if not 0 <= age <= PENDING_LOGIN_SECONDS or user is None:
        del request.session[PENDING_LOGIN_KEY]
        return None
    return user, pending


def _safe_next(request: HttpRequest, url: str | None) -> str:
    if url and url_has_allowed_host_and_scheme(
        url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return url
    return resolve_url(settings.LOGIN_REDIRECT_URL)


def _too_many_attempts(request: HttpRequest, error: two_factor.TooManyCodeGuesses) -> HttpResponse:
    response = render(request, "accounts/two_factor/too_many_attempts.html", status=429)
    response["Retry-After"] = str(error.retry_after)
    return response


@sensitive_post_parameters("code")
@never_cache
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    """Ask for a TOTP or recovery code within five minutes of the password; then log in."""
    if request.user.is_authenticated:
        return redirect(settings.LOGIN_REDIRECT_URL)
    pending = _pending_login(request)
    if pending is None:
        messages.info(request, "Log in again: the time to enter your code ran out.")
        return redirect(settings.LOGIN_URL)
    user, details = pending
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            two_factor.verify_second_factor(user, code=form.cleaned_data["code"])
        except two_factor.TooManyCodeGuesses as error:
            return _too_many_attempts(request, error)
        except two_factor.TwoFactorError as error:
            form.add_error("code", str(error))
        else:
            del request.session[PENDING_LOGIN_KEY]
            # login() rotates the session key again: the session now carries the user.
            login(request, user, backend=details["backend"])
            mark_verified(request)
            return HttpResponseRedirect(_safe_next(request, details.get("next")))
    return render(request, "accounts/two_factor/verify.html", {"form": form}, status=400 if form.errors else 200)


# --- the user's own two-factor settings ---------------------------------------------------


@login_required
@never_cache
def index(request: HttpRequest) -> HttpResponse:
    device = two_factor.confirmed_device_for(request.user)
    context = {
        "device": device,
        "recovery_codes_left": two_factor.recovery_codes_left(request.user) if device else 0,
        "is_required": two_factor.is_two_factor_required(request.user),
    }
    return render(request, "accounts/two_factor/index.html", context)


@sensitive_variables("uri", "secret", "context")
def _setup_page(request: HttpRequest, device: TOTPDevice, form: EnrolmentCodeForm, *, status: int) -> HttpResponse:
    uri = two_factor.provisioning_uri(request.user, device)
    secret = device.secret
    context = {
        "qr_code": qr_code_svg(uri),
        # Grouped by four, as authenticator apps show it.
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "form": form,
    }
    return render(request, "accounts/two_factor/setup.html", context, status=status)


def qr_code_svg(uri: str) -> SafeString:
    """The URI as an inline SVG QR code: paths and presentation attributes only, nothing the CSP blocks."""
    svg = segno.make_qr(uri, error="m").svg_inline(
        scale=4, light="#fff", svgclass="qr-code", title="QR code for your authenticator app"
    )
    # Markup generated by segno from the URI's bits; no text of the URI is in it.
    return mark_safe(svg)  # noqa: S308


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
@require_recent_authentication
def setup(request: HttpRequest) -> HttpResponse:
    """POST starts (or restarts) enrolment; GET shows the QR code and secret of the device being enrolled."""
    if request.method == "POST":
        try:
            two_factor.start_enrolment(request.user)
        except two_factor.TwoFactorError as error:
            messages.error(request, str(error))
            return redirect("two_factor:index")
        return redirect("two_factor:setup")
    device = two_factor.pending_device_for(request.user)
    if device is None:
        return redirect("two_factor:index")
    return _setup_page(request, device, EnrolmentCodeForm(), status=200)


# Every field: nothing posted to enrolment belongs in an error report.
@sensitive_post_parameters()
@login_required
@never_cache
@require_POST
def confirm(request: HttpRequest) -> HttpResponse:
    """Confirm the device with a current code and show the recovery codes, on this response only."""
    form = EnrolmentCodeForm(request.POST)
    if form.is_valid():
        try:
            codes = two_factor.confirm_enrolment(request.user, code=form.cleaned_data["code"])
        except two_factor.TooManyCodeGuesses as error:
            return _too_many_attempts(request, error)
        except two_factor.WrongCode as error:
            form.add_error("code", str(error))
        except two_factor.TwoFactorError as error:
            messages.error(request, str(error))
            return redirect("two_factor:index")
        else:
            # The session just gained a second factor.
            request.session.cycle_key()
            return _recovery_codes_page(request, codes, first_time=True)
    device = two_factor.pending_device_for(request.user)
    if device is None:
        return redirect("two_factor:index")
    return _setup_page(request, device, form, status=400)


@sensitive_variables("codes")
def _recovery_codes_page(request: HttpRequest, codes: list[str], *, first_time: bool) -> HttpResponse:
    return render(request, "accounts/two_factor/recovery_codes.html", {"codes": codes, "first_time": first_time})


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
@require_recent_authentication
def regenerate_recovery_codes(request: HttpRequest) -> HttpResponse:
    """POST replaces every recovery code and shows the new ones once; GET (after re-authentication) goes back."""
    if request.method != "POST":
        return redirect("two_factor:index")
    try:
        codes = two_factor.regenerate_recovery_codes(request.user)
    except two_factor.TwoFactorError as error:
        messages.error(request, str(error))
        return redirect("two_factor:index")
    return _recovery_codes_page(request, codes, first_time=False)


@login_required
@require_http_methods(["GET", "POST"])
@require_recent_authentication
def disable(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return redirect("two_factor:index")
    try:
        two_factor.disable_two_factor(request.user)
    except two_factor.TwoFactorError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "Two-factor authentication is off.")
    return redirect("two_factor:index")


# --- the account's rule (owners) ------------------------------------------------------------


@require_role(Role.OWNER)
@require_http_methods(["GET", "POST"])
def account_security(request: HttpRequest) -> HttpResponse:
    """Owners see and change whether every member must use two-factor authentication."""
    if request.method == "POST":
        return _change_requirement(request)
    return _account_security_page(
        request, RequirementForm(initial={"require_two_factor": request.account.require_two_factor})
    )


@require_recent_authentication
def _change_requirement(request: HttpRequest) -> HttpResponse:
    form = RequirementForm(request.POST)
    if not form.is_valid():
        return _account_security_page(request, form, status=400)
    required = form.cleaned_data["require_two_factor"]
    two_factor.set_two_factor_requirement(request.account, required=required, actor=request.user)
    if required:
        messages.success(request, "Every member now needs two-factor authentication.")
    else:
        messages.success(request, "Two-factor authentication is no longer required here.")
    return redirect("account_settings:security", account_id=request.account.public_id)


def _account_security_page(request: HttpRequest, form: RequirementForm, *, status: int = 200) -> HttpResponse:
    context = {
        "form": form,
        "members_without_two_factor": two_factor.members_without_two_factor(request.account),
    }
    return render(request, "accounts/two_factor/account_security.html", context, status=status)
