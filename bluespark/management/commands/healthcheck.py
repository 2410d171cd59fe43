"""``manage.py healthcheck``: the readiness checks as a Nagios/Icinga plugin.

Prints one plugin line with performance data and exits with the plugin status
(0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN), so Nagios, Icinga, Zabbix agents or
a container HEALTHCHECK can run it as is.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, NoReturn

from django.core.management.base import BaseCommand, CommandParser

from bluespark.health import CheckResult, run_checks

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
STATE_NAMES = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
SERVICE = "BLUESPARK"


def milliseconds_option(value: str) -> float:
    """An argparse type: a finite, non-negative number of milliseconds."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of milliseconds") from None
    if not math.isfinite(number) or number < 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be a finite number of milliseconds, 0 or more")
    return number


def check_state(result: CheckResult, *, warning_ms: float, critical_ms: float) -> int:
    if not result.ok or result.milliseconds > critical_ms:
        return CRITICAL
    if result.milliseconds > warning_ms:
        return WARNING
    return OK


def format_number(value: float) -> str:
    """Plain decimal notation (perfdata parsers do not read ``1e-05``), at most two decimals."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def plugin_line(results: list[CheckResult], *, state: int, warning_ms: float, critical_ms: float) -> str:
    """``BLUESPARK OK - database 1.2 ms, … | database=1.2ms;500;2000;0 …`` (Nagios plugin guidelines)."""
    summaries = []
    perfdata = []
    warn, crit = format_number(warning_ms), format_number(critical_ms)
    for result in results:
        if not result.ok:
            # The error class only: exception texts can carry connection URLs with passwords.
            summaries.append(f"{result.name} failed ({result.error})")
            # "U": the guidelines' value for a measurement that could not be taken.
            perfdata.append(f"{result.name}=U;{warn};{crit};0")
            continue
        summary = f"{result.name} {format_number(result.milliseconds)} ms"
        result_state = check_state(result, warning_ms=warning_ms, critical_ms=critical_ms)
        if result_state != OK:
            summary += f" (over {crit if result_state == CRITICAL else warn} ms)"
        summaries.append(summary)
        perfdata.append(f"{result.name}={format_number(result.milliseconds)}ms;{warn};{crit};0")
    return f"{SERVICE} {STATE_NAMES[state]} - {', '.join(summaries)} | {' '.join(perfdata)}"


def report_data(results: list[CheckResult], *, state: int, warning_ms: float, critical_ms: float) -> dict[str, Any]:
    checks: dict[str, dict[str, Any]] = {}
    for result in results:
        entry: dict[str, Any] = {
            "status": STATE_NAMES[check_state(result, warning_ms=warning_ms, critical_ms=critical_ms)],
            "ok": result.ok,
            "ms": result.milliseconds if result.ok else None,
        }
        if result.error:
            entry["error"] = result.error
        checks[result.name] = entry
    return {
        "status": STATE_NAMES[state],
        "exit_code": state,
        "warning_ms": warning_ms,
        "critical_ms": critical_ms,
        "checks": checks,
    }


class Command(BaseCommand):
    help = (
        "Check the database, the Celery broker and the cache; print one Nagios plugin line "
        "and exit 0 (OK), 1 (WARNING), 2 (CRITICAL) or 3 (UNKNOWN)."
    )
    # Django's system checks are not readiness: a failing one must not turn into a plugin state.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        default_exit = parser.exit

        def exit_unknown_on_error(status: int = 0, message: str | None = None) -> NoReturn:
            # argparse exits 2 on a bad option, which a monitor reads as CRITICAL;
            # the plugin guidelines want UNKNOWN for a usage error.
            default_exit(UNKNOWN if status else 0, message)

        parser.exit = exit_unknown_on_error  # type: ignore[method-assign]
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--warning",
            type=milliseconds_option,
            default=500.0,
            help="WARNING when a check takes longer than this many milliseconds (default 500).",
        )
        parser.add_argument(
            "--critical",
            type=milliseconds_option,
            default=2000.0,
            help="CRITICAL when a check fails or takes longer than this many milliseconds (default 2000).",
        )
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the same data as JSON.")

    def handle(self, *args: Any, warning: float, critical: float, as_json: bool, **options: Any) -> None:
        try:
            results = run_checks()
            state = max(check_state(result, warning_ms=warning, critical_ms=critical) for result in results)
            if as_json:
                output = json.dumps(report_data(results, state=state, warning_ms=warning, critical_ms=critical))
            else:
                output = plugin_line(results, state=state, warning_ms=warning, critical_ms=critical)
        except Exception as error:  # noqa: BLE001 - a crashed check is UNKNOWN, not a traceback and exit 1
            state = UNKNOWN
            crash = type(error).__name__
            if as_json:
                output = json.dumps({"status": STATE_NAMES[UNKNOWN], "exit_code": UNKNOWN, "error": crash})
            else:
                output = f"{SERVICE} UNKNOWN - the health check crashed ({crash})"
        self.stdout.write(output)
        if state != OK:
            # SystemExit passes through BaseCommand.run_from_argv (which still closes the
            # database connections), so the code reaches the shell.
            sys.exit(state)
