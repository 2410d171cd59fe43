"""Dashboard pages for an account's API keys (admins and owners)."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from accounts import services
from accounts.models import ApiScope, Role
from accounts.reauth import require_recent_authentication
from accounts.roles import require_role
from accounts.selectors import access_api_key, api_key_list


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Say where the key is used, e.g. “CRM sync”.")
    scopes = forms.MultipleChoiceField(choices=ApiScope.choices, widget=forms.CheckboxSelectMultiple)
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=3650, required=False, help_text="Leave empty for a key that does not expire."
    )


@require_role(Role.ADMIN)
def api_key_index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "accounts/api_keys.html",
        {"api_keys": api_key_list(request.account), "form": ApiKeyForm(), "now": timezone.now()},
    )


@require_role(Role.ADMIN)
@require_POST
@require_recent_authentication
@never_cache
def api_key_create(request: HttpRequest) -> HttpResponse:
    """Issue a key and show its token on this one response, never again (and never cached)."""
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        context = {"api_keys": api_key_list(request.account), "form": form, "now": timezone.now()}
        return render(request, "accounts/api_keys.html", context, status=400)
    days = form.cleaned_data["expires_in_days"]
    issued = services.create_api_key(
        request.account,
        name=form.cleaned_data["name"],
        scopes=form.cleaned_data["scopes"],
        created_by=request.user,
        expires_at=timezone.now() + timedelta(days=days) if days else None,
    )
    return render(request, "accounts/api_key_created.html", {"api_key": issued.key, "token": issued.token})


@require_role(Role.ADMIN)
@require_POST
def api_key_revoke(request: HttpRequest, key_id: str) -> HttpResponse:
    key = access_api_key(request.account, key_id)
    services.revoke_api_key(request.account, key)
    messages.success(request, f"The key “{key.name}” is revoked: requests made with it now fail.")
    return redirect("account_settings:api_keys", account_id=request.account.public_id)
