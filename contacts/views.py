"""Dashboard pages for audiences: contacts, lists, segments, and the CSV export."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.models import Account, Role
from accounts.reauth import require_recent_authentication
from accounts.roles import require_role
from accounts.tenancy import account_scope
from audit.services import record
from bluespark.csv_safe import Echo, safe_row
from bluespark.cursors import open_position, seal_position
from contacts import segments, services
from contacts.forms import (
    CONDITION_OPS,
    ConfirmDeleteForm,
    ContactFilterForm,
    ContactForm,
    MailingListSettingsForm,
    SegmentBuilder,
    SegmentForm,
    condition_fields,
)
from contacts.models import CustomField, MailingList, Segment
from contacts.selectors import (
    ContactFilter,
    access_contact,
    access_mailing_list,
    access_segment,
    contact_activity,
    contact_list,
    contact_rows,
    contacts_after,
    custom_field_list,
    mailing_list_list_with_counts,
    segment_list,
    sensitive_field_ids_with_values,
    subscriber_count,
    subscriptions_of_contact,
    tag_named,
    tags_of_contact,
)

PAGE_SIZE = 50
EXPORT_BATCH = 2000
EXPORT_COLUMNS = ["id", "email", "first_name", "last_name", "status", "source", "created_at", "tags"]


# --- keyset cursors ------------------------------------------------------------------


def _cursor(row: Any) -> str:
    return seal_position("contacts", (row.created_at, row.pk))


def _position(cursor: str | None) -> tuple[datetime, int] | None:
    """The (created_at, id) a cursor names; a bad cursor starts over at the newest."""
    opened = open_position("contacts", cursor) if cursor else None
    return opened[1] if opened is not None else None


# --- filters ---------------------------------------------------------------------------


def _contact_filters(request: HttpRequest, source: QueryDict) -> tuple[ContactFilterForm, ContactFilter]:
    """The form and the filter it means. A list, tag or segment not in this account is a 404, as on its own page."""
    account = request.account
    mailing_list = access_mailing_list(account, source["list"]) if source.get("list") else None
    segment = access_segment(account, source["segment"]) if source.get("segment") else None
    tag = tag_named(account, source["tag"]) if source.get("tag") else None
    present = {name: source[name] for name in ContactFilterForm.FILTER_NAMES if source.get(name)}
    form = ContactFilterForm(present or None, account=account)
    if not form.is_bound or not form.is_valid():
        return form, ContactFilter()
    data = form.cleaned_data
    filters = ContactFilter(
        email=data.get("email") or "",
        mailing_list=mailing_list,
        status=data.get("status") or "",
        tag=tag,
        segment=segment,
    )
    return form, filters


def _filter_query(source: QueryDict) -> str:
    query = QueryDict(mutable=True)
    for name in ContactFilterForm.FILTER_NAMES:
        if source.get(name):
            query[name] = source[name]
    return query.urlencode()


def _filter_data(filters: ContactFilter) -> dict[str, Any]:
    """What an export records of its filters: ids and names, never the searched address."""
    return {
        "email_search": bool(filters.email),
        "list": filters.mailing_list.public_id if filters.mailing_list else None,
        "status": filters.status or None,
        "tag": filters.tag.name if filters.tag else None,
        "segment": filters.segment.public_id if filters.segment else None,
    }


# --- contacts ------------------------------------------------------------------------------


@require_role(Role.VIEWER)
def contact_index(request: HttpRequest) -> HttpResponse:
    """The account's contacts, newest first, 50 a page; search by full address, filter by list, status, tag, segment."""
    account = request.account
    form, filters = _contact_filters(request, request.GET)
    rows: list = []
    error = None
    if not form.errors:
        try:
            contacts = contacts_after(contact_list(account, filters), _position(request.GET.get("after")))
            rows = contact_rows(account, contacts, limit=PAGE_SIZE + 1)
        except segments.SegmentError as problem:
            error = f"The segment “{filters.segment.name}” cannot be applied: {problem}"
    has_more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filter_query = _filter_query(request.GET)
    next_query = None
    if has_more:
        query = QueryDict(filter_query, mutable=True)
        query["after"] = _cursor(rows[-1])
        next_query = query.urlencode()
    context = {
        "form": form,
        "filters": filters,
        "rows": rows,
        "error": error,
        "filter_query": filter_query,
        "next_query": next_query,
        "is_later_page": bool(request.GET.get("after")),
    }
    return render(request, "contacts/contact_index.html", context, status=400 if form.errors or error else 200)


