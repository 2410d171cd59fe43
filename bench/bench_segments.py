"""Segment counts on a large account: ``contacts.segments.count()`` against a bare ``SELECT count(*)``.

What it compares, in one process, on the same account, in interleaved rounds:

- **peer**: ``SELECT COUNT(*) FROM contacts_contact WHERE account_id = %s``
  (the scoped ``Contact.objects.count()``): counting every contact of the
  account, the least a segment count over the same rows could cost;
- **ours**: ``contacts.segments.count(account, definition)`` for three
  typical definitions, end to end: validation (the account's custom fields,
  tags and lists are read), compiling, and the count query.

The goal (the issue's) is a p95 under 150 ms at 1,000,000 contacts; the
figures that hold across machines are the ratios to the peer's p95.

The account lives in a throwaway PostgreSQL database,
``bluespark_bench_segments`` (and ``…_keys`` for its key store) on the
server of ``BENCH_DATABASE_URL`` (default ``postgres://postgres@127.0.0.1:5432``),
created and migrated on first run and reused afterwards (``--rebuild`` makes
it again). Contacts are sealed for real with the account's keys through the
product's bulk path and COPYed in (``bench_contacts_list.py`` opens them on
the pages); subscriptions and tags are generated inside PostgreSQL in one
set-based INSERT per list or tag. The keyring and var files go under
``.tmp/bench-segments``; Redis is pointed at a closed port, so any cache use
would fail loudly. Exit status 0 whatever the figures, unless ``--strict``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
VAR_DIR = REPO / ".tmp" / "bench-segments"
DATABASE = "bluespark_bench_segments"
GOAL_P95_MS = 150.0
DEFAULT_CONTACTS = 1_000_000
DEFAULT_RUNS = 40
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "aol.com", "gmx.de", "orange.fr"]
DOMAINS += [f"company{i}.example" for i in range(12)]
FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Wirth"]
CHUNK = 50_000
TAGS = ["vip", "beta", "customer", "lead", "partner", "press", "webinar", "churned", "trial", "newsletter"]
# Recommended for the segment counts (docs/contacts.md, "Segments"): created only with --with-indexes.
RECOMMENDED_INDEXES = {
    "contacts_contact_status_id": ("contacts_contact", "(account_id, status, id)"),
    "contacts_subscription_member": (
        "contacts_subscription",
        "(account_id, mailing_list_id, status, contact_id)",
    ),
}


def configure_django(server_url: str, *, redis_url: str | None = None) -> None:
    """Test settings on the throwaway databases; no Redis unless ``redis_url`` is given."""
    parts = urlsplit(server_url)
    os.environ["BLUESPARK_ENV"] = "test"
    os.environ["BLUESPARK_VAR_DIR"] = str(VAR_DIR)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bluespark.settings"
    os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{DATABASE}"))
    os.environ["KEYSTORE_DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{DATABASE}_keys"))
    for name in ("BLUESPARK_KEYRING", "BLUESPARK_KEYRING_FILE"):
        os.environ.pop(name, None)
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ[name] = redis_url or "redis://127.0.0.1:9/0"
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    VAR_DIR.mkdir(parents=True, exist_ok=True)

    import psycopg2

    admin = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cursor:
        for name in (DATABASE, f"{DATABASE}_keys"):
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("migrate", database="keystore", verbosity=0)


# --- the account --------------------------------------------------------------------------


def _other_columns(model: Any, given: set[str]) -> tuple[list[str], list[Any]]:
    """Columns other features add to a model, filled with their defaults, so the INSERT keeps up with migrations."""
    from django.db import connection
    from django.db.models import NOT_PROVIDED

    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.column in given or field.primary_key:
            continue
        if field.default is NOT_PROVIDED and not field.null:
            raise SystemExit(f"{model.__name__}.{field.name} has no default: teach the benchmark about it.")
        columns.append(field.column)
        values.append(field.get_db_prep_save(field.get_default(), connection))
    return columns, values


def _insert(
    model: Any, select_columns: dict[str, str], select_params: list[Any], from_sql: str, from_params: list[Any]
) -> int:
    """One set-based INSERT … SELECT (the benchmark's own SQL; product code never writes SQL)."""
    from django.db import connection

    extra_columns, extra_values = _other_columns(model, set(select_columns))
    columns = [*select_columns, *extra_columns]
    expressions = [*select_columns.values(), *["%s"] * len(extra_values)]
    # Table and column names come from the models, expressions from this file; values are parameters.
    table = model._meta.db_table
    sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(expressions)} FROM {from_sql}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [*select_params, *extra_values, *from_params])
        return cursor.rowcount


