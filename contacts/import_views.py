"""The CSV import wizard: upload, mapping and options, progress with pause and cancel, summary and error report.

Every step needs the editor role. The views translate HTTP; the engine in
``contacts/importing.py`` stores, sniffs, configures and runs the import.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.contrib import messages
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.models import Account, Role
from accounts.roles import require_role
from contacts import importing
from contacts.models import Contact, ContactImport
from contacts.selectors import contact_import_list, custom_field_list, mailing_list_list, mailing_list_with_id

ACTIVE = (ContactImport.Status.QUEUED, ContactImport.Status.RUNNING)
DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}
BUILT_IN_CHOICES = [
    (importing.IGNORE, "Ignore this column"),
    (importing.EMAIL, "Email address"),
    (importing.FIRST_NAME, "First name"),
    (importing.LAST_NAME, "Last name"),
    (importing.TAGS, "Tags"),
]


def _contact_import(account: Account, import_id: str) -> ContactImport:
    """The account's import, or the same 404 for one that is missing and one that is another account's."""
    contact_import = importing.access_contact_import(account, import_id)
    if contact_import is None:
        raise Http404("No such import.")
    return contact_import


def _to_progress(account: Account, contact_import: ContactImport) -> HttpResponse:
    return redirect("contacts:import_progress", account_id=account.public_id, import_id=contact_import.public_id)


# --- index and upload --------------------------------------------------------------------------


@require_role(Role.EDITOR)
@require_GET
def import_index(request: HttpRequest) -> HttpResponse:
    """The upload form and the account's recent imports with their status and counts."""
    return _index(request, error=None)


def _index(request: HttpRequest, *, error: str | None) -> HttpResponse:
    context = {"imports": contact_import_list(request.account), "error": error}
    return render(request, "contacts/import_index.html", context, status=400 if error else 200)


@require_role(Role.EDITOR)
@require_POST
def import_upload(request: HttpRequest) -> HttpResponse:
    """Store the upload (encrypted) and check that it reads as CSV before showing the mapping.

    A file the engine refuses is cancelled at once, so its upload is not kept.
    """
    account = request.account
    uploaded = request.FILES.get("file")
    if uploaded is None or not uploaded.size:
        return _index(request, error="Choose a CSV file to upload.")
    try:
        contact_import = importing.store_upload(account, uploaded, created_by=request.user)
    except importing.ImportError_ as error:
        return _index(request, error=str(error))
    try:
        importing.sniff(contact_import)
    except importing.ImportFileError as error:
        importing.cancel_import(account, contact_import, actor=request.user)
        return _index(request, error=str(error))
    return redirect("contacts:import_mapping", account_id=account.public_id, import_id=contact_import.public_id)


# --- mapping, preview and options -----------------------------------------------------------------


@require_role(Role.EDITOR)
@require_http_methods(["GET", "POST"])
def import_mapping(request: HttpRequest, import_id: str) -> HttpResponse:
    """A target per column (prefilled with the engine's suggestion), the header switch, the first rows, the options.

    POST stores the mapping and options and queues the import.
    """
    account = request.account
    contact_import = _contact_import(account, import_id)
    if contact_import.status != ContactImport.Status.UPLOADED:
        return render(request, "contacts/import_mapping.html", {"contact_import": contact_import, "started": True})
    try:
        preview = importing.sniff(contact_import)
    except importing.ImportFileError as error:
        context = {"contact_import": contact_import, "file_error": str(error)}
        return render(request, "contacts/import_mapping.html", context, status=400)
    mailing_lists = list(mailing_list_list(account))
    chosen = _chosen_options(request, preview) if request.method == "POST" else _suggested_options(preview)
    error = None
    if request.method == "POST":
        mailing_list = None
        if chosen["list"]:
            mailing_list = mailing_list_with_id(account, chosen["list"])
        if chosen["list"] and mailing_list is None:
            error = "Choose one of your lists."
        else:
            try:
                importing.configure(
                    contact_import,
                    mapping=chosen["mapping"],
                    update_existing=chosen["update_existing"],
                    mailing_list=mailing_list,
                    consent_source=chosen["consent_source"],
                    has_header=chosen["has_header"],
                )
                importing.start_import(account, contact_import, actor=request.user)
            except importing.ImportError_ as problem:
                error = str(problem)
            else:
                messages.success(request, "Import queued.")
                return _to_progress(account, contact_import)
    context = {
        "contact_import": contact_import,
        "preview": preview,
        "delimiter_name": DELIMITER_NAMES.get(preview.delimiter, preview.delimiter),
        "columns": [
            {"position": str(position), "name": name, "target": chosen["mapping"].get(str(position), "")}
            for position, name in enumerate(preview.columns)
        ],
        "targets": [
            *BUILT_IN_CHOICES,
            *((field.key, field.label or field.key) for field in custom_field_list(account)),
        ],
        "mailing_lists": mailing_lists,
        "consent_sources": Contact.Source.choices,
        "chosen": chosen,
        "error": error,
    }
    return render(request, "contacts/import_mapping.html", context, status=400 if error else 200)


