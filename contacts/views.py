"""Dashboard pages for audiences."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.models import Role
from accounts.roles import require_role
from contacts import services
from contacts.forms import MailingListForm
from contacts.selectors import access_mailing_list, mailing_list_list


@require_role(Role.VIEWER)
def mailing_list_index(request: HttpRequest) -> HttpResponse:
    return render(request, "contacts/list_index.html", {"mailing_lists": mailing_list_list(request.account)})


@require_role(Role.VIEWER)
def mailing_list_detail(request: HttpRequest, list_id: str) -> HttpResponse:
    mailing_list = access_mailing_list(request.account, list_id)
    return render(request, "contacts/list_detail.html", {"mailing_list": mailing_list})


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def mailing_list_create(request: HttpRequest) -> HttpResponse:
    form = MailingListForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        mailing_list = services.create_mailing_list(request.account, **form.cleaned_data)
        messages.success(request, f"List “{mailing_list.name}” created.")
        return redirect("contacts:list_detail", account_id=request.account.public_id, list_id=mailing_list.public_id)
    return render(request, "contacts/list_form.html", {"form": form})
