"""The security report: what an operator watches in the audit trail over a period.

Read from ``AuditEvent`` only (the trail is the source of truth) and
aggregated in the database: each section is one or two ``GROUP BY`` queries
whatever the number of events, and every list is capped, so a report over
millions of events costs a fixed number of queries. It names people, keys,
sessions and accounts by public id and sources by IP address, never by
anything personal.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import (
    Case,
    CharField,
    Count,
    ExpressionWrapper,
    F,
    FloatField,
    Max,
    Min,
    Q,
    QuerySet,
    Value,
    When,
    Window,
)
from django.db.models.fields.json import KT
from django.db.models.functions import RowNumber

from audit.models import AuditEvent

# Nagios plugin states, also the command's exit status.
OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}

BASELINE_DAYS = 30
TOP_LISTED = 10
KEYS_LISTED_PER_ACCOUNT = 20
SUPPORT_LISTED = 100

LOGIN_FAILED = "auth.login_failed"
LOGIN_LOCKOUT = "auth.lockout_started"
TWO_FACTOR_LOCKOUT = "auth.two_factor_lockout_started"
API_KEY_CREATED = "api_key.created"
AUDIT_EXPORTED = "audit.exported"
CONTACT_EXPORTED = "contact.exported"
SESSION_STARTED = "support.session_started"
BREAK_GLASS = "support.break_glass"
SESSION_REFUSED = "support.session_refused"
WRITE_REFUSED = "support.write_refused"
SUPPORT_ACTIONS = (SESSION_STARTED, BREAK_GLASS, SESSION_REFUSED, WRITE_REFUSED)

# The user a login event is about: record(actor=user) names them as the actor
# (nobody is signed in yet); a ("user", id) target is read too.
_USER_CONCERNED = Case(
    When(~Q(actor_id=""), then=F("actor_id")),
    When(target_type="user", then=F("target_id")),
    default=Value(""),
    output_field=CharField(),
)


@dataclass(frozen=True)
class Thresholds:
    """When a check raises a finding: a count at or above the threshold. 0 turns a check off."""

    warn_failed_logins: int = 100
    crit_failed_logins: int = 1000
    warn_lockouts: int = 10
    crit_lockouts: int = 50
    crit_break_glass: int = 1
    warn_exports: int = 5
    warn_new_api_keys: int = 3
    # An account's events in the period above this many times its usual volume for a period as long…
    warn_volume_factor: float = 5.0
    # …and at least this many events: a quiet account going from 1 to 8 is not news.
    volume_min_events: int = 50

    def problems(self) -> list[str]:
        """Contradictory settings: a warning threshold above its critical one."""
        found = []
        for name in ("failed_logins", "lockouts"):
            warn, crit = getattr(self, f"warn_{name}"), getattr(self, f"crit_{name}")
            if warn and crit and warn > crit:
                option = name.replace("_", "-")
                found.append(f"--warn-{option} ({warn}) is above --crit-{option} ({crit})")
        return found


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime

    @property
    def hours(self) -> float:
        return (self.until - self.since).total_seconds() / 3600

    @property
    def baseline_since(self) -> datetime:
        return self.since - timedelta(days=BASELINE_DAYS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "hours": round(self.hours, 2),
            "baseline_since": self.baseline_since.isoformat(),
        }


@dataclass(frozen=True)
class Finding:
    level: int
    check: str
    message: str
    account_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": STATE_NAMES[self.level],
            "check": self.check,
            "message": self.message,
            "account": self.account_id or None,
        }


@dataclass(frozen=True)
class FailedLogins:
    count: int
    users_targeted: int
    # Attempts for an address that is no user's (nobody to name).
    unknown_users: int
    top_ips: tuple[tuple[str | None, int], ...]
    top_users: tuple[tuple[str, int], ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "users_targeted": self.users_targeted,
            "unknown_users": self.unknown_users,
            "top_ips": [{"ip": ip, "count": count} for ip, count in self.top_ips],
            "top_users": [{"user": user, "count": count} for user, count in self.top_users],
        }


@dataclass(frozen=True)
class Lockouts:
    count: int
    # "username" and "ip" (from the event's data), "two_factor" for two-factor code lockouts.
    by_locked_by: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "by_locked_by": dict(self.by_locked_by)}


@dataclass(frozen=True)
class NewApiKey:
    key_id: str
    # A user's public id, or an API key's when a key made it; "" when the system did.
    created_by: str
    occurred_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key_id, "created_by": self.created_by or None, "at": self.occurred_at.isoformat()}


@dataclass(frozen=True)
class AccountApiKeys:
    account_id: str
    count: int
    # The newest, at most KEYS_LISTED_PER_ACCOUNT.
    keys: tuple[NewApiKey, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account_id, "count": self.count, "keys": [key.as_dict() for key in self.keys]}


@dataclass(frozen=True)
class AccountExports:
    account_id: str
    audit: int
    contacts: int

    @property
    def total(self) -> int:
        return self.audit + self.contacts

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account_id, "count": self.total, "audit": self.audit, "contacts": self.contacts}


@dataclass(frozen=True)
class SupportActivity:
    """Events of one kind by one staff member in one session (a session's refused writes are one row)."""

    action: str
    account_id: str
    staff_id: str
    acting_as_id: str
    session_id: str
    count: int
    first_at: datetime
    last_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "account": self.account_id or None,
            "staff": self.staff_id or None,
            "acting_as": self.acting_as_id or None,
            "session": self.session_id or None,
            "count": self.count,
            "first_at": self.first_at.isoformat(),
            "last_at": self.last_at.isoformat(),
        }


