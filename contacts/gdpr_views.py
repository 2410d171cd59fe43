"""Dashboard pages for the person's rights and the suppression list.

Export and erasure are for admins and owners after a recent re-authentication
(and never in a support session): both hand over or destroy a person's data
at once. The suppression list is read by every member and changed by editors,
who manage contacts anyway.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Role
from accounts.reauth import require_recent_authentication
from accounts.roles import require_role
from contacts import consent, gdpr
from contacts.models import Suppression
from contacts.selectors import access_contact


class EraseForm(forms.Form):
    confirm = forms.BooleanField(
        label="I understand that this person's data is deleted for good and cannot be restored.",
    )


class SuppressionAddressForm(forms.Form):
    email = forms.EmailField(max_length=254, label="Email address")


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
@require_recent_authentication
def contact_data_export(request: HttpRequest, contact_id: str) -> HttpResponse:
    """GET asks to confirm; POST downloads everything held about the person as JSON (``contact.data_exported``)."""
    contact = access_contact(request.account, contact_id)
    if request.method == "GET":
        return render(request, "contacts/gdpr_export.html", {"contact": contact})
    data = gdpr.export_person_for_download(request.account, contact, actor=request.user)
    response = HttpResponse(
        json.dumps(data, indent=2, ensure_ascii=False, default=str), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="person-{contact.public_id}.json"'
    response["Cache-Control"] = "no-store"
    return response


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
@require_recent_authentication
def contact_erase(request: HttpRequest, contact_id: str) -> HttpResponse:
    """GET asks to confirm; POST erases the person's data and keeps the tombstone (``contact.erased``)."""
    contact = access_contact(request.account, contact_id)
    form = EraseForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            gdpr.erase_person(request.account, contact, actor=request.user)
        except gdpr.GdprError as error:
            form.add_error(None, str(error))
        else:
            messages.success(request, f"The personal data of {contact.public_id} was erased.")
            return redirect("contacts:contact_detail", account_id=request.account.public_id, contact_id=contact_id)
    status = 400 if form.is_bound else 200
    return render(request, "contacts/gdpr_erase.html", {"contact": contact, "form": form}, status=status)


def _suppression_page(request: HttpRequest, *, add_form=None, remove_form=None, status: int = 200) -> HttpResponse:
    context = {
        "counts": consent.suppression_counts(request.account),
        "can_edit": request.membership.has_role(Role.EDITOR),
        "add_form": add_form or SuppressionAddressForm(prefix="add"),
        "remove_form": remove_form or SuppressionAddressForm(prefix="remove"),
        "removable": [Suppression.Reason(reason).label for reason in sorted(consent.MEMBER_LIFTABLE)],
    }
    return render(request, "contacts/suppression_index.html", context, status=status)


@require_role(Role.VIEWER)
@require_http_methods(["GET"])
def suppression_index(request: HttpRequest) -> HttpResponse:
    """How many addresses are suppressed, by reason. Addresses are not shown: only their keyed index is kept."""
    return _suppression_page(request)


@require_role(Role.EDITOR)
@require_POST
def suppression_add(request: HttpRequest) -> HttpResponse:
    form = SuppressionAddressForm(request.POST, prefix="add")
    if not form.is_valid():
        return _suppression_page(request, add_form=form, status=400)
    consent.suppress(request.account, form.cleaned_data["email"], reason=Suppression.Reason.MANUAL, actor=request.user)
    messages.success(request, "The address is on the suppression list: no message will be sent to it.")
    return redirect("contacts:suppression_index", account_id=request.account.public_id)


@require_role(Role.EDITOR)
@require_POST
def suppression_remove(request: HttpRequest) -> HttpResponse:
    form = SuppressionAddressForm(request.POST, prefix="remove")
    if not form.is_valid():
        return _suppression_page(request, remove_form=form, status=400)
    try:
        removed = consent.unsuppress(request.account, form.cleaned_data["email"], actor=request.user)
    except consent.ConsentError as error:
        form.add_error("email", str(error))
        return _suppression_page(request, remove_form=form, status=400)
    if removed:
        messages.success(request, "The address was taken off the suppression list.")
    else:
        messages.info(request, "That address is not on the suppression list.")
    return redirect("contacts:suppression_index", account_id=request.account.public_id)