@require_role(Role.VIEWER)
def contact_detail(request: HttpRequest, contact_id: str) -> HttpResponse:
    """One contact: fields, custom fields (sensitive ones masked), tags, subscriptions with consent, activity."""
    account = request.account
    contact = access_contact(account, contact_id)
    attributes = contact.attributes or {}
    present = sensitive_field_ids_with_values(account, contact)
    custom_fields = [
        {
            "field": field,
            "value": None if field.sensitive else attributes.get(field.key),
            "is_set": field.pk in present if field.sensitive else field.key in attributes,
        }
        for field in custom_field_list(account)
    ]
    context = {
        "contact": contact,
        "custom_fields": custom_fields,
        "tags": tags_of_contact(account, contact),
        "subscriptions": list(subscriptions_of_contact(account, contact)),
        "activity": contact_activity(account, contact),
    }
    return render(request, "contacts/contact_detail.html", context)


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def contact_create(request: HttpRequest) -> HttpResponse:
    account = request.account
    form = ContactForm(request.POST or None, account=account)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            contact = services.create_contact(
                account,
                email=data["email"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                tags=data["tags"],
                attributes={key: value for key, value in form.attributes().items() if value is not None},
            )
        except services.ContactError as error:
            _show_contact_error(form, error)
        else:
            messages.success(request, "Contact added.")
            return redirect("contacts:contact_detail", account_id=account.public_id, contact_id=contact.public_id)
    return render(request, "contacts/contact_form.html", {"form": form}, status=400 if form.errors else 200)


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def contact_edit(request: HttpRequest, contact_id: str) -> HttpResponse:
    account = request.account
    contact = access_contact(account, contact_id)
    initial = ContactForm.initial_for(contact, tags_of_contact(account, contact))
    form = ContactForm(request.POST or None, account=account, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.update_contact(
                account,
                contact,
                email=data["email"],
                first_name=data["first_name"],
                last_name=data["last_name"],
                tags=data["tags"],
                attributes=form.attributes(),
            )
        except services.ContactError as error:
            _show_contact_error(form, error)
        else:
            messages.success(request, "Contact saved.")
            return redirect("contacts:contact_detail", account_id=account.public_id, contact_id=contact.public_id)
    context = {"form": form, "contact": contact}
    return render(request, "contacts/contact_form.html", context, status=400 if form.errors else 200)


def _show_contact_error(form: ContactForm, error: services.ContactError) -> None:
    """The service's per-field messages beside the fields they concern; the rest above the form."""
    placed = False
    for name, problems in error.errors.items():
        target = name if name in form.fields else None
        for problem in problems:
            form.add_error(target, problem)
            placed = True
    if not placed:
        form.add_error(None, error.message)


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
@require_recent_authentication
def contact_delete(request: HttpRequest, contact_id: str) -> HttpResponse:
    """GET asks to confirm; POST deletes the contact and its subscriptions (the service records ``contact.deleted``)."""
    account = request.account
    contact = access_contact(account, contact_id)
    if request.method == "POST":
        services.delete_contact(account, contact)
        messages.success(request, "Contact deleted.")
        return redirect("contacts:contact_index", account_id=account.public_id)
    return render(request, "contacts/contact_delete.html", {"contact": contact})


# --- export --------------------------------------------------------------------------------


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
@require_recent_authentication
def contact_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """GET asks to confirm the filters; POST records ``contact.exported`` and streams the contacts as CSV.

    Admins and owners only, after a fresh password check, never in a support
    session. Sensitive custom fields are left out.
    """
    account = request.account
    source = request.POST if request.method == "POST" else request.GET
    form, filters = _contact_filters(request, source)
    context = {
        "form": form,
        "filters": filters,
        "filter_query": _filter_query(source),
        "sensitive_fields": list(custom_field_list(account, sensitive=True)),
        "exported_fields": list(custom_field_list(account, sensitive=False)),
    }
    if form.errors:
        return render(request, "contacts/export_confirm.html", context, status=400)
    if request.method != "POST":
        return render(request, "contacts/export_confirm.html", context)
    with transaction.atomic():
        record("contact.exported", account=account, data=_filter_data(filters))
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    lines = _csv_lines(account, filters, context["exported_fields"])
    response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="contacts-{account.public_id}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _csv_lines(account: Account, filters: ContactFilter, fields: list[CustomField]) -> Iterator[str]:
    """The CSV, 2,000 contacts at a time, each batch decrypted by column: a million rows never sit in memory.

    The response is read after the view returned and the middleware left the
    account's scope, so each batch enters it again (and leaves it before
    yielding, so no scope leaks into whatever runs between two chunks).
    """
    writer = csv.writer(Echo())
    yield writer.writerow(safe_row([*EXPORT_COLUMNS, *(field.key for field in fields)]))
    position = None
    while True:
        with account_scope(account):
            contacts = contacts_after(contact_list(account, filters), position)
            batch = contact_rows(account, contacts, limit=EXPORT_BATCH, with_tags=True)
        if not batch:
            return
        chunk = []
        for row in batch:
            cells = [
                row.public_id,
                row.email,
                row.first_name,
                row.last_name,
                row.status,
                row.source,
                row.created_at.isoformat(),
                ", ".join(row.tags),
                *(_cell(row.attributes.get(field.key)) for field in fields),
            ]
            chunk.append(writer.writerow(safe_row(cells)))
        yield "".join(chunk)
        if len(batch) < EXPORT_BATCH:
            return
        position = (batch[-1].created_at, batch[-1].pk)


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value


# --- lists ---------------------------------------------------------------------------------


@require_role(Role.VIEWER)
def mailing_list_index(request: HttpRequest) -> HttpResponse:
    mailing_lists = mailing_list_list_with_counts(request.account)
    return render(request, "contacts/list_index.html", {"mailing_lists": mailing_lists})


@require_role(Role.VIEWER)
def mailing_list_detail(request: HttpRequest, list_id: str) -> HttpResponse:
    account = request.account
    mailing_list = access_mailing_list(account, list_id)
    context = {"mailing_list": mailing_list, "subscriber_count": subscriber_count(account, mailing_list)}
    return render(request, "contacts/list_detail.html", context)


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def mailing_list_create(request: HttpRequest) -> HttpResponse:
    form = MailingListSettingsForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        mailing_list = services.save_mailing_list(
            request.account, MailingList(account=request.account), form.cleaned_data
        )
        messages.success(request, f"List “{mailing_list.name}” created.")
        return redirect("contacts:list_detail", account_id=request.account.public_id, list_id=mailing_list.public_id)
    return render(request, "contacts/list_form.html", {"form": form})


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def mailing_list_edit(request: HttpRequest, list_id: str) -> HttpResponse:
    account = request.account
    mailing_list = access_mailing_list(account, list_id)
    initial = {
        name: getattr(mailing_list, name) for name in ("name", "description", "opt_in", "form_enabled", "consent_text")
    }
    form = MailingListSettingsForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        services.save_mailing_list(account, mailing_list, form.cleaned_data)
        messages.success(request, "List saved.")
        return redirect("contacts:list_detail", account_id=account.public_id, list_id=mailing_list.public_id)
    return render(request, "contacts/list_form.html", {"form": form, "mailing_list": mailing_list})


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
@require_recent_authentication
def mailing_list_delete(request: HttpRequest, list_id: str) -> HttpResponse:
    """Confirm by typing the list's name, then delete it and its subscriptions (the contacts stay)."""
    account = request.account
    mailing_list = access_mailing_list(account, list_id)
    form = ConfirmDeleteForm(request.POST or None, expected=mailing_list.name)
    if request.method == "POST" and form.is_valid():
        name = mailing_list.name
        services.delete_mailing_list(account, mailing_list)
        messages.success(request, f"List “{name}” deleted.")
        return redirect("contacts:list_index", account_id=account.public_id)
    context = {"form": form, "mailing_list": mailing_list, "subscriber_count": subscriber_count(account, mailing_list)}
    return render(request, "contacts/list_delete.html", context, status=400 if form.errors else 200)


# --- segments ------------------------------------------------------------------------------


def _displayed_count(account: Account, segment: Segment) -> dict[str, Any]:
    """A segment's count as the pages show it; a definition that no longer holds says why instead."""
    try:
        count, refreshing = segments.count_for_display(account, segment)
    except segments.SegmentError as error:
        return {"count": None, "refreshing": False, "error": str(error)}
    return {"count": count, "refreshing": refreshing, "error": None}


@require_role(Role.VIEWER)
def segment_index(request: HttpRequest) -> HttpResponse:
    account = request.account
    rows = [{"segment": segment, **_displayed_count(account, segment)} for segment in segment_list(account)]
    return render(request, "contacts/segment_index.html", {"rows": rows})


@require_role(Role.VIEWER)
def segment_detail(request: HttpRequest, segment_id: str) -> HttpResponse:
    account = request.account
    segment = access_segment(account, segment_id)
    context = {
        "segment": segment,
        "builder": SegmentBuilder.from_definition(segment.definition),
        "definition_json": json.dumps(segment.definition, indent=2, sort_keys=True),
        **_displayed_count(account, segment),
    }
    return render(request, "contacts/segment_detail.html", context)


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def segment_create(request: HttpRequest) -> HttpResponse:
    return _segment_builder(request, None)


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def segment_edit(request: HttpRequest, segment_id: str) -> HttpResponse:
    return _segment_builder(request, access_segment(request.account, segment_id))


@require_role(Role.EDITOR)
@require_POST
def segment_count(request: HttpRequest) -> HttpResponse:
    """The builder's live count (htmx): how many contacts the rows on screen match right now."""
    account = request.account
    builder = SegmentBuilder.from_post(request.POST)
    context: dict[str, Any] = {"count": None, "refreshing": False, "error": builder.error}
    if builder.error is None:
        definition = builder.definition(number_fields=_number_fields(account))
        try:
            # A large account's figure comes from a background count: the fragment asks again while it runs.
            context["count"], context["refreshing"] = segments.count_definition_for_display(account, definition)
        except segments.SegmentError as error:
            context["error"] = str(error)
    return render(request, "contacts/segment_count.html", context)


def _number_fields(account: Account) -> set[str]:
    return {
        f"attributes.{field.key}"
        for field in custom_field_list(account, sensitive=False)
        if field.type == CustomField.Type.NUMBER
    }


def _segment_builder(request: HttpRequest, segment: Segment | None) -> HttpResponse:
    """Rows of field, operator and value under an all/any switch; rows are added and removed without JavaScript."""
    account = request.account
    status = 200
    if request.method == "POST":
        form = SegmentForm(request.POST)
        builder = SegmentBuilder.from_post(request.POST)
        if segment is not None and not SegmentBuilder.from_definition(segment.definition).is_flat:
            builder = SegmentBuilder.from_definition(segment.definition)
        action = request.POST.get("action", "save")
        if action == "add":
            builder.add_row()
        elif action.startswith("remove-"):
            builder.remove_row(action.removeprefix("remove-"))
        else:
            status = 400
            if builder.error:
                form.add_error(None, builder.error)
            elif form.is_valid():
                definition = (
                    builder.definition(number_fields=_number_fields(account)) if builder.is_flat else segment.definition
                )
                try:
                    normalised = segments.validate(account, definition)
                except segments.SegmentError as error:
                    form.add_error(None, str(error))
                else:
                    saved = services.save_segment(
                        account, segment, name=form.cleaned_data["name"], definition=normalised
                    )
                    messages.success(request, f"Segment “{saved.name}” saved.")
                    return redirect("contacts:segment_detail", account_id=account.public_id, segment_id=saved.public_id)
    else:
        form = SegmentForm(initial={"name": segment.name} if segment else None)
        builder = SegmentBuilder.from_definition(segment.definition if segment else None)
    context = {
        "form": form,
        "builder": builder,
        "segment": segment,
        "condition_fields": condition_fields(account),
        "condition_ops": CONDITION_OPS,
    }
    return render(request, "contacts/segment_form.html", context, status=status)


# --- lists' and segments' writes ---------------------------------------------------------
# The page-level writes of lists and segments, each in its own transaction with its audit event.
