"""Sign-up, login, logout, and choosing an account."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accounts import services
from accounts.forms import LoginForm, SignUpForm
from accounts.selectors import membership_list


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
