"""The signed-in user's profile: their name, and moving their sign-in address.

The name changes at once. The address changes only once the new one confirms
it: the request (behind a recent re-authentication) emails the new address a
signed, single-use link valid for a day, and tells the current address. The
answer never says whether another account already has the new address: that
address gets a note saying so instead of a link.

The pending address is kept in an ``EmailChange`` row, encrypted under the
platform key with a blind index, rather than carried in the link. A link
signed by Django's signing would hold the address in clear (signed, not
encrypted), and a link alone cannot be withdrawn: with a row, a newer request
replaces the older one, following the link marks it used, and the link holds
only the user's public id and an HMAC token (``accounts.tokens``).
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from accounts import services
from accounts.reauth import require_recent_authentication
from accounts.sessions import SESSION_ID_KEY
from accounts.tokens import EMAIL_CHANGE_TIMEOUT
from security.identifiers import canonical_email


class FullNameForm(forms.Form):
    full_name = forms.CharField(
        label="Your name", max_length=200, required=False, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )


class EmailChangeForm(forms.Form):
    new_email = forms.EmailField(
        label="New email address", max_length=254, widget=forms.EmailInput(attrs={"autocomplete": "email"})
    )

    def clean_new_email(self) -> str:
        return canonical_email(self.cleaned_data["new_email"])


def _profile_page(
    request: HttpRequest, *, name_form: FullNameForm | None = None, email_form: EmailChangeForm | None = None
) -> HttpResponse:
    context = {
        "name_form": name_form or FullNameForm(initial={"full_name": request.user.full_name}),
        "email_form": email_form or EmailChangeForm(),
    }
    return render(request, "accounts/profile.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    """Show the name and address; the POST changes the name (no re-authentication: it grants nothing)."""
    if request.method == "GET":
        return _profile_page(request)
    form = FullNameForm(request.POST)
    if form.is_valid():
        services.change_full_name(request.user, full_name=form.cleaned_data["full_name"])
        messages.success(request, "Your name was saved.")
        return redirect("accounts:profile")
    return _profile_page(request, name_form=form)


@sensitive_post_parameters("new_email")
@never_cache
@login_required
@require_recent_authentication
@require_http_methods(["GET", "POST"])
def email_change(request: HttpRequest) -> HttpResponse:
    """Ask to move the sign-in address; the answer is the same whether or not another account has it.

    The GET is guarded too: after re-authenticating, the user lands back on this form.
    """
    form = EmailChangeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.request_email_change(request.user, new_email=form.cleaned_data["new_email"])
        except services.TooManyAttempts as error:
            form.add_error(None, str(error))
            return render(request, "accounts/profile_email.html", {"form": form}, status=429)
        except services.AccountsError as error:
            form.add_error("new_email", str(error))
        else:
            # The message names no address: messages may travel in a cookie.
            messages.success(
                request,
                "We emailed your new address. Follow the link in that email within "
                f"{EMAIL_CHANGE_TIMEOUT // 3600} hours to confirm the change; until then, you keep signing in "
                "with your current address.",
            )
            return redirect("accounts:profile")
    return render(request, "accounts/profile_email.html", {"form": form})


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def email_change_confirm(request: HttpRequest, user_id: str, token: str) -> HttpResponse:
    """The link from the email: GET shows what will change, only the POST changes it (link scanners change nothing).

    The link works for the signed-in user it was sent for; any other gets the same 400 as a bad link.
    """
    try:
        change = services.check_email_change_link(request.user, user_id=user_id, token=token)
    except services.AccountsError as error:
        return _confirm_response(request, {"error": str(error)}, status=400)
    if request.method == "GET":
        return _confirm_response(request, {"new_email": change.email}, status=200)
    try:
        services.confirm_email_change(
            request.user, user_id=user_id, token=token, keep_session=request.session.get(SESSION_ID_KEY)
        )
    except services.AccountsError as error:
        return _confirm_response(request, {"error": str(error)}, status=400)
    # Who this session signs in as just changed: it continues under a new key.
    request.session.cycle_key()
    messages.success(request, "Your email address was changed. Your other sessions have been logged out.")
    return redirect("accounts:profile")


def _confirm_response(request: HttpRequest, context: dict, *, status: int) -> HttpResponse:
    response = render(request, "accounts/profile_email_confirm.html", context, status=status)
    # The page's URL holds the token: no Referer may carry it anywhere, not even to us.
    response["Referrer-Policy"] = "no-referrer"
    return response