@dataclass(frozen=True)
class Support:
    started: int
    break_glass: int
    refused: int
    writes_refused: int
    # The most recent, at most SUPPORT_LISTED.
    activity: tuple[SupportActivity, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "break_glass": self.break_glass,
            "refused": self.refused,
            "writes_refused": self.writes_refused,
            "activity": [entry.as_dict() for entry in self.activity],
        }


@dataclass(frozen=True)
class AccountVolume:
    account_id: str
    count: int
    # The account's daily average over the BASELINE_DAYS before the period, scaled to the period's length.
    baseline: float
    # count / baseline; None for an account with no event in the baseline days.
    factor: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "account": self.account_id,
            "count": self.count,
            "baseline": round(self.baseline, 2),
            "factor": None if self.factor is None else round(self.factor, 2),
        }


@dataclass(frozen=True)
class SecurityReport:
    period: Period
    # The accounts the report is limited to; empty for the whole platform.
    accounts: tuple[str, ...]
    thresholds: Thresholds
    # None in an account report: they are platform events, no account's.
    failed_logins: FailedLogins | None
    lockouts: Lockouts | None
    new_api_keys: tuple[AccountApiKeys, ...]
    exports: tuple[AccountExports, ...]
    support: Support
    unusual_volume: tuple[AccountVolume, ...]
    findings: tuple[Finding, ...] = field(default=())

    @property
    def status(self) -> int:
        return max((finding.level for finding in self.findings), default=OK)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": STATE_NAMES[self.status],
            "exit_code": self.status,
            "period": self.period.as_dict(),
            "accounts": list(self.accounts) or None,
            "thresholds": {name: getattr(self.thresholds, name) for name in Thresholds.__dataclass_fields__},
            "findings": [finding.as_dict() for finding in self.findings],
            "failed_logins": self.failed_logins.as_dict() if self.failed_logins else None,
            "lockouts": self.lockouts.as_dict() if self.lockouts else None,
            "new_api_keys": [entry.as_dict() for entry in self.new_api_keys],
            "exports": [entry.as_dict() for entry in self.exports],
            "support": self.support.as_dict(),
            "unusual_volume": [entry.as_dict() for entry in self.unusual_volume],
        }


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def _events(period: Period, accounts: tuple[str, ...]) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.filter(occurred_at__gte=period.since, occurred_at__lt=period.until)
    if accounts:
        events = events.filter(account_id__in=accounts)
    return events


def _failed_logins(events: QuerySet[AuditEvent]) -> FailedLogins:
    failed = events.filter(action=LOGIN_FAILED).annotate(user=_USER_CONCERNED)
    totals = failed.aggregate(
        count=Count("id"),
        users=Count("user", distinct=True, filter=~Q(user="")),
        unknown=Count("id", filter=Q(user="")),
    )
    top_ips = failed.values("ip").annotate(n=Count("id")).order_by("-n", "ip")[:TOP_LISTED]
    top_users = failed.exclude(user="").values("user").annotate(n=Count("id")).order_by("-n", "user")[:TOP_LISTED]
    return FailedLogins(
        count=totals["count"],
        users_targeted=totals["users"],
        unknown_users=totals["unknown"],
        top_ips=tuple((row["ip"], row["n"]) for row in top_ips),
        top_users=tuple((row["user"], row["n"]) for row in top_users),
    )


