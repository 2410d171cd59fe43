"""Readiness checks shared by /readyz and ``manage.py healthcheck``."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.db import connections
from kombu import Connection


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    milliseconds: float
    error: str = ""


def _database() -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _broker() -> None:
    with Connection(settings.CELERY_BROKER_URL, connect_timeout=2) as connection:
        # One attempt: kombu sleeps two seconds before each retry, which would hold a
        # refused connection past a probe's timeout; the orchestrator does the retrying.
        connection.ensure_connection(max_retries=0)


def _cache() -> None:
    # A key of its own per probe: every web process shares the cache, and two
    # probes writing one key would read each other's token and fail.
    token = secrets.token_hex(8)
    key = f"healthcheck:probe:{token}"
    cache.set(key, token, timeout=10)
    answer = cache.get(key)
    cache.delete(key)
    if answer != token:
        raise RuntimeError("the cache returned another value than it was given")


CHECKS: dict[str, Callable[[], None]] = {"database": _database, "broker": _broker, "cache": _cache}


def run_checks() -> list[CheckResult]:
    """Run every check; an exception becomes a failed result naming its type, never its text.

    Exception texts can hold connection strings with passwords, so only the
    class name leaves this function.
    """
    results = []
    for name, check in CHECKS.items():
        started = time.perf_counter()
        try:
            check()
        except Exception as error:  # noqa: BLE001 - any failure makes the check fail
            results.append(CheckResult(name, False, _elapsed(started), type(error).__name__))
        else:
            results.append(CheckResult(name, True, _elapsed(started)))
    return results


def _elapsed(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
