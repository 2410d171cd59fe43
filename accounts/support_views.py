"""The account's side of support access: grant it, withdraw it, see every session (owners and admins)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import support
from accounts.models import Role, SupportGrant
from accounts.reauth import require_recent_authentication
from accounts.roles import require_role
from accounts.selectors import access_support_grant, support_grant_list, support_session_list


class SupportGrantForm(forms.Form):
    access = forms.ChoiceField(choices=SupportGrant.Access.choices, initial=SupportGrant.Access.READ_ONLY)
    days = forms.TypedChoiceField(
        label="For",
        coerce=int,
        choices=[(days, f"{days} day{'s' if days > 1 else ''}") for days in support.GRANT_DAYS_CHOICES],
        initial=7,
    )
    ticket = forms.CharField(
        max_length=64,
        required=False,
        label="Ticket reference",
        help_text="The number of your support request, if you have one.",
    )


def _page(request: HttpRequest, form: SupportGrantForm, *, status: int = 200) -> HttpResponse:
    context = {
        "form": form,
        "grant": support.active_grant(request.account),
        "grants": support_grant_list(request.account)[:20],
        "sessions": support_session_list(request.account),
        "now": timezone.now(),
    }
    return render(request, "accounts/support/index.html", context, status=status)


@require_role(Role.ADMIN)
def support_index(request: HttpRequest) -> HttpResponse:
    return _page(request, SupportGrantForm())


@require_role(Role.ADMIN)
@require_POST
@require_recent_authentication
def support_grant(request: HttpRequest) -> HttpResponse:
    """Let Bluespark support in for a while. Re-authenticated: so support cannot grant itself more time."""
    form = SupportGrantForm(request.POST)
    if not form.is_valid():
        return _page(request, form, status=400)
    grant = support.grant_support_access(request.account, granted_by=request.user, **form.cleaned_data)
    messages.success(request, f"Bluespark support may enter until {grant.expires_at:%d %b %Y %H:%M} UTC.")
    return redirect("account_settings:support", account_id=request.account.public_id)


@require_role(Role.ADMIN)
@require_POST
def support_withdraw(request: HttpRequest, grant_id: str) -> HttpResponse:
    """Withdraw a grant; a session running under it ends at its next request."""
    grant = access_support_grant(request.account, grant_id)
    support.withdraw_support_access(request.account, grant, by=request.user)
    messages.success(request, "Support access is withdrawn.")
    return redirect("account_settings:support", account_id=request.account.public_id)
