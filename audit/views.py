"""The account's audit trail in the dashboard: filter, page through, export as CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import datetime, time, timedelta

from django import forms
from django.db import transaction
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accounts.models import Role
from accounts.reauth import require_recent_authentication
from accounts.roles import require_role
from accounts.selectors import team_member_list
from audit.actions import ACTIONS, describe
from audit.models import AuditEvent
from audit.selectors import EventFilter, account_events, people_named
from audit.services import record
from bluespark.csv_safe import Echo, safe_row
from bluespark.cursors import beyond, open_position, seal_position

PAGE_SIZE = 50
EXPORT_BATCH = 2000
CSV_COLUMNS = [
    "occurred_at",
    "action",
    "description",
    "actor_type",
    "actor_id",
    "actor",
    "acting_as_id",
    "acting_as",
    "support_session_id",
    "api_key_id",
    "target_type",
    "target_id",
    "ip",
    "request_id",
    "data",
]


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(required=False)
    actor = forms.ChoiceField(required=False, label="Who")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    support_session = forms.CharField(required=False, max_length=40, widget=forms.HiddenInput)

    def __init__(self, *args, account, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["action"].choices = [("", "Any action")] + [(name, name) for name in sorted(ACTIONS)]
        members = [(m.user.public_id, m.user.full_name or m.user.email) for m in team_member_list(account)]
        self.fields["actor"].choices = [("", "Anyone")] + sorted(members, key=lambda item: item[1].lower())

    def clean(self) -> dict:
        cleaned = super().clean()
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and until < since:
            raise forms.ValidationError("The end date is before the start date.")
        return cleaned

    def event_filter(self) -> EventFilter:
        if not self.is_valid():
            return EventFilter()
        data = self.cleaned_data
        day = timezone.get_current_timezone()
        since = datetime.combine(data["since"], time.min, tzinfo=day) if data.get("since") else None
        until = datetime.combine(data["until"], time.min, tzinfo=day) + timedelta(days=1) if data.get("until") else None
        return EventFilter(
            action=data.get("action") or None,
            actor_id=data.get("actor") or None,
            since=since,
            until=until,
            support_session_id=data.get("support_session") or None,
        )


def _cursor(event: AuditEvent) -> str:
    return seal_position("audit", (event.occurred_at, event.pk))


def _after_cursor(events, cursor: str | None):
    """Keyset pagination: events strictly older than the cursor's (time, id). A bad cursor starts over."""
    opened = open_position("audit", cursor) if cursor else None
    return beyond(events, "occurred_at", opened[1] if opened else None)


@require_role(Role.ADMIN)
def audit_index(request: HttpRequest) -> HttpResponse:
    """Owners and admins read what happened in their account: who did what, when, from where."""
    form = AuditFilterForm(request.GET or None, account=request.account)
    events = account_events(request.account, form.event_filter())
    page = list(_after_cursor(events, request.GET.get("before"))[: PAGE_SIZE + 1])
    has_more = len(page) > PAGE_SIZE
    page = page[:PAGE_SIZE]
    people = people_named(page)
    rows = [
        {
            "event": event,
            "description": describe(event.action),
            "actor": people.get(event.actor_id, ""),
            "acting_as": people.get(event.acting_as_id, ""),
        }
        for event in page
    ]
    query = request.GET.copy()
    query.pop("before", None)
    if has_more:
        query["before"] = _cursor(page[-1])
    context = {
        "form": form,
        "rows": rows,
        "next_query": query.urlencode() if has_more else None,
        "filter_query": _filter_query(request),
        "is_later_page": bool(request.GET.get("before")),
    }
    return render(request, "audit/audit_index.html", context, status=400 if form.errors else 200)


def _filter_query(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("before", None)
    return query.urlencode()


@require_role(Role.ADMIN)
@require_http_methods(["GET", "POST"])
@require_recent_authentication
def audit_export(request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
    """GET asks to confirm; POST streams the filtered trail as CSV and is itself an audit event."""
    source = request.POST if request.method == "POST" else request.GET
    form = AuditFilterForm(source or None, account=request.account)
    if form.is_bound and not form.is_valid():
        return render(request, "audit/audit_export.html", {"form": form}, status=400)
    if request.method != "POST":
        return render(request, "audit/audit_export.html", {"form": form, "filter_query": _filter_query(request)})
    event_filter = form.event_filter()
    with transaction.atomic():
        record(
            "audit.exported",
            account=request.account,
            data={
                "action": event_filter.action,
                "actor": event_filter.actor_id,
                "since": event_filter.since.isoformat() if event_filter.since else None,
                "until": event_filter.until.isoformat() if event_filter.until else None,
                "support_session": event_filter.support_session_id,
            },
        )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response = StreamingHttpResponse(_csv_lines(request.account, event_filter), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{request.account.public_id}-{stamp}.csv"'
    response["Cache-Control"] = "no-store"
    return response


def _csv_lines(account, event_filter: EventFilter) -> Iterator[str]:
    """The CSV, a batch of events at a time: a trail of millions never sits in memory."""
    writer = csv.writer(Echo())
    yield writer.writerow(CSV_COLUMNS)
    events = account_events(account, event_filter)
    cursor = None
    while True:
        batch = list(_after_cursor(events, cursor)[:EXPORT_BATCH])
        if not batch:
            return
        people = people_named(batch)
        for event in batch:
            yield writer.writerow(
                safe_row(
                    [
                        event.occurred_at.isoformat(),
                        event.action,
                        describe(event.action),
                        event.actor_type,
                        event.actor_id,
                        people.get(event.actor_id, ""),
                        event.acting_as_id,
                        people.get(event.acting_as_id, ""),
                        event.support_session_id,
                        event.api_key_id,
                        event.target_type,
                        event.target_id,
                        event.ip or "",
                        event.request_id,
                        json.dumps(event.data, sort_keys=True),
                    ]
                )
            )
        cursor = _cursor(batch[-1])