def _lockouts(events: QuerySet[AuditEvent]) -> Lockouts:
    rows = (
        events.filter(action__in=(LOGIN_LOCKOUT, TWO_FACTOR_LOCKOUT))
        .values("action", locked_by=KT("data__locked_by"))
        .annotate(n=Count("id"))
        .order_by()
    )
    split: dict[str, int] = defaultdict(int)
    for row in rows:
        kind = "two_factor" if row["action"] == TWO_FACTOR_LOCKOUT else (row["locked_by"] or "unknown")
        split[kind] += row["n"]
    return Lockouts(count=sum(split.values()), by_locked_by=dict(sorted(split.items())))


def _new_api_keys(events: QuerySet[AuditEvent]) -> tuple[AccountApiKeys, ...]:
    created = events.filter(action=API_KEY_CREATED)
    counts = created.values("account_id").annotate(n=Count("id")).order_by("-n", "account_id")
    newest = (
        created.annotate(
            rank=Window(RowNumber(), partition_by=[F("account_id")], order_by=[F("occurred_at").desc(), F("id").desc()])
        )
        .filter(rank__lte=KEYS_LISTED_PER_ACCOUNT)
        .order_by("account_id", "-occurred_at", "-id")
        .values_list("account_id", "target_id", "actor_id", "api_key_id", "occurred_at")
    )
    keys: dict[str, list[NewApiKey]] = defaultdict(list)
    for account_id, key_id, actor_id, api_key_id, occurred_at in newest:
        keys[account_id].append(NewApiKey(key_id=key_id, created_by=actor_id or api_key_id, occurred_at=occurred_at))
    return tuple(
        AccountApiKeys(account_id=row["account_id"], count=row["n"], keys=tuple(keys[row["account_id"]]))
        for row in counts
    )


def _exports(events: QuerySet[AuditEvent]) -> tuple[AccountExports, ...]:
    rows = (
        events.filter(action__in=(AUDIT_EXPORTED, CONTACT_EXPORTED))
        .values("account_id")
        .annotate(
            audit=Count("id", filter=Q(action=AUDIT_EXPORTED)),
            contacts=Count("id", filter=Q(action=CONTACT_EXPORTED)),
            total=Count("id"),
        )
        .order_by("-total", "account_id")
    )
    return tuple(
        AccountExports(account_id=row["account_id"], audit=row["audit"], contacts=row["contacts"]) for row in rows
    )


def _support(events: QuerySet[AuditEvent]) -> Support:
    support = events.filter(action__in=SUPPORT_ACTIONS)
    totals = dict(support.values_list("action").annotate(n=Count("id")).order_by())
    activity = (
        support.values("action", "account_id", "actor_id", "acting_as_id", "support_session_id")
        .annotate(n=Count("id"), first_at=Min("occurred_at"), last_at=Max("occurred_at"))
        .order_by("-last_at", "action", "support_session_id")[:SUPPORT_LISTED]
    )
    return Support(
        started=totals.get(SESSION_STARTED, 0),
        break_glass=totals.get(BREAK_GLASS, 0),
        refused=totals.get(SESSION_REFUSED, 0),
        writes_refused=totals.get(WRITE_REFUSED, 0),
        activity=tuple(
            SupportActivity(
                action=row["action"],
                account_id=row["account_id"],
                staff_id=row["actor_id"],
                acting_as_id=row["acting_as_id"],
                session_id=row["support_session_id"],
                count=row["n"],
                first_at=row["first_at"],
                last_at=row["last_at"],
            )
            for row in activity
        ),
    )


def _unusual_volume(period: Period, accounts: tuple[str, ...], thresholds: Thresholds) -> tuple[AccountVolume, ...]:
    """Accounts whose events in the period exceed factor × their usual volume, decided in the database."""
    factor = thresholds.warn_volume_factor
    if not factor:
        return ()
    # The baseline days' count, scaled to the period: a 6-hour period expects a quarter of a daily average.
    scale = period.hours / 24 / BASELINE_DAYS
    events = AuditEvent.objects.filter(occurred_at__gte=period.baseline_since, occurred_at__lt=period.until).exclude(
        account_id=""
    )
    if accounts:
        events = events.filter(account_id__in=accounts)
    # Counting account_id (never null), not id, lets an (occurred_at, account_id) index answer alone.
    rows = (
        events.values("account_id")
        .annotate(
            current=Count("account_id", filter=Q(occurred_at__gte=period.since)),
            previous=Count("account_id", filter=Q(occurred_at__lt=period.since)),
        )
        .filter(
            current__gte=max(thresholds.volume_min_events, 1),
            current__gt=ExpressionWrapper(F("previous") * Value(factor * scale), output_field=FloatField()),
        )
        .order_by("-current", "account_id")
    )
    volumes = []
    for row in rows:
        baseline = row["previous"] * scale
        volumes.append(
            AccountVolume(
                account_id=row["account_id"],
                count=row["current"],
                baseline=baseline,
                factor=row["current"] / baseline if baseline else None,
            )
        )
    return tuple(volumes)


