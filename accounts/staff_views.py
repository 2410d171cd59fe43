"""The staff console: find an account and open a support session in it, the only staff path to tenant data."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from accounts import support
from accounts.models import User
from accounts.reauth import is_recently_verified
from accounts.selectors import (
    account_for_staff,
    accounts_for_staff,
    members_support_may_act_as,
    support_sessions_of_staff,
)
from accounts.support_middleware import SUPPORT_SESSION_KEY

View = Callable[..., HttpResponse]


def staff_required(view: View) -> View:
    """Staff only; anyone else gets the 404 of a page that does not exist."""

    @functools.wraps(view)
    def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated or not request.user.is_staff:
            raise Http404("No such page.")
        return view(request, *args, **kwargs)

    return checked


class StartSupportSessionForm(forms.Form):
    # Offered: the members support may act as. Checked by the service, which records a refusal.
    acting_as = forms.CharField(label="Act as", help_text="The member whose view and role you take.", max_length=40)
    reason = forms.CharField(
        max_length=support.REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why you need to enter the account. The owners read this.",
    )
    ticket = forms.CharField(max_length=64, required=False, label="Ticket reference")
    justification = forms.CharField(
        max_length=support.REASON_MAX_LENGTH,
        required=False,
        label="Break-glass justification",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Only when the account has not granted access: the emergency that cannot wait. "
        "The owners are told at once, and the session is read-only.",
    )

    def __init__(self, *args: Any, members: list[User], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["acting_as"].widget = forms.Select(
            choices=[(member.public_id, member.full_name or member.email) for member in members]
        )


@staff_required
def staff_index(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    context = {
        "query": query,
        "accounts": accounts_for_staff(query),
        "sessions": support_sessions_of_staff(request.user),
    }
    return render(request, "accounts/staff/index.html", context)


@staff_required
def staff_account(request: HttpRequest, target_account: str) -> HttpResponse:
    """What support may know before entering: the account's name, its grant, and whom to act as."""
    account = account_for_staff(target_account)
    form = StartSupportSessionForm(members=members_support_may_act_as(account))
    return _account_page(request, account, form)


def _account_page(request: HttpRequest, account, form: StartSupportSessionForm, *, status: int = 200) -> HttpResponse:
    context = {"account": account, "grant": support.active_grant(account), "form": form}
    return render(request, "accounts/staff/account.html", context, status=status)


@sensitive_post_parameters("reason", "justification")
def staff_start_session(request: HttpRequest, target_account: str) -> HttpResponse:
    """POST only: a session never starts from a link. Refusals (a GET, a user who is not staff) are recorded."""
    if not request.user.is_authenticated:
        raise Http404("No such page.")
    account = account_for_staff(target_account)
    if not request.user.is_staff:
        support.record_refusal(account, staff=request.user, code="not_staff")
        raise Http404("No such page.")
    if request.method != "POST":
        support.record_refusal(account, staff=request.user, code="get_request")
        return HttpResponseNotAllowed(["POST"])
    return _start(request, account)


def _start(request: HttpRequest, account) -> HttpResponse:
    if not is_recently_verified(request):
        # Back to the account's page afterwards, not to this POST-only address.
        target = reverse("staff:account", kwargs={"target_account": account.public_id})
        return redirect(reverse("reauthenticate") + "?" + urlencode({"next": target}))
    form = StartSupportSessionForm(request.POST, members=members_support_may_act_as(account))
    acting_as_id = request.POST.get("acting_as", "")
    if not form.is_valid():
        support.record_refusal(account, staff=request.user, code="invalid_form", acting_as_id=acting_as_id or None)
        return _account_page(request, account, form, status=400)
    try:
        data = form.cleaned_data
        session = support.start_support_session(
            staff=request.user,
            account=account,
            acting_as_id=data["acting_as"],
            reason=data["reason"],
            ticket=data["ticket"],
            justification=data["justification"],
        )
    except support.SupportAccessRefused as refusal:
        form.add_error(None, str(refusal))
        return _account_page(request, account, form, status=403)
    # Entering someone else's view of an account is a privilege change.
    request.session.cycle_key()
    request.session[SUPPORT_SESSION_KEY] = session.public_id
    return redirect("dashboard", account_id=account.public_id)


@require_POST
def end_session(request: HttpRequest) -> HttpResponse:
    """End the running support session and return to the console as oneself."""
    session = getattr(request, "support_session", None)
    if session is None:
        return redirect("staff:index")
    support.end_support_session(session, reason="ended")
    request.session.pop(SUPPORT_SESSION_KEY, None)
    request.session.cycle_key()
    messages.success(request, f"Your support session in {session.account.name} has ended.")
    return redirect("staff:index")
