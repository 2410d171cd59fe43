"""Sign-up, login, logout, passwords, and choosing an account."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts import services
from accounts.forms import LoginForm, NewPasswordForm, PasswordChangeForm, PasswordResetRequestForm, SignUpForm
from accounts.selectors import membership_list
from accounts.sessions import SESSION_ID_KEY
from audit.request_context import client_ip


class BluesparkLoginView(LoginView):
    """Django's login view: it rotates the session key (fixation) and checks ``next``."""

    template_name = "accounts/login.html"
    authentication_form = LoginForm
    redirect_authenticated_user = True


class BluesparkLogoutView(LogoutView):
    """POST only (Django's own rule): a link cannot log anyone out."""


@require_http_methods(["GET", "POST"])
def sign_up(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("accounts:home")
    form = SignUpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        services.sign_up(
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password"],
            account_name=form.cleaned_data["account_name"],
            full_name=form.cleaned_data["full_name"],
        )
        return redirect("accounts:sign_up_sent")
    return render(request, "accounts/sign_up.html", {"form": form})


def sign_up_sent(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/sign_up_sent.html")


@require_http_methods(["GET", "POST"])
def activate(request: HttpRequest, user_id: str, token: str) -> HttpResponse:
    """GET shows a button; only the POST activates, so link scanners change nothing."""
    if request.method == "GET":
        return render(request, "accounts/activate.html")
    try:
        user = services.activate_user(user_id=user_id, token=token)
    except services.AccountsError as error:
        return render(request, "accounts/activate.html", {"error": str(error)}, status=400)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    messages.success(request, "Your account is ready.")
    return redirect("accounts:home")


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Where login lands: straight into the only account, or a choice of several."""
    memberships = list(membership_list(request.user))
    if len(memberships) == 1:
        return redirect(reverse("dashboard", kwargs={"account_id": memberships[0].account.public_id}))
    return render(request, "accounts/home.html", {"memberships": memberships})


@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    """Ask for a reset link; every address, registered or not, leads to the same page."""
    form = PasswordResetRequestForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.request_password_reset(email=form.cleaned_data["email"], ip=client_ip(request))
        except services.TooManyAttempts as error:
            return render(
                request, "accounts/password_reset_request.html", {"form": form, "error": str(error)}, status=429
            )
        return redirect("accounts:password_reset_sent")
    return render(request, "accounts/password_reset_request.html", {"form": form})


def password_reset_sent(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/password_reset_sent.html", {"hours": settings.PASSWORD_RESET_TIMEOUT // 3600})


@sensitive_post_parameters("new_password", "new_password_confirmation")
@never_cache
@require_http_methods(["GET", "POST"])
def password_reset_confirm(request: HttpRequest, user_id: str, token: str) -> HttpResponse:
    """The link from the email: checked when shown and again when the new password is sent."""
    try:
        user = services.check_password_reset_link(user_id=user_id, token=token)
    except services.AccountsError as error:
        return _reset_form_response(request, {"error": str(error)}, status=400)
    form = NewPasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.reset_password(user_id=user_id, token=token, new_password=form.cleaned_data["new_password"])
        except services.PasswordRefused as error:
            form.add_error("new_password", str(error))
        except services.AccountsError as error:
            return _reset_form_response(request, {"error": str(error)}, status=400)
        else:
            return redirect("accounts:password_reset_complete")
    return _reset_form_response(request, {"form": form}, status=200)


def _reset_form_response(request: HttpRequest, context: dict, *, status: int) -> HttpResponse:
    response = render(request, "accounts/password_reset_form.html", context, status=status)
    # The page's URL holds the token: no Referer may carry it anywhere, not even to us.
    response["Referrer-Policy"] = "no-referrer"
    return response


def password_reset_complete(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/password_changed.html")


@sensitive_post_parameters("current_password", "new_password", "new_password_confirmation")
@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    """Change the password: this session stays (under a new key), every other one ends.

    Asking for the current password is this action's re-authentication.
    """
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.change_password(
                request.user,
                current_password=form.cleaned_data["current_password"],
                new_password=form.cleaned_data["new_password"],
                keep_session=request.session.get(SESSION_ID_KEY),
            )
        except services.TooManyAttempts as error:
            form.add_error(None, str(error))
            return render(request, "accounts/password_change.html", {"form": form}, status=429)
        except services.PasswordRefused as error:
            form.add_error("new_password", str(error))
        except services.AccountsError as error:
            form.add_error("current_password", str(error))
        else:
            # Rotates this session's key and stores the new password's hash in it.
            update_session_auth_hash(request, request.user)
            messages.success(request, "Your password was changed. Your other sessions have been logged out.")
            return redirect("accounts:password_change")
    return render(request, "accounts/password_change.html", {"form": form})