def _at_or_above(count: int, threshold: int) -> bool:
    return bool(threshold) and count >= threshold


def _findings(
    *,
    thresholds: Thresholds,
    failed_logins: FailedLogins | None,
    lockouts: Lockouts | None,
    new_api_keys: tuple[AccountApiKeys, ...],
    exports: tuple[AccountExports, ...],
    support: Support,
    unusual_volume: tuple[AccountVolume, ...],
) -> tuple[Finding, ...]:
    found: list[Finding] = []
    for check, nouns, measured, warn, crit in (
        (
            "failed_logins",
            ("failed login", "failed logins"),
            failed_logins,
            thresholds.warn_failed_logins,
            thresholds.crit_failed_logins,
        ),
        (
            "lockouts",
            ("lockout started", "lockouts started"),
            lockouts,
            thresholds.warn_lockouts,
            thresholds.crit_lockouts,
        ),
    ):
        if measured is None:
            continue
        counted = plural(measured.count, *nouns)
        if _at_or_above(measured.count, crit):
            found.append(Finding(CRITICAL, check, f"{counted} (critical at {crit})"))
        elif _at_or_above(measured.count, warn):
            found.append(Finding(WARNING, check, f"{counted} (warning at {warn})"))
    if _at_or_above(support.break_glass, thresholds.crit_break_glass):
        where = sorted({entry.account_id for entry in support.activity if entry.action == BREAK_GLASS} - {""})
        message = (
            f"{plural(support.break_glass, 'break-glass support session')} (critical at {thresholds.crit_break_glass})"
        )
        account_id = where[0] if len(where) == 1 else ""
        found.append(Finding(CRITICAL, "break_glass", message + (f": {', '.join(where)}" if where else ""), account_id))
    for keys in new_api_keys:
        if _at_or_above(keys.count, thresholds.warn_new_api_keys):
            message = (
                f"{keys.account_id}: {plural(keys.count, 'new API key')} (warning at {thresholds.warn_new_api_keys})"
            )
            found.append(Finding(WARNING, "new_api_keys", message, keys.account_id))
    for exported in exports:
        if _at_or_above(exported.total, thresholds.warn_exports):
            message = (
                f"{exported.account_id}: {plural(exported.total, 'export')} (warning at {thresholds.warn_exports})"
            )
            found.append(Finding(WARNING, "exports", message, exported.account_id))
    for volume in unusual_volume:
        if volume.factor is None:
            detail = f"none in the previous {BASELINE_DAYS} days"
        else:
            usual = f"{volume.factor:.1f}x its usual {volume.baseline:.1f}"
            detail = f"{usual} (warning above {thresholds.warn_volume_factor:g}x)"
        message = f"{volume.account_id}: {plural(volume.count, 'event')}, {detail}"
        found.append(Finding(WARNING, "volume", message, volume.account_id))
    # Worst first, so a summary line that is cut short keeps what matters.
    return tuple(sorted(found, key=lambda finding: -finding.level))


def security_report(
    *, since: datetime, until: datetime, accounts: tuple[str, ...] = (), thresholds: Thresholds | None = None
) -> SecurityReport:
    """What happened between ``since`` and ``until`` (all accounts, or those named), and what crosses a threshold.

    An account report leaves out failed logins and lockouts: they are platform events, no account's.
    """
    if since >= until:
        raise ValueError("The period must start before it ends.")
    thresholds = thresholds or Thresholds()
    period = Period(since=since, until=until)
    accounts = tuple(dict.fromkeys(accounts))
    events = _events(period, accounts)
    sections: dict[str, Any] = {
        "failed_logins": None if accounts else _failed_logins(events),
        "lockouts": None if accounts else _lockouts(events),
        "new_api_keys": _new_api_keys(events),
        "exports": _exports(events),
        "support": _support(events),
        "unusual_volume": _unusual_volume(period, accounts, thresholds),
    }
    return SecurityReport(
        period=period,
        accounts=accounts,
        thresholds=thresholds,
        findings=_findings(thresholds=thresholds, **sections),
        **sections,
    )