def _suggested_options(preview: importing.Preview) -> dict[str, Any]:
    return {
        "mapping": dict(preview.suggested_mapping),
        "has_header": preview.has_header,
        "update_existing": True,
        "list": "",
        "consent_source": Contact.Source.IMPORT,
    }


def _chosen_options(request: HttpRequest, preview: importing.Preview) -> dict[str, Any]:
    """What the form asked for; the engine's ``configure`` judges it (targets, one email column, the source)."""
    data = request.POST
    return {
        "mapping": {str(position): data.get(f"column-{position}", "") for position in range(preview.column_count)},
        "has_header": data.get("has_header") == "on",
        "update_existing": data.get("existing", "update") != "skip",
        "list": data.get("list", ""),
        "consent_source": data.get("consent_source", Contact.Source.IMPORT),
    }


# --- progress, controls and the outcome -----------------------------------------------------------


def _error_report(contact_import: ContactImport) -> Path | None:
    """The error report once a row was refused; the engine writes one (its header alone) for every run."""
    if not (contact_import.invalid or contact_import.duplicates):
        return None
    return importing.error_report_path(contact_import)


def _progress_context(contact_import: ContactImport) -> dict[str, Any]:
    return {
        "contact_import": contact_import,
        "is_active": contact_import.status in ACTIVE,
        "has_error_report": _error_report(contact_import) is not None,
    }


@require_role(Role.EDITOR)
@require_GET
def import_progress(request: HttpRequest, import_id: str) -> HttpResponse:
    """The progress bar and counts (refreshed by htmx while the import is queued or running), then the summary."""
    contact_import = _contact_import(request.account, import_id)
    return render(request, "contacts/import_progress.html", _progress_context(contact_import))


@require_role(Role.EDITOR)
@require_GET
def import_progress_fragment(request: HttpRequest, import_id: str) -> HttpResponse:
    """The part of the progress page that htmx swaps every two seconds; it stops asking once the import stops."""
    contact_import = _contact_import(request.account, import_id)
    return render(request, "contacts/import_progress_fragment.html", _progress_context(contact_import))


def _change_state(
    request: HttpRequest, import_id: str, change: Callable[[ContactImport], object], success: str
) -> HttpResponse:
    """Pause, resume or cancel through the engine; a refusal becomes a message on the progress page."""
    account = request.account
    contact_import = _contact_import(account, import_id)
    try:
        change(contact_import)
    except importing.ImportError_ as error:
        messages.error(request, str(error))
    else:
        messages.success(request, success)
    return _to_progress(account, contact_import)


@require_role(Role.EDITOR)
@require_POST
def import_pause(request: HttpRequest, import_id: str) -> HttpResponse:
    return _change_state(
        request,
        import_id,
        lambda contact_import: importing.pause_import(request.account, contact_import),
        "Import paused; it stops after the rows it is writing.",
    )


@require_role(Role.EDITOR)
@require_POST
def import_resume(request: HttpRequest, import_id: str) -> HttpResponse:
    return _change_state(
        request,
        import_id,
        lambda contact_import: importing.resume_import(request.account, contact_import),
        "Import resumed.",
    )


@require_role(Role.EDITOR)
@require_POST
def import_cancel(request: HttpRequest, import_id: str) -> HttpResponse:
    """Stop the import for good; the rows already imported stay (the service records ``contact.import_cancelled``)."""
    return _change_state(
        request,
        import_id,
        lambda contact_import: importing.cancel_import(request.account, contact_import, actor=request.user),
        "Import cancelled. Rows already imported stay.",
    )


@require_role(Role.EDITOR)
@require_GET
def import_error_report(request: HttpRequest, import_id: str) -> FileResponse:
    """The per-row error report as a CSV download (line, column, field, reason: no cell values); 404 without one."""
    contact_import = _contact_import(request.account, import_id)
    path = _error_report(contact_import)
    if path is None:
        raise Http404("This import has no error report.")
    response = FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=f"import-{contact_import.public_id}-errors.csv",
        content_type="text/csv; charset=utf-8",
    )
    response["Cache-Control"] = "no-store"
    return response
