"""The account's team: members, roles and invitations."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.models import Role
from accounts.reauth import require_recent_authentication
from accounts.roles import require_role
from accounts.selectors import (
    access_invitation,
    access_membership,
    open_invitation_list,
    team_member_list,
)


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.EDITOR)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


def _team_page(request: HttpRequest, *, form: InviteForm | None = None, status: int = 200) -> HttpResponse:
    context = {
        "members": team_member_list(request.account),
        "invitations": open_invitation_list(request.account),
        "form": form or InviteForm(),
        "roles": Role.choices,
        "can_manage": request.membership.has_role(Role.ADMIN),
    }
    return render(request, "accounts/team.html", context, status=status)


@require_role(Role.VIEWER)
def team_index(request: HttpRequest) -> HttpResponse:
    return _team_page(request)


@require_role(Role.ADMIN)
@require_POST
@require_recent_authentication
def team_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            services.invite_member(request.account, invited_by=request.membership, **form.cleaned_data)
        except services.AccountsError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
            return redirect("account_settings:team", account_id=request.account.public_id)
    return _team_page(request, form=form, status=400)


@require_role(Role.ADMIN)
@require_POST
@require_recent_authentication
def team_change_role(request: HttpRequest, user_id: str) -> HttpResponse:
    membership = access_membership(request.account, user_id)
    form = RoleForm(request.POST)
    try:
        if not form.is_valid():
            raise services.AccountsError("Choose a role.")
        services.change_member_role(
            request.account, membership, role=form.cleaned_data["role"], actor=request.membership
        )
    except services.AccountsError as error:
        messages.error(request, str(error))
    else:
        if membership.user_id == request.user.pk:
            # The user's own privileges changed under this session.
            request.session.cycle_key()
        messages.success(request, "Role changed.")
    return redirect("account_settings:team", account_id=request.account.public_id)


@require_role(Role.ADMIN)
@require_POST
@require_recent_authentication
def team_remove(request: HttpRequest, user_id: str) -> HttpResponse:
    membership = access_membership(request.account, user_id)
    try:
        services.remove_member(request.account, membership, actor=request.membership)
    except services.AccountsError as error:
        messages.error(request, str(error))
        return redirect("account_settings:team", account_id=request.account.public_id)
    if membership.user_id == request.user.pk:
        return redirect("accounts:home")
    messages.success(request, "Member removed.")
    return redirect("account_settings:team", account_id=request.account.public_id)


@require_role(Role.ADMIN)
@require_POST
def team_withdraw_invitation(request: HttpRequest, invitation_id: str) -> HttpResponse:
    services.withdraw_invitation(request.account, access_invitation(request.account, invitation_id))
    messages.success(request, "Invitation withdrawn.")
    return redirect("account_settings:team", account_id=request.account.public_id)


@login_required
@require_http_methods(["GET", "POST"])
def accept_invitation(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows the invitation; the POST accepts it, as the invited address only."""
    invitation = services.find_open_invitation(token)
    if invitation is None:
        return render(request, "accounts/invitation.html", {"invalid": True}, status=400)
    if request.method == "POST":
        try:
            membership = services.accept_invitation(invitation, user=request.user)
        except services.AccountsError as error:
            return render(
                request, "accounts/invitation.html", {"invitation": invitation, "error": str(error)}, status=400
            )
        messages.success(request, f"You joined {membership.account.name}.")
        return redirect("dashboard", account_id=membership.account.public_id)
    return render(request, "accounts/invitation.html", {"invitation": invitation})
