"""``manage.py security_report``: the audit trail's security signals over a period, as a Nagios plugin.

Failed logins and lockouts, new API keys, exports, support sessions and
unusual volumes per account, as text (a plugin summary line first) or one
JSON document. Exits 0 OK, 1 WARNING, 2 CRITICAL, and 3 UNKNOWN on a bad
argument or when the report itself fails, so a monitor or cron can run it as
is. Prints public ids and IP addresses only, never personal data.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.reports import (
    BASELINE_DAYS,
    OK,
    STATE_NAMES,
    UNKNOWN,
    SecurityReport,
    Thresholds,
    plural,
    security_report,
)

SERVICE = "SECURITY"
DEFAULT_HOURS = 24
MAX_HOURS = 366 * 24
# A summary line is read on a phone: the first findings, then how many more.
SUMMARY_FINDINGS = 5
_ACCOUNT_ID = re.compile(r"acc_[a-z2-7]{26}")


def _is_whole_number(value: str) -> bool:
    return value.isascii() and value.isdigit()


def since_option(value: str) -> datetime:
    """An argparse type: an ISO 8601 date and time in the past (naive means the server's time zone)."""
    try:
        parsed = parse_datetime(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 date and time, e.g. 2025-06-01T08:00:00Z")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed)
    now = timezone.now()
    if parsed >= now:
        raise argparse.ArgumentTypeError(f"{value!r} is not in the past")
    if now - parsed > timedelta(hours=MAX_HOURS):
        raise argparse.ArgumentTypeError(f"{value!r} is more than {MAX_HOURS // 24} days ago")
    return parsed


def hours_option(value: str) -> int:
    """An argparse type: a whole number of hours, 1 to a year's."""
    if not _is_whole_number(value) or not 1 <= int(value) <= MAX_HOURS:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number of hours from 1 to {MAX_HOURS}")
    return int(value)


def count_option(value: str) -> int:
    """An argparse type: a threshold count, 0 (the check is off) or more."""
    if not _is_whole_number(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number, 0 or more")
    return int(value)


def factor_option(value: str) -> float:
    """An argparse type: a finite factor, 0 (the check is off) or more."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be a finite number, 0 or more")
    return number


def account_option(value: str) -> str:
    if not _ACCOUNT_ID.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not an account's public id (acc_…)")
    return value


def summary_line(report: SecurityReport) -> str:
    """``SECURITY WARNING - <findings> | <perfdata>`` (Nagios plugin guidelines)."""
    if report.findings:
        messages = [finding.message for finding in report.findings[:SUMMARY_FINDINGS]]
        if len(report.findings) > SUMMARY_FINDINGS:
            messages.append(f"and {len(report.findings) - SUMMARY_FINDINGS} more")
        text = "; ".join(messages)
    else:
        text = f"no finding in {report.period.hours:g} h"
    return f"{SERVICE} {STATE_NAMES[report.status]} - {text} | {perfdata(report)}"


def _threshold(value: int) -> str:
    return str(value) if value else ""


def perfdata(report: SecurityReport) -> str:
    thresholds = report.thresholds
    measures = []
    if report.failed_logins is not None:
        warn, crit = _threshold(thresholds.warn_failed_logins), _threshold(thresholds.crit_failed_logins)
        measures.append(f"failed_logins={report.failed_logins.count};{warn};{crit};0")
    if report.lockouts is not None:
        warn, crit = _threshold(thresholds.warn_lockouts), _threshold(thresholds.crit_lockouts)
        measures.append(f"lockouts={report.lockouts.count};{warn};{crit};0")
    measures.append(f"break_glass={report.support.break_glass};;{_threshold(thresholds.crit_break_glass)};0")
    measures.append(f"support_sessions={report.support.started};;;0")
    measures.append(f"new_api_keys={sum(entry.count for entry in report.new_api_keys)};;;0")
    measures.append(f"exports={sum(entry.total for entry in report.exports)};;;0")
    measures.append(f"unusual_volume_accounts={len(report.unusual_volume)};;;0")
    return " ".join(measures)


def _time(moment: datetime) -> str:
    return timezone.localtime(moment).isoformat(timespec="seconds")


def report_lines(report: SecurityReport) -> list[str]:
    """The summary line, then each section."""
    period = report.period
    scope = ", ".join(report.accounts) if report.accounts else "all accounts"
    lines = [
        summary_line(report),
        f"Period: {_time(period.since)} to {_time(period.until)} ({period.hours:g} h), {scope}",
        "",
    ]
    if report.findings:
        lines.append("Findings:")
        lines += [f"  {STATE_NAMES[finding.level]} {finding.check}: {finding.message}" for finding in report.findings]
        lines.append("")

    failed = report.failed_logins
    if failed is None:
        lines.append("Failed logins: platform-wide, not in an account report")
    else:
        lines.append(
            f"Failed logins: {failed.count} ({plural(failed.users_targeted, 'user')} targeted, "
            f"{failed.unknown_users} for no known user)"
        )
        if failed.top_ips:
            lines.append("  top source addresses:")
            lines += [f"    {ip or 'unknown'}: {count}" for ip, count in failed.top_ips]
        if failed.top_users:
            lines.append("  top users targeted:")
            lines += [f"    {user}: {count}" for user, count in failed.top_users]

    lines.append("")
    lockouts = report.lockouts
    if lockouts is None:
        lines.append("Lockouts started: platform-wide, not in an account report")
    else:
        split = ", ".join(f"{kind} {count}" for kind, count in lockouts.by_locked_by.items())
        lines.append(f"Lockouts started: {lockouts.count}" + (f" (by {split})" if split else ""))

    lines.append("")
    total_keys = sum(entry.count for entry in report.new_api_keys)
    lines.append(f"New API keys: {total_keys} in {plural(len(report.new_api_keys), 'account')}")
    for entry in report.new_api_keys:
        lines.append(f"  {entry.account_id}: {entry.count}")
        for key in entry.keys:
            lines.append(f"    {key.key_id} by {key.created_by or 'the system'} at {_time(key.occurred_at)}")
        if entry.count > len(entry.keys):
            lines.append(f"    and {entry.count - len(entry.keys)} more")

    lines.append("")
    total_exports = sum(entry.total for entry in report.exports)
    lines.append(f"Exports: {total_exports} in {plural(len(report.exports), 'account')}")
    lines += [
        f"  {entry.account_id}: {entry.total} (audit trail {entry.audit}, contacts {entry.contacts})"
        for entry in report.exports
    ]

    lines.append("")
    support = report.support
    lines.append(
        f"Support sessions: {support.started} started, {support.break_glass} break-glass, "
        f"{support.refused} refused, {plural(support.writes_refused, 'write')} refused"
    )
    for entry in support.activity:
        times = f" x{entry.count}, last at {_time(entry.last_at)}" if entry.count > 1 else f" at {_time(entry.last_at)}"
        lines.append(
            f"  {entry.action} in {entry.account_id or 'no account'} by {entry.staff_id or 'unknown staff'}"
            f" as {entry.acting_as_id or 'nobody'} (session {entry.session_id or 'none'}){times}"
        )

    lines.append("")
    lines.append(f"Unusual volume: {plural(len(report.unusual_volume), 'account')}")
    for volume in report.unusual_volume:
        factor = "new" if volume.factor is None else f"{volume.factor:.1f}x"
        lines.append(
            f"  {volume.account_id}: {volume.count} events, usual {volume.baseline:.1f} "
            f"(daily average of the previous {BASELINE_DAYS} days for {report.period.hours:g} h), {factor}"
        )
    return lines


class Command(BaseCommand):
    help = (
        "Report failed logins and lockouts, new API keys, exports, support sessions and unusual volumes per "
        "account over a period, from the audit trail. Exits 0 OK, 1 WARNING, 2 CRITICAL (a threshold is "
        "crossed), 3 UNKNOWN (a bad argument, or the report failed). A threshold of 0 turns its check off."
    )
    # Django's system checks are not security signals: a failing one must not turn into a plugin state.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def exit_unknown(message: str) -> NoReturn:
            # argparse exits 2 on a bad option, which a monitor reads as CRITICAL; the plugin
            # guidelines want UNKNOWN. call_command gets the same exit, not a CommandError.
            parser.print_usage(sys.stderr)
            sys.stderr.write(f"{parser.prog}: error: {message}\n")
            raise SystemExit(UNKNOWN)

        parser.error = exit_unknown  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = Thresholds()
        parser.add_argument(
            "--since",
            type=since_option,
            metavar="DATETIME",
            help="start of the period, ISO 8601, at most a year ago (default: the last --hours)",
        )
        parser.add_argument(
            "--hours",
            type=hours_option,
            metavar="N",
            help=f"the period: this many hours up to now (default {DEFAULT_HOURS})",
        )
        parser.add_argument(
            "--account",
            action="append",
            type=account_option,
            default=[],
            dest="accounts",
            metavar="ACCOUNT",
            help="limit to an account's public id (repeatable); leaves out the platform-wide login sections",
        )
        parser.add_argument("--json", action="store_true", dest="as_json", help="print one JSON document")
        threshold_options: list[tuple[str, Callable[[str], Any], str]] = [
            ("warn_failed_logins", count_option, "WARNING at this many failed logins, platform-wide"),
            ("crit_failed_logins", count_option, "CRITICAL at this many failed logins, platform-wide"),
            ("warn_lockouts", count_option, "WARNING at this many lockouts started"),
            ("crit_lockouts", count_option, "CRITICAL at this many lockouts started"),
            ("crit_break_glass", count_option, "CRITICAL at this many break-glass support sessions"),
            ("warn_exports", count_option, "WARNING at this many exports by one account"),
            ("warn_new_api_keys", count_option, "WARNING at this many new API keys in one account"),
            (
                "warn_volume_factor",
                factor_option,
                f"WARNING when an account's events exceed this many times its daily average of the previous "
                f"{BASELINE_DAYS} days (scaled to the period)",
            ),
            ("volume_min_events", count_option, "…and number at least this many in the period"),
        ]
        for name, option_type, text in threshold_options:
            default = getattr(defaults, name)
            parser.add_argument(
                f"--{name.replace('_', '-')}",
                type=option_type,
                default=default,
                dest=name,
                metavar="FACTOR" if option_type is factor_option else "N",
                help=f"{text} (default {default:g})",
            )

    def handle(self, *args: Any, **options: Any) -> None:
        thresholds = Thresholds(**{name: options[name] for name in Thresholds.__dataclass_fields__})
        problems = thresholds.problems()
        if options["since"] is not None and options["hours"] is not None:
            problems.append("give --since or --hours, not both")
        if problems:
            self.stderr.write(f"security_report: error: {'; '.join(problems)}")
            sys.exit(UNKNOWN)
        as_json = options["as_json"]
        try:
            until = timezone.now()
            since = options["since"] or until - timedelta(hours=options["hours"] or DEFAULT_HOURS)
            report = security_report(
                since=since, until=until, accounts=tuple(options["accounts"]), thresholds=thresholds
            )
            output = json.dumps(report.as_dict(), indent=2) if as_json else "\n".join(report_lines(report))
            state = report.status
        except Exception as error:  # noqa: BLE001 - a failed report is UNKNOWN, not a traceback and exit 1
            state = UNKNOWN
            crash = type(error).__name__
            if as_json:
                output = json.dumps({"status": STATE_NAMES[UNKNOWN], "exit_code": UNKNOWN, "error": crash})
            else:
                output = f"{SERVICE} UNKNOWN - the report failed ({crash})"
        self.stdout.write(output)
        if state != OK:
            # SystemExit passes through BaseCommand.run_from_argv, so the status reaches the shell.
            sys.exit(state)
