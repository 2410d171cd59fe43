"""CSV import: our whole pipeline against a bare COPY of the same rows with the same encryption.

What it compares, in one run, on one generated file (email, first and last
name, two custom fields; 10% of the rows repeat an earlier address, 1% are
not addresses):

- **pipeline**: ``contacts.importing`` end to end, from the encrypted upload
  to rows in the database: stream-decrypt the stored file, check and count it
  (first pass), then parse, validate, dedupe by blind index, look up existing
  contacts and suppressions, seal with the bulk path, COPY into a staging
  table and upsert, chunk by chunk with progress saved, into one fresh
  account on PostgreSQL.
- **bare COPY**: the least work the same rows need to land encrypted: parse
  the plain CSV, seal email, first and last name with the same bulk path
  (``seal_column``), compute both blind indexes, and COPY into a plain table
  with no index and no constraint, in the same chunks.
- **COPY into contacts_contact**: the same, straight into the real table
  with its constraints and indexes (addresses already seen are dropped):
  the least the real schema needs, to read the pipeline's own overhead.

Rows per second is the file's rows over the wall time of each side (the upload's
encryption is timed apart). Each side runs in a child process, so its peak
memory (``ru_maxrss``) is its own. The goals (the issue's): at least 30,000
rows/s, at least 60% of the bare COPY's rate, and a peak under 300 MB.

It needs PostgreSQL (``DATABASE_URL``'s server, else 127.0.0.1:5432) and
creates, migrates and reuses its own databases there, ``bluespark_bench`` and
``bluespark_bench_keys``; its keyring lives under ``.tmp/bench-import``. Redis
is pointed at a closed port: the engine is run directly, not through Celery.
Exit status 0 whatever the result, unless ``--strict``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
VAR_DIR = REPO / ".tmp" / "bench-import"
DATABASE, KEYSTORE = "bluespark_bench", "bluespark_bench_keys"
GOAL_ROWS_PER_SECOND = 30_000
GOAL_RATIO = 0.60
GOAL_PEAK_MB = 300
DEFAULT_ROWS = 1_000_000
CHUNK = 25_000  # contacts.importing.CHUNK_ROWS: both sides work in the engine's chunks

FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Wirth"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example.co.uk"]
CITIES = ["Lyon", "Porto", "Ghent", "Turin", "Bergen", "Graz", "Cork", "Brno"]


def database_urls() -> tuple[str, str]:
    given = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(given)
    return (
        urlunsplit(parts._replace(path=f"/{DATABASE}")),
        urlunsplit(parts._replace(path=f"/{KEYSTORE}")),
    )


def configure_django(*, migrate: bool) -> None:
    app_url, keys_url = database_urls()
    os.environ.update(
        {
            "BLUESPARK_ENV": "test",
            "BLUESPARK_VAR_DIR": str(VAR_DIR),
            "BLUESPARK_IMPORT_DIR": str(VAR_DIR / "imports"),
            "DJANGO_SETTINGS_MODULE": "bluespark.settings",
            "DATABASE_URL": app_url,
            "KEYSTORE_DATABASE_URL": keys_url,
        }
    )
    for name in ("BLUESPARK_KEYRING", "BLUESPARK_KEYRING_FILE"):
        os.environ.pop(name, None)
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ[name] = "redis://127.0.0.1:9/0"
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    if migrate:
        create_databases(app_url, keys_url)
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("migrate", database="keystore", verbosity=0)


def create_databases(*urls: str) -> None:
    import psycopg2

    parts = urlsplit(urls[0])
    admin = psycopg2.connect(urlunsplit(parts._replace(path="/postgres")))
    admin.autocommit = True
    with admin.cursor() as cursor:
        for url in urls:
            name = urlsplit(url).path.lstrip("/")
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


# --- the file --------------------------------------------------------------------------------


def address(number: int) -> str:
    return f"{FIRST_NAMES[number % 10].lower()}.{LAST_NAMES[number // 10 % 10].lower()}{number}@{DOMAINS[number % 4]}"


def generate_csv(path: Path, rows: int, seed: int = 20_261_124) -> dict[str, int]:
    """email, first, last, city, score; 10% repeat an earlier address (other case), 1% are not addresses."""
    rng = random.Random(seed)
    duplicates = invalid = 0
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "First name", "Last name", "City", "Score"])
        unique = 0
        for _ in range(rows):
            first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
            draw = rng.random()
            if draw < 0.01:
                email = f"{first.lower()}.{last.lower()} at {rng.choice(DOMAINS)}"
                invalid += 1
            elif draw < 0.11 and unique:
                # An earlier address, spelt in capitals: the same person once canonical.
                email = address(rng.randrange(unique)).upper()
                duplicates += 1
            else:
                email = address(unique)
                unique += 1
            writer.writerow([email, first, last, rng.choice(CITIES), rng.randrange(100)])
    return {"rows": rows, "unique": unique, "duplicates_drawn": duplicates, "invalid_drawn": invalid}


# --- the two sides, each in its own process ---------------------------------------------------------


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_pipeline(csv_path: Path, chunk: int) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import override_settings

    from accounts.models import Account
    from accounts.tenancy import account_scope
    from contacts import importing
    from contacts.models import ContactImport, CustomField

    with connection.cursor() as cursor:
        # Each run starts from empty contact tables, so that runs compare.
        cursor.execute(
            "TRUNCATE contacts_contact, contacts_subscription, contacts_contacttag, contacts_sensitivevalue CASCADE"
        )
    account = Account.objects.create(name=f"bench-import {time.time():.0f}")
    with account_scope(account), override_settings(IMPORT_MAX_UPLOAD_BYTES=4 << 30):
        CustomField.objects.create(account=account, key="city", label="City")
        CustomField.objects.create(account=account, key="score", label="Score", type="number")
        started = time.perf_counter()
        with open(csv_path, "rb") as handle:
            contact_import = importing.store_upload(account, handle)
        upload_seconds = time.perf_counter() - started
        preview = importing.sniff(contact_import)
        importing.configure(contact_import, mapping=preview.suggested_mapping, update_existing=True, mailing_list=None)
        # start_import would queue the Celery task; the bench runs the engine itself.
        ContactImport.objects.filter(pk=contact_import.pk).update(status=ContactImport.Status.QUEUED)
        started = time.perf_counter()
        result = importing.run_contact_import(account, contact_import, chunk_rows=chunk)
        seconds = time.perf_counter() - started
    if result.status != ContactImport.Status.DONE:
        raise RuntimeError(f"the import ended {result.status}: {result.error}")
    return {
        "seconds": seconds,
        "upload_seconds": upload_seconds,
        "mapping": preview.suggested_mapping,
        "counts": {
            name: getattr(result, name)
            for name in ("rows_total", "created", "updated", "skipped", "invalid", "duplicates", "suppressed")
        },
        "peak_mb": peak_mb(),
    }


def run_bare(csv_path: Path, chunk: int, *, indexed: bool = False) -> dict[str, Any]:
    """Parse, seal and COPY: into a plain table (``bare``), or straight into ``contacts_contact`` (``indexed``).

    The indexed side is the least the real table needs: the same sealed rows
    COPYed into ``contacts_contact`` with its constraints and indexes, for a
    fresh account, without staging, lookups or progress; it drops rows whose
    address it has already seen (the unique index would refuse them).
    """
    from django.db import connection, transaction

    from accounts.models import Account
    from contacts.models import Contact
    from security.fields import blind_index_column, seal_column
    from security.identifiers import new_public_id

    if indexed:
        with connection.cursor() as cursor:
            # From empty contact tables, as the pipeline starts.
            cursor.execute(
                "TRUNCATE contacts_contact, contacts_subscription, contacts_contacttag, contacts_sensitivevalue CASCADE"
            )
    account = Account.objects.create(name=f"bench-import {'indexed' if indexed else 'bare'} {time.time():.0f}")
    account_id, scope = account.pk, account.public_id
    if not indexed:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_bare_contact")
            cursor.execute(
                "CREATE TABLE bench_bare_contact (public_id text, email bytea, email_index bytea, "
                "email_domain_index bytea, first_name bytea, last_name bytea, attributes jsonb)"
            )
    seen: set[bytes] = set()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S+00", time.gmtime())

    def hexed(values: list[bytes]) -> list[str]:
        return ["\\\\x" + value.hex() for value in values]

    def flush(rows: list[list[str]]) -> None:
        emails = [row[0] for row in rows]
        digests = blind_index_column(scope, "email", emails)
        if indexed:
            keep = []
            for position, digest in enumerate(digests):
                if digest not in seen:
                    seen.add(digest)
                    keep.append(position)
            rows = [rows[position] for position in keep]
            emails = [emails[position] for position in keep]
            digests = [digests[position] for position in keep]
        ids = [new_public_id("con") for _ in rows]
        columns = [
            ids,
            hexed(seal_column(Contact, "email", scope, list(zip(ids, emails, strict=True)))),
            hexed(digests),
            hexed(blind_index_column(scope, "email_domain", emails)),
            hexed(seal_column(Contact, "first_name", scope, [(i, row[1]) for i, row in zip(ids, rows, strict=True)])),
            hexed(seal_column(Contact, "last_name", scope, [(i, row[2]) for i, row in zip(ids, rows, strict=True)])),
            [json.dumps({"city": row[3], "score": int(row[4])}) for row in rows],
        ]
        table = "bench_bare_contact"
        names = "public_id, email, email_index, email_domain_index, first_name, last_name, attributes"
        if indexed:
            columns += [[str(account_id)] * len(ids), ["subscribed"] * len(ids), ["import"] * len(ids)]
            columns += [[stamp] * len(ids), [stamp] * len(ids)]
            table = "contacts_contact"
            names += ", account_id, status, source, created_at, updated_at"
        data = "\n".join(map("\t".join, zip(*columns, strict=True))) + "\n"
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.copy_expert(f"COPY {table} ({names}) FROM STDIN", io.BytesIO(data.encode()), size=1 << 20)

    started = time.perf_counter()
    with open(csv_path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        rows: list[list[str]] = []
        for row in reader:
            rows.append(row)
            if len(rows) >= chunk:
                flush(rows)
                rows = []
        if rows:
            flush(rows)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_mb": peak_mb(), "rows_written": len(seen) if indexed else None}


def child_main(side: str, csv_path: Path, chunk: int, profile: bool) -> None:
    configure_django(migrate=False)
    work = {
        "pipeline": run_pipeline,
        "bare": run_bare,
        "indexed": lambda path, size: run_bare(path, size, indexed=True),
    }[side]
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        result = profiler.runcall(work, csv_path, chunk)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    else:
        result = work(csv_path, chunk)
    print(json.dumps(result))


def run_child(side: str, csv_path: Path, chunk: int, profile: bool) -> dict[str, Any]:
    from django.db import connection

    # Each side starts with no dirty pages of the side before it to write out (a checkpoint that
    # would otherwise land on whichever side comes next).
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
    connection.close()
    command = [sys.executable, __file__, "--child", side, "--csv", str(csv_path), "--chunk", str(chunk)]
    if profile:
        command.append("--profile")
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)  # noqa: S603 - our own script
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"rows in the file (default {DEFAULT_ROWS:,})")
    parser.add_argument("--chunk", type=int, default=CHUNK, help=f"rows per chunk (default {CHUNK:,})")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument("--profile", action="store_true", help="cProfile the pipeline on stderr (slows it)")
    parser.add_argument("--child", choices=("pipeline", "bare", "indexed"), help=argparse.SUPPRESS)
    parser.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.csv, args.chunk, args.profile)
        return 0
    if args.rows < 100:
        parser.error("--rows must be at least 100")

    configure_django(migrate=True)
    with tempfile.TemporaryDirectory(prefix="bench-import-") as folder:
        csv_path = Path(folder) / "contacts.csv"
        generated = generate_csv(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / (1 << 20)
        bare = run_child("bare", csv_path, args.chunk, False)
        indexed = run_child("indexed", csv_path, args.chunk, False)
        pipeline = run_child("pipeline", csv_path, args.chunk, args.profile)
    rate = args.rows / pipeline["seconds"]
    bare_rate = args.rows / bare["seconds"]
    indexed_rate = args.rows / indexed["seconds"]
    ratio = rate / bare_rate
    checks = {
        "rate": rate >= GOAL_ROWS_PER_SECOND,
        "ratio": ratio >= GOAL_RATIO,
        "peak": pipeline["peak_mb"] < GOAL_PEAK_MB,
    }
    result = {
        "benchmark": "import",
        "rows": args.rows,
        "file_mb": round(size_mb, 1),
        "chunk": args.chunk,
        "generated": generated,
        "pipeline_seconds": round(pipeline["seconds"], 2),
        "pipeline_rows_per_second": round(rate),
        "upload_seconds": round(pipeline["upload_seconds"], 2),
        "bare_copy_seconds": round(bare["seconds"], 2),
        "bare_copy_rows_per_second": round(bare_rate),
        "ratio": round(ratio, 3),
        "indexed_copy_seconds": round(indexed["seconds"], 2),
        "indexed_copy_rows_per_second": round(indexed_rate),
        "ratio_to_indexed": round(rate / indexed_rate, 3),
        "pipeline_peak_mb": pipeline["peak_mb"],
        "bare_peak_mb": bare["peak_mb"],
        "counts": pipeline["counts"],
        "goals": {"rows_per_second": GOAL_ROWS_PER_SECOND, "ratio": GOAL_RATIO, "peak_mb": GOAL_PEAK_MB},
        "checks": checks,
        "passed": all(checks.values()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if not args.json:
        verdict = {True: "PASS", False: "FAIL"}
        print(
            f"CSV import of {args.rows:,} rows ({result['file_mb']} MB; email, names, 2 custom fields; "
            f"10% duplicates, 1% invalid), chunks of {args.chunk:,}, {result['cpus']} CPUs"
        )
        print(
            f"  pipeline (encrypted upload -> contacts): {result['pipeline_seconds']:>7.2f} s "
            f"{rate:>9,.0f} rows/s  (goal >= {GOAL_ROWS_PER_SECOND:,}): {verdict[checks['rate']]}"
        )
        print(
            f"  bare COPY, same sealing, plain table:    {result['bare_copy_seconds']:>7.2f} s "
            f"{bare_rate:>9,.0f} rows/s"
        )
        print(
            f"  COPY into contacts_contact, same sealing: {result['indexed_copy_seconds']:>5.2f} s "
            f"{indexed_rate:>9,.0f} rows/s  (its indexes, no staging or lookups)"
        )
        print(f"  pipeline / bare COPY: {ratio:.0%} (goal >= {GOAL_RATIO:.0%}): {verdict[checks['ratio']]}")
        print(f"  pipeline / COPY into contacts_contact: {rate / indexed_rate:.0%}")
        print(
            f"  peak memory (RSS) of the pipeline: {pipeline['peak_mb']:.0f} MB (goal < {GOAL_PEAK_MB} MB): "
            f"{verdict[checks['peak']]}; bare COPY {bare['peak_mb']:.0f} MB"
        )
        print(f"  encrypting the upload as it is stored: {result['upload_seconds']:.2f} s (not in the rates)")
        print(f"  counts: {json.dumps(result['counts'])}")
    print(json.dumps(result, separators=(",", ":")))
    return 1 if args.strict and not result["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