def build_account(contacts: int) -> Any:
    """An account of ``contacts`` contacts, 3 lists, 10 tags and 2 custom fields, generated in PostgreSQL."""
    from django.db import connection, transaction

    started = time.perf_counter()
    with transaction.atomic():
        account = _generate(contacts)
    with connection.cursor() as cursor:
        for table in ("contacts_contact", "contacts_subscription", "contacts_contacttag"):
            cursor.execute(f"VACUUM ANALYZE {table}")
    print(f"built {contacts:,} contacts in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return account


def _copy_contacts(account: Any, contacts: int) -> None:
    """The account's contacts, sealed for real (pages open them) and COPYed in chunks.

    85% subscribed; domains skewed (the first is about a third); created over
    about 3 years. Email and names go through the product's bulk path with the
    account's keys, so the contacts list can decrypt and check every row, and
    an exact-address search finds ``person<N>@<domain>``.
    """
    import random

    from django.db import connection

    from contacts.models import Contact
    from security.fields import blind_index_column, seal_column

    scope, acc = account.public_id, account.pk
    rng = random.Random(contacts)
    now = time.time()
    cities = ["Paris", "Berlin", "London", "Madrid", "Rome"]
    sources = ["form", "import", "api", "manual"]
    columns = [
        "account_id",
        "public_id",
        "email",
        "email_index",
        "first_name",
        "last_name",
        "email_domain_index",
        "status",
        "source",
        "attributes",
        "created_at",
        "updated_at",
    ]
    extra_columns, extra_values = _other_columns(Contact, set(columns))
    if extra_columns:
        raise SystemExit(f"contacts_contact has new columns {extra_columns}: teach the benchmark about them.")

    def hexed(values: list[bytes]) -> list[str]:
        return ["\\\\x" + value.hex() for value in values]

    def stamp(seconds_ago: float) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime(now - seconds_ago))

    for start in range(1, contacts + 1, CHUNK):
        numbers = range(start, min(start + CHUNK, contacts + 1))
        ids = [f"con_{acc:08x}{i:018x}" for i in numbers]
        emails = [f"person{i}@{DOMAINS[int(len(DOMAINS) * rng.random() ** 2.5)]}" for i in numbers]
        firsts = [FIRST_NAMES[i % len(FIRST_NAMES)] for i in numbers]
        lasts = [LAST_NAMES[(i // 7) % len(LAST_NAMES)] for i in numbers]
        statuses = []
        for _ in numbers:
            r = rng.random()
            statuses.append(
                "subscribed"
                if r < 0.85
                else "unsubscribed"
                if r < 0.93
                else "bounced"
                if r < 0.97
                else "complained"
                if r < 0.99
                else "erased"
            )
        lines = zip(
            [str(acc)] * len(ids),
            ids,
            hexed(seal_column(Contact, "email", scope, list(zip(ids, emails, strict=True)))),
            hexed(blind_index_column(scope, "email", emails)),
            hexed(seal_column(Contact, "first_name", scope, list(zip(ids, firsts, strict=True)))),
            hexed(seal_column(Contact, "last_name", scope, list(zip(ids, lasts, strict=True)))),
            hexed(blind_index_column(scope, "email_domain", emails)),
            statuses,
            [sources[i % 4] for i in numbers],
            [json.dumps({"city": cities[i % 5], "age": 18 + i % 60}) for i in numbers],
            [stamp(rng.random() * 1100 * 86400) for _ in numbers],
            [stamp(rng.random() * 100 * 86400) for _ in numbers],
            strict=True,
        )
        data = "".join("\t".join(line) + "\n" for line in lines).encode()
        with connection.cursor() as cursor:
            # Table and column names come from this file; the rows travel as COPY data.
            cursor.copy_expert(f"COPY contacts_contact ({', '.join(columns)}) FROM STDIN", io.BytesIO(data))


def _generate(contacts: int) -> Any:
    from accounts.models import Account
    from accounts.tenancy import account_scope
    from contacts.models import ContactTag, CustomField, MailingList, Subscription, Tag

    account = Account.objects.create(name=f"bench-segments-{contacts}")
    with account_scope(account):
        lists = [MailingList.objects.create(account=account, name=name) for name in ("Newsletter", "Offers", "Events")]
        tags = [Tag.objects.create(account=account, name=name) for name in TAGS]
        CustomField.objects.create(account=account, key="city", label="City")
        CustomField.objects.create(account=account, key="age", label="Age", type=CustomField.Type.NUMBER)
    acc = account.pk

    _copy_contacts(account, contacts)
    # Subscriptions: 70% on the newsletter (90% of them subscribed), 25% on offers, 5% on events.
    for mailing_list, share in zip(lists, (0.70, 0.25, 0.05), strict=True):
        _insert(
            Subscription,
            {
                "account_id": "%s",
                "public_id": "'sub_' || lpad(to_hex(c.id), 20, '0') || lpad(to_hex(%s), 6, '0')",
                "contact_id": "c.id",
                "mailing_list_id": "%s",
                "status": (
                    "CASE WHEN random() < 0.9 THEN 'subscribed' WHEN random() < 0.5 THEN 'pending' "
                    "ELSE 'unsubscribed' END"
                ),
                "consent_source": "'import'",
                "consent_text": "decode(md5(c.id::text), 'hex')",
                "consent_at": "c.created_at",
                "created_at": "c.created_at",
                "updated_at": "c.created_at",
            },
            [acc, mailing_list.pk, mailing_list.pk],
            "contacts_contact AS c WHERE c.account_id = %s AND random() < %s",
            [acc, share],
        )
    # Tags: vip on 10%, beta on 15%, the other eight on 5% each.
    for tag, share in zip(tags, (0.10, 0.15, *[0.05] * 8), strict=True):
        _insert(
            ContactTag,
            {"account_id": "%s", "contact_id": "c.id", "tag_id": "%s"},
            [acc, tag.pk],
            "contacts_contact AS c WHERE c.account_id = %s AND random() < %s",
            [acc, share],
        )
    return account


def find_or_build_account(contacts: int, rebuild: bool) -> Any:
    from accounts.models import Account

    existing = Account.objects.filter(name=f"bench-segments-{contacts}").first()
    if existing is not None and not rebuild:
        return existing
    if existing is not None:
        from accounts.services import delete_account

        delete_account(existing)
    return build_account(contacts)


# --- measuring ------------------------------------------------------------------------------


def definitions(account: Any) -> dict[str, dict[str, Any]]:
    from contacts.models import MailingList

    newsletter = MailingList.objects.get(name="Newsletter").public_id
    offers = MailingList.objects.get(name="Offers").public_id
    return {
        "subscribed to the newsletter": {
            "all": [
                {"field": "status", "op": "eq", "value": "subscribed"},
                {"field": "list", "op": "subscribed", "value": newsletter},
            ]
        },
        "newsletter + tag vip": {
            "all": [
                {"field": "status", "op": "eq", "value": "subscribed"},
                {"field": "list", "op": "subscribed", "value": newsletter},
                {"field": "tag", "op": "has", "value": "vip"},
            ]
        },
        "domain or tag, not on offers, last year": {
            "all": [
                {"field": "status", "op": "eq", "value": "subscribed"},
                {
                    "any": [
                        {"field": "email_domain", "op": "in", "value": ["yahoo.com", "outlook.com"]},
                        {"field": "tag", "op": "has", "value": "beta"},
                    ]
                },
                {"not": {"field": "list", "op": "subscribed", "value": offers}},
                {"field": "created_at", "op": "within_days", "value": 365},
            ]
        },
    }


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def measure(account: Any, runs: int, explain: bool) -> dict[str, Any]:
    from django.db import connection

    from accounts.tenancy import account_scope
    from contacts.models import Contact
    from contacts.segments import contacts_matching, count

    with account_scope(account):
        shapes = definitions(account)
        work = {"peer: SELECT count(*) of the account": lambda: Contact.objects.count()}
        for name, definition in shapes.items():
            work[name] = lambda definition=definition: count(account, definition)
        if explain:
            for name, definition in shapes.items():
                print(f"\n== EXPLAIN {name}", file=sys.stderr)
                # The plan of the count's rows (only the ids are read, as COUNT(*) reads them).
                matching = contacts_matching(account, definition).values("pk")
                print(matching.explain(analyze=True, buffers=True), file=sys.stderr)
        samples: dict[str, list[float]] = {name: [] for name in work}
        results: dict[str, int] = {}
        for name, run in work.items():  # warm the caches once
            results[name] = run()
        for _ in range(runs):
            for name, run in work.items():
                start = time.perf_counter()
                run()
                samples[name].append((time.perf_counter() - start) * 1000)
        with connection.cursor() as cursor:
            cursor.execute("SHOW jit")
            (jit,) = cursor.fetchone()
    peer_p95 = percentile(samples["peer: SELECT count(*) of the account"], 0.95)
    rows = []
    for name, values in samples.items():
        p95 = percentile(values, 0.95)
        rows.append(
            {
                "name": name,
                "matched": results[name],
                "p50_ms": round(statistics.median(values), 1),
                "p95_ms": round(p95, 1),
                "ratio_to_peer_p95": round(p95 / peer_p95, 2),
            }
        )
    return {"runs": runs, "jit": jit, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed runs of each query (after one warm-up)")
    parser.add_argument("--rebuild", action="store_true", help="generate the account again")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN (ANALYZE, BUFFERS) on stderr")
    parser.add_argument(
        "--with-indexes", action="store_true", help="create the recommended indexes in the throwaway database first"
    )
    parser.add_argument("--without-indexes", action="store_true", help="drop them first (to compare)")
    parser.add_argument("--jit", choices=("on", "off"), help="the session's jit setting (default: the server's)")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 when a p95 is over {GOAL_P95_MS:.0f} ms")
    args = parser.parse_args()

    configure_django(os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    from django.db import connection

    account = find_or_build_account(args.contacts, args.rebuild)
    with connection.cursor() as cursor:
        for name, (table, columns) in RECOMMENDED_INDEXES.items():
            if args.with_indexes:
                cursor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} {columns}")
                cursor.execute(f"VACUUM ANALYZE {table}")
            elif args.without_indexes:
                cursor.execute(f"DROP INDEX IF EXISTS {name}")
        cursor.execute("SELECT indexname FROM pg_indexes WHERE indexname = ANY(%s)", [list(RECOMMENDED_INDEXES)])
        present = sorted(row[0] for row in cursor.fetchall())
        if args.jit:
            cursor.execute(f"SET jit = {args.jit}")

    report = measure(account, args.runs, args.explain)
    report.update(
        {
            "contacts": args.contacts,
            "recommended_indexes_present": present,
            "python": platform.python_version(),
            "postgresql": connection.cursor().connection.server_version,
        }
    )
    if not args.json:
        print(f"{args.contacts:,} contacts, {args.runs} runs each, jit {report['jit']}, indexes: {present or 'none'}")
        print(f"{'':44} {'matched':>9} {'p50 ms':>8} {'p95 ms':>8} {'÷ peer p95':>11}")
        for row in report["rows"]:
            print(
                f"{row['name']:44} {row['matched']:>9,} {row['p50_ms']:>8} {row['p95_ms']:>8} "
                f"{row['ratio_to_peer_p95']:>10}×"
            )
        verdicts = [row["p95_ms"] <= GOAL_P95_MS for row in report["rows"][1:]]
        print(f"goal p95 ≤ {GOAL_P95_MS:.0f} ms: {'PASS' if all(verdicts) else 'FAIL'}")
    print(json.dumps(report))
    over = any(row["p95_ms"] > GOAL_P95_MS for row in report["rows"][1:])
    return 1 if args.strict and over else 0


if __name__ == "__main__":
    sys.exit(main())
