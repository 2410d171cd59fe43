"""The contacts list and segment counts as a marketer and an integrator ask for them, at 1,000,000 contacts.

What it compares, in one process, in interleaved rounds, request by request:

- **ours**: each request against the account of 1,000,000 contacts, end to
  end through Django's test client (every middleware, the session, the
  role check, the account scope, the query, decryption and the check of
  every row against its blind index, the template): the contacts list's
  first and second pages, filtered by status, list, tag and segment, an
  exact-address search; the segments page, a segment's page, the builder's
  count of a definition and ``GET /api/v1/segments/{id}/count/`` with an API
  key;
- **peer**: the same request against an account of 1,000 contacts built the
  same way, in the same database: what the request costs when the account
  is small. The ratio of the p95s says how much the size of the account
  costs (1.0: nothing).

The goal (the issue's) is a p95 under 150 ms for the contacts list page and
the segment count at 1,000,000 contacts. Segment counts of accounts above
``BLUESPARK_SEGMENT_LIVE_COUNT_LIMIT`` are made in the background
(docs/contacts.md, "Counts on large accounts"): before timing, the benchmark
runs that background count once for each saved segment and for the
builder's definition, as the worker would, and prints how long it took
beside a bare ``count(*)`` of the account (``bench_segments.py`` measures
those counts in detail).

The accounts live in ``bench_segments.py``'s throwaway database (built on
first run, about 3 minutes for 1,000,000 contacts, reused afterwards), with
contacts sealed for real. Redis is ``BENCH_REDIS_URL`` (default
``redis://127.0.0.1:6379/11``, flushed first): the pages use the cache.
Exit status 0 whatever the figures, unless ``--strict``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_segments  # noqa: E402  (the same database and account builder)

GOAL_P95_MS = 150.0
DEFAULT_CONTACTS = 1_000_000
PEER_CONTACTS = 1_000
DEFAULT_RUNS = 30
USER_EMAIL = "marketer@bench.example"


def prepare(account: Any) -> dict[str, Any]:
    """A member who may edit, an API key, one saved segment, and the figures the background counts leave."""
    from accounts.models import ApiScope, Membership, Role, User
    from accounts.services import create_api_key
    from accounts.tenancy import account_scope
    from contacts import segments, services
    from contacts.models import Contact, MailingList, Segment

    user = User.objects.with_email(USER_EMAIL).first() or User.objects.create_user(USER_EMAIL, "bench-password-1")
    Membership.objects.get_or_create(account=account, user=user, defaults={"role": Role.OWNER})
    key = create_api_key(account, name="bench", scopes=[ApiScope.CONTACTS_READ], created_by=user)
    with account_scope(account):
        shapes = bench_segments.definitions(account)
        name = "newsletter + tag vip"
        segment = Segment.objects.filter(name=name).first()
        definition = segments.validate(account, shapes[name])
        if segment is None:
            segment = services.save_segment(account, None, name=name, definition=definition)
        started = time.perf_counter()
        segments.refresh_count(account, segment)
        background = (time.perf_counter() - started) * 1000
        draft = shapes["subscribed to the newsletter"]
        segments.count_definition_now(account, segments.validate(account, draft))
        started = time.perf_counter()
        total = Contact.objects.count()
        bare = (time.perf_counter() - started) * 1000
        events = MailingList.objects.get(name="Events").public_id
        address = "person500@" + _domain_of_contact_500(account)
    return {
        "user": user,
        "token": key.token,
        "segment": segment,
        "draft": draft,
        "events_list": events,
        "address": address,
        "contacts": total,
        "background_count_ms": round(background, 1),
        "bare_count_ms": round(bare, 1),
    }


def _domain_of_contact_500(account: Any) -> str:
    """The domain the generator gave person500 (it is drawn at random): read back through the product."""
    from contacts.models import Contact

    contact = Contact.objects.get(public_id=f"con_{account.pk:08x}{500:018x}")
    return contact.email.split("@", 1)[1]


def requests_of(account: Any, prepared: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """name -> (method, path, parameters): the same requests for either account."""
    from django.urls import reverse

    def page(name: str, **kwargs: str) -> str:
        return reverse(f"contacts:{name}", kwargs={"account_id": account.public_id, **kwargs})

    segment = prepared["segment"].public_id
    draft_rows: dict[str, Any] = {"match": "all", "field": [], "op": [], "value": [], "value_index": []}
    for condition in prepared["draft"]["all"]:
        draft_rows["field"].append(condition["field"])
        draft_rows["op"].append(condition["op"])
        draft_rows["value"].append(condition["value"])
        draft_rows["value_index"].append("")
    return {
        "contacts list, first page": ("get", page("contact_index"), {}),
        "contacts list, second page": ("get", page("contact_index"), {"after": "__second__"}),
        "contacts list, status unsubscribed": ("get", page("contact_index"), {"status": "unsubscribed"}),
        "contacts list, list Events (5%)": ("get", page("contact_index"), {"list": prepared["events_list"]}),
        "contacts list, tag vip": ("get", page("contact_index"), {"tag": "vip"}),
        "contacts list, segment": ("get", page("contact_index"), {"segment": segment}),
        "contacts list, exact address": ("get", page("contact_index"), {"email": prepared["address"]}),
        "segments page": ("get", page("segment_index"), {}),
        "segment page (its count)": ("get", page("segment_detail", segment_id=segment), {}),
        "builder count": ("post", page("segment_count"), draft_rows),
        "API segment count": ("get", reverse("api-segment-count", args=[segment]), {"api": True}),
    }


def client_for(prepared: dict[str, Any]) -> Any:
    from django.test import Client

    client = Client()
    client.force_login(prepared["user"])
    return client


def second_page_cursor(client: Any, path: str) -> str:
    import re

    html = client.get(path).content.decode()
    found = re.search(r'href="[^"?]*\?[^"]*after=([^"&]+)"[^>]*rel="next"', html)
    if found is None:
        raise SystemExit("the first page has no link to the next: is the account empty?")
    from urllib.parse import unquote

    return unquote(found.group(1))


def run_request(client: Any, prepared: dict[str, Any], method: str, path: str, params: dict[str, Any]) -> Any:
    params = dict(params)
    extra = {}
    if params.pop("api", False):
        extra["HTTP_AUTHORIZATION"] = f"Bearer {prepared['token']}"
    if method == "post":
        return client.post(path, params, HTTP_HX_REQUEST="true", **extra)
    return client.get(path, params, **extra)


def check(name: str, response: Any) -> None:
    body = response.content.decode()
    if response.status_code != 200:
        raise SystemExit(f"{name}: HTTP {response.status_code}")
    if "Counting" in body or '"refreshing":true' in body:
        raise SystemExit(f"{name}: the background count is missing (the figure must be cached before timing)")
    if name.startswith("contacts list") and "person" not in body:
        raise SystemExit(f"{name}: no contact shown")


def measure(large: Any, small: Any, runs: int) -> dict[str, Any]:
    from accounts.tenancy import account_scope

    sides = {}
    for label, account in (("large", large), ("small", small)):
        prepared = prepare(account)
        client = client_for(prepared)
        requests = requests_of(account, prepared)
        first_path = requests["contacts list, first page"][1]
        with account_scope(account):
            cursor = second_page_cursor(client, first_path)
        requests["contacts list, second page"][2]["after"] = cursor
        sides[label] = {"prepared": prepared, "client": client, "requests": requests, "account": account}

    samples: dict[str, dict[str, list[float]]] = {
        label: {name: [] for name in sides[label]["requests"]} for label in sides
    }
    for side in sides.values():  # one warm-up each, checked
        for name, (method, path, params) in side["requests"].items():
            check(name, run_request(side["client"], side["prepared"], method, path, params))
    for _ in range(runs):
        for name in sides["large"]["requests"]:
            for label in ("small", "large"):
                side = sides[label]
                method, path, params = side["requests"][name]
                started = time.perf_counter()
                response = run_request(side["client"], side["prepared"], method, path, params)
                samples[label][name].append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{name} ({label}): HTTP {response.status_code}")
    rows = []
    for name in samples["large"]:
        large_p95 = bench_segments.percentile(samples["large"][name], 0.95)
        small_p95 = bench_segments.percentile(samples["small"][name], 0.95)
        rows.append(
            {
                "name": name,
                "p50_ms": round(statistics.median(samples["large"][name]), 1),
                "p95_ms": round(large_p95, 1),
                "peer_p95_ms": round(small_p95, 1),
                "ratio_to_peer_p95": round(large_p95 / small_p95, 2),
            }
        )
    prepared = sides["large"]["prepared"]
    return {
        "runs": runs,
        "contacts": prepared["contacts"],
        "peer_contacts": sides["small"]["prepared"]["contacts"],
        "background_count_ms": prepared["background_count_ms"],
        "bare_count_ms": prepared["bare_count_ms"],
        "rows": rows,
    }


def _jit_off(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET jit = off")


def quiet_logs() -> None:
    """Log lines (one access-log line per request) go to a file: still formatted and written, not printed."""
    import logging

    log = open(bench_segments.VAR_DIR / "bench-contacts-list.log", "a", encoding="utf-8")  # noqa: SIM115
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                handler.setStream(log)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs of each request (after a warm-up)")
    parser.add_argument("--rebuild", action="store_true", help="generate the accounts again")
    parser.add_argument(
        "--jit",
        choices=("on", "off"),
        default="off",
        help="the sessions' jit setting (default off, as deploy/postgres/app-role.sql sets for the application's role)",
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 when a p95 is over {GOAL_P95_MS:.0f} ms")
    args = parser.parse_args()

    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
    bench_segments.configure_django(
        os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"), redis_url=redis_url
    )
    from django.conf import settings
    from django.core.cache import cache
    from django.db import connection
    from django.db.backends.signals import connection_created

    quiet_logs()
    if args.jit == "off":
        connection_created.connect(_jit_off)
        if connection.connection is not None:
            _jit_off(connection=connection)
    cache.clear()
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    large = bench_segments.find_or_build_account(args.contacts, args.rebuild)
    small = bench_segments.find_or_build_account(PEER_CONTACTS, args.rebuild)
    report = measure(large, small, args.runs)
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        (jit,) = cursor.fetchone()
    report.update({"jit": jit, "python": platform.python_version(), "postgresql": connection.connection.server_version})
    if not args.json:
        print(
            f"{report['contacts']:,} contacts against {report['peer_contacts']:,}, {args.runs} runs each, jit {jit}; "
            f"background count of the segment {report['background_count_ms']} ms, "
            f"bare count(*) {report['bare_count_ms']} ms"
        )
        print(f"{'':38} {'p50 ms':>8} {'p95 ms':>8} {'peer p95':>9} {'÷ peer':>7}")
        for row in report["rows"]:
            print(
                f"{row['name']:38} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['peer_p95_ms']:>9} "
                f"{row['ratio_to_peer_p95']:>6}×"
            )
        passed = all(row["p95_ms"] <= GOAL_P95_MS for row in report["rows"])
        print(f"goal p95 ≤ {GOAL_P95_MS:.0f} ms at {report['contacts']:,} contacts: {'PASS' if passed else 'FAIL'}")
    print(json.dumps(report))
    over = any(row["p95_ms"] > GOAL_P95_MS for row in report["rows"])
    return 1 if args.strict and over else 0


if __name__ == "__main__":
    sys.exit(main())
