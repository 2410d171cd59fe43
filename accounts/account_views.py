"""The account's own settings: its name (admins) and its deletion (owners)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts import services
from accounts.models import Role
from accounts.reauth import require_recent_authentication
from accounts.roles import require_role


class AccountNameForm(forms.Form):
    # Django strips it, so a name of spaces is "required" like an empty one.
    name = forms.CharField(label="Account name", max_length=200)


class DeleteAccountForm(forms.Form):
    confirm_name = forms.CharField(label="Type the account's name to confirm", max_length=200, strip=False)

    def __init__(self, *args, account_name: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.account_name = account_name

    def clean_confirm_name(self) -> str:
        typed = self.cleaned_data["confirm_name"]
        if typed.strip() != self.account_name:
            raise forms.ValidationError("That is not the account's name.")
        return typed


def _page(request: HttpRequest, *, name_form: AccountNameForm, delete_form: DeleteAccountForm, status: int = 200):
    context = {"name_form": name_form, "delete_form": delete_form}
    return render(request, "accounts/account_settings.html", context, status=status)


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
def account_general(request: HttpRequest) -> HttpResponse:
    """Rename the account (admins and owners); owners also see how to delete it."""
    account = request.account
    delete_form = DeleteAccountForm(account_name=account.name)
    if request.method == "POST":
        name_form = AccountNameForm(request.POST)
        if not name_form.is_valid():
            return _page(request, name_form=name_form, delete_form=delete_form, status=400)
        services.rename_account(account, name=name_form.cleaned_data["name"])
        messages.success(request, "The account's name was changed.")
        return redirect("account_settings:general", account_id=account.public_id)
    return _page(request, name_form=AccountNameForm(initial={"name": account.name}), delete_form=delete_form)


@require_role(Role.OWNER)
@require_POST
@require_recent_authentication
def account_delete(request: HttpRequest) -> HttpResponse:
    """Delete the account: its data becomes unreadable at once (its keys are destroyed)."""
    account = request.account
    delete_form = DeleteAccountForm(request.POST, account_name=account.name)
    if not delete_form.is_valid():
        name_form = AccountNameForm(initial={"name": account.name})
        return _page(request, name_form=name_form, delete_form=delete_form, status=400)
    name = account.name
    services.close_account(account, actor=request.user)
    messages.success(request, f"{name} was deleted, with all its data.")
    return redirect("accounts:home")
