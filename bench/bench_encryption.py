"""Encryption at rest: our field layer against bare AES-256-GCM + HMAC-SHA256, per contact row.

What it compares, in one process, on the same rows, in interleaved rounds:

- **bare**: the least work a contact row needs, with ``cryptography`` and
  ``hmac`` called directly: encrypt the email, first and last name (a fresh
  12-byte nonce each, constant associated data) and one HMAC-SHA256 of the
  email (the blind index); then decrypt the three and check the email
  against its index (DESIGN.md §5 asks that of every read).
- **bulk**: the layer's bulk path, which imports, exports and list
  endpoints take: ``security.fields.seal_column`` for each encrypted field
  and ``blind_index_column`` (write), ``open_column`` for each field with the
  index check on the email (read). Same format, same per-row associated data.
- **layer**: one model instance at a time, as ``Contact.save()`` and a later
  read do, without the database: ``pre_save`` of the encrypted fields and the
  blind index in model field order (write); an instance built by
  ``Contact.from_db`` with ``Sealed`` values, then ``.email``, ``.first_name``
  and ``.last_name`` (read).

The goal (at most 2.0x bare) is judged on the bulk path; the per-instance
ratio is reported beside it. Building ``Contact`` instances and row ids is not
the layer's cost: it is timed apart. Import throughput is contacts sealed per
second on one core.

It runs on a throwaway embedded setup under ``.tmp/bench-encryption`` (its
own SQLite databases and keyring, migrated on first run) and never reads a
developer's ``var/``, databases, keyring or Redis: Redis is pointed at a
closed port, so any cache use would fail loudly. Exit status 0 whatever the
ratio, unless ``--strict``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import hmac
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from operator import attrgetter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VAR_DIR = REPO / ".tmp" / "bench-encryption"
GOAL_RATIO = 2.0
DEFAULT_ROWS = 20_000
DEFAULT_ROUNDS = 5
DEFAULT_CHUNK = 1_000
WARMUP_ROWS = 1_000
SECTIONS = (
    "bare_write",
    "bare_read",
    "build_write",
    "layer_write",
    "build_read",
    "layer_read",
    "bulk_write",
    "bulk_read",
)

FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Wirth"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example.co.uk"]

Row = tuple[str, str, str]


def configure_django() -> None:
    """An isolated embedded setup: dev settings, throwaway databases and keyring, no Redis."""
    os.environ["BLUESPARK_ENV"] = "dev"
    os.environ["BLUESPARK_VAR_DIR"] = str(VAR_DIR)
    os.environ["DJANGO_SETTINGS_MODULE"] = "bluespark.settings"
    for name in ("DATABASE_URL", "KEYSTORE_DATABASE_URL", "BLUESPARK_KEYRING", "BLUESPARK_KEYRING_FILE"):
        os.environ.pop(name, None)
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ[name] = "redis://127.0.0.1:9/0"
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("migrate", database="keystore", verbosity=0)


def make_rows(count: int, seed: int = 20_261_123) -> list[Row]:
    rng = random.Random(seed)
    rows = []
    for number in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        rows.append((f"{first.lower()}.{last.lower()}{number}@{rng.choice(DOMAINS)}", first, last))
    return rows


def timed(work: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """Seconds ``work(*args)`` took, and its result."""
    start = time.perf_counter()
    result = work(*args)
    return time.perf_counter() - start, result


# --- bare AES-256-GCM + HMAC-SHA256 ------------------------------------------------------


class Bare:
    def __init__(self) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.aead = AESGCM(os.urandom(32))
        self.index_key = os.urandom(32)
        # About as long as the layer's (environment, scope, model, field, row id).
        prefix = "dev|acc_" + "a" * 26 + "|contacts.contact|{}|con_" + "b" * 26
        self.associated = [prefix.format(name).encode() for name in ("email", "first_name", "last_name")]

    def write(self, rows: list[Row]) -> list[tuple[bytes, ...]]:
        encrypt, urandom = self.aead.encrypt, os.urandom
        # hmac.digest: the fastest HMAC-SHA256 Python has (one C call), as the layer uses.
        digest, sha256, key = hmac.digest, hashlib.sha256, self.index_key
        ad_email, ad_first, ad_last = self.associated
        out = []
        append = out.append
        for email, first, last in rows:
            n1, n2, n3 = urandom(12), urandom(12), urandom(12)
            append(
                (
                    n1,
                    encrypt(n1, email.encode(), ad_email),
                    n2,
                    encrypt(n2, first.encode(), ad_first),
                    n3,
                    encrypt(n3, last.encode(), ad_last),
                    digest(key, email.encode(), sha256),
                )
            )
        return out

    def read(self, sealed: list[tuple[bytes, ...]]) -> list[Row]:
        """Decrypt, and check the email against its index: the work DESIGN.md §5 asks of every read."""
        decrypt, digest, sha256, key = self.aead.decrypt, hmac.digest, hashlib.sha256, self.index_key
        ad_email, ad_first, ad_last = self.associated
        out = []
        for n1, c1, n2, c2, n3, c3, index in sealed:
            email = decrypt(n1, c1, ad_email)
            if not hmac.compare_digest(digest(key, email, sha256), index):
                raise AssertionError("index mismatch")
            out.append((email.decode(), decrypt(n2, c2, ad_first).decode(), decrypt(n3, c3, ad_last).decode()))
        return out


# --- our layer: security.fields on Contact -----------------------------------------------


class Layer:
    def __init__(self, account: Any) -> None:
        from contacts.models import Contact
        from security.fields import BlindIndexField, EncryptedTextField, Sealed

        self.account = account
        self.Contact = Contact
        self.Sealed = Sealed
        # The fields save() seals, in the order it calls their pre_save() (the model's field order).
        self.write_fields = [
            Contact._meta.get_field(name) for name in ("email", "email_index", "first_name", "last_name")
        ]
        in_model_order = [
            f for f in Contact._meta.local_concrete_fields if isinstance(f, EncryptedTextField | BlindIndexField)
        ]
        if in_model_order != self.write_fields:
            raise RuntimeError("Contact's encrypted fields changed: update bench_encryption.py")
        self.concrete = [field.attname for field in Contact._meta.concrete_fields]

    def build_for_write(self, rows: list[Row]) -> list[Any]:
        contact, account = self.Contact, self.account
        return [contact(account=account, email=e, first_name=f, last_name=last) for e, f, last in rows]

    def write(self, instances: list[Any]) -> list[tuple[str, bytes, bytes, bytes, bytes]]:
        email, email_index, first_name, last_name = (field.pre_save for field in self.write_fields)
        out = []
        append = out.append
        for instance in instances:
            append(
                (
                    instance.public_id,
                    email(instance, True),
                    email_index(instance, True),
                    first_name(instance, True),
                    last_name(instance, True),
                )
            )
        return out

    def build_for_read(self, written: list[tuple[str, bytes, bytes, bytes, bytes]]) -> list[Any]:
        """Instances as a queryset builds them: ``from_db`` with the row's values, sealed ones wrapped."""
        from django.utils import timezone

        contact, sealed_type, concrete = self.Contact, self.Sealed, self.concrete
        now = timezone.now()
        base = {"account_id": self.account.pk, "status": "subscribed", "created_at": now, "updated_at": now}
        instances = []
        for number, (public_id, email, email_index, first_name, last_name) in enumerate(written, start=1):
            row = {
                **base,
                "id": number,
                "public_id": public_id,
                "email": sealed_type(email),
                "email_index": email_index,
                "first_name": sealed_type(first_name),
                "last_name": sealed_type(last_name),
            }
            instances.append(contact.from_db("default", None, [row[name] for name in concrete]))
        return instances

    @staticmethod
    def read(instances: list[Any]) -> list[Row]:
        get = attrgetter("email", "first_name", "last_name")
        return [get(instance) for instance in instances]


# --- our layer's bulk path: security.fields.seal_column / open_column -----------------------


class Bulk:
    """What an import, an export or a list endpoint does: one column of many rows per call."""

    def __init__(self, account: Any) -> None:
        from contacts.models import Contact
        from security.identifiers import new_public_id

        self.Contact = Contact
        self.scope = account.public_id
        self.new_public_id = new_public_id

    def build(self, rows: list[Row]) -> tuple[list[Row], list[str]]:
        """Row ids, made before sealing (an import makes them as it parses; not the layer's cost)."""
        return rows, [self.new_public_id("con") for _ in rows]

    def write(self, built: tuple[list[Row], list[str]]) -> tuple[list[Any], ...]:
        from security.fields import blind_index_column, seal_column

        contact, scope = self.Contact, self.scope
        rows, ids = built
        emails, firsts, lasts = zip(*rows, strict=True)
        return (
            ids,
            seal_column(contact, "email", scope, list(zip(ids, emails, strict=True))),
            blind_index_column(scope, "email", emails),
            seal_column(contact, "first_name", scope, list(zip(ids, firsts, strict=True))),
            seal_column(contact, "last_name", scope, list(zip(ids, lasts, strict=True))),
        )

    def read(self, written: tuple[list[Any], ...]) -> list[Row]:
        from security.fields import open_column

        contact, scope = self.Contact, self.scope
        ids, emails, indexes, firsts, lasts = written
        return list(
            zip(
                open_column(contact, "email", scope, list(zip(ids, emails, strict=True)), blind_indexes=indexes),
                open_column(contact, "first_name", scope, list(zip(ids, firsts, strict=True))),
                open_column(contact, "last_name", scope, list(zip(ids, lasts, strict=True))),
                strict=True,
            )
        )


# --- the run ------------------------------------------------------------------------------


def bench_account() -> Any:
    from accounts.models import Account

    account, _ = Account.objects.get_or_create(name="bench-encryption")
    return account


def one_round(rows: list[Row], bare: Bare, layer: Layer, bulk: Bulk, chunk: int) -> dict[str, float]:
    """Seconds per section for one pass over ``rows``; checks that every value came back.

    The rows go by in chunks, each through every section in turn (the order
    alternating from chunk to chunk), so that the two sides share whatever
    the machine is doing at the time. The cyclic GC is paused, as timeit
    does; each chunk's objects are freed by reference counting.
    """
    seconds = dict.fromkeys(SECTIONS, 0.0)

    def add(section: str, work: Callable[..., Any], arg: Any) -> Any:
        elapsed, result = timed(work, arg)
        seconds[section] += elapsed
        return result

    def run_bare(part: list[Row]) -> None:
        if add("bare_read", bare.read, add("bare_write", bare.write, part)) != part:
            raise AssertionError("the bare AES-GCM round trip lost data")

    def run_layer(part: list[Row]) -> None:
        fresh = add("build_write", layer.build_for_write, part)
        written = add("layer_write", layer.write, fresh)
        loaded = add("build_read", layer.build_for_read, written)
        if add("layer_read", layer.read, loaded) != part:
            raise AssertionError("the encryption layer's round trip lost data")

    def run_bulk(part: list[Row]) -> None:
        if add("bulk_read", bulk.read, add("bulk_write", bulk.write, bulk.build(part))) != part:
            raise AssertionError("the bulk path's round trip lost data")

    gc.collect()
    gc.disable()
    try:
        sides = [run_bare, run_layer, run_bulk]
        for number, start in enumerate(range(0, len(rows), chunk)):
            part = rows[start : start + chunk]
            for side in sides[number % 3 :] + sides[: number % 3]:
                side(part)
    finally:
        gc.enable()
    return seconds


def summarise(rounds: list[dict[str, float]], rows: int, chunk: int) -> dict[str, Any]:
    """Medians over the rounds. Ratios are the median of each round's own ratio (its two sides ran together)."""

    def us(*sections: str) -> float:
        return round(statistics.median(sum(r[s] for s in sections) for r in rounds) / rows * 1e6, 3)

    def ratio(layer_sections: tuple[str, ...], bare_sections: tuple[str, ...]) -> list[float]:
        return [sum(r[s] for s in layer_sections) / sum(r[s] for s in bare_sections) for r in rounds]

    bare = {"write": us("bare_write"), "read": us("bare_read"), "total": us("bare_write", "bare_read")}
    layer = {"write": us("layer_write"), "read": us("layer_read"), "total": us("layer_write", "layer_read")}
    build = {"write": us("build_write"), "read": us("build_read")}
    bulk = {"write": us("bulk_write"), "read": us("bulk_read"), "total": us("bulk_write", "bulk_read")}
    totals = ratio(("layer_write", "layer_read"), ("bare_write", "bare_read"))
    total_ratio = statistics.median(totals)
    bulk_totals = ratio(("bulk_write", "bulk_read"), ("bare_write", "bare_read"))
    bulk_ratio = statistics.median(bulk_totals)
    from cryptography.hazmat.backends.openssl.backend import backend

    return {
        "benchmark": "encryption",
        "rows": rows,
        "rounds": len(rounds),
        "chunk": chunk,
        "bare_us_per_row": bare,
        "layer_us_per_row": layer,
        "model_build_us_per_row": build,
        "ratio": round(total_ratio, 3),
        "ratio_write": round(statistics.median(ratio(("layer_write",), ("bare_write",))), 3),
        "ratio_read": round(statistics.median(ratio(("layer_read",), ("bare_read",))), 3),
        "ratio_min": round(min(totals), 3),
        "ratio_max": round(max(totals), 3),
        "bulk_us_per_row": bulk,
        "bulk_ratio": round(bulk_ratio, 3),
        "bulk_ratio_write": round(statistics.median(ratio(("bulk_write",), ("bare_write",))), 3),
        "bulk_ratio_read": round(statistics.median(ratio(("bulk_read",), ("bare_read",))), 3),
        "bulk_ratio_min": round(min(bulk_totals), 3),
        "bulk_ratio_max": round(max(bulk_totals), 3),
        "goal_ratio": GOAL_RATIO,
        # The goal is judged on the bulk path, the one imports, exports and list endpoints take.
        "passed": bulk_ratio <= GOAL_RATIO,
        "import_contacts_per_second": round(1e6 / bulk["write"]),
        "orm_contacts_per_second": round(1e6 / layer["write"]),
        "import_contacts_per_second_with_model_build": round(1e6 / (layer["write"] + build["write"])),
        "python": platform.python_version(),
        "openssl": backend.openssl_version_text(),
        "cpus": os.cpu_count(),
    }


def print_table(result: dict[str, Any]) -> None:
    bare, layer, build = result["bare_us_per_row"], result["layer_us_per_row"], result["model_build_us_per_row"]
    verdict = "PASS" if result["passed"] else "FAIL"
    print(
        f"Encryption at rest, per contact row (email, first and last name): {result['rows']:,} rows x "
        f"{result['rounds']} rounds, the sides taking turns every {result['chunk']:,} rows; medians"
    )
    print(f"  Python {result['python']}, {result['openssl']}, {result['cpus']} CPUs")
    print(f"  {'':<58}{'µs/row':>9}{'layer/bare':>12}")
    lines = [
        ("bare  write: 3 AES-GCM encrypt + 1 HMAC-SHA256", bare["write"], None),
        ("bare  read:  3 AES-GCM decrypt + 1 HMAC-SHA256 check", bare["read"], None),
        ("bare  total", bare["total"], None),
        ("layer write: pre_save of 3 encrypted fields + blind index", layer["write"], result["ratio_write"]),
        ("layer read:  .email .first_name .last_name (+ index check)", layer["read"], result["ratio_read"]),
        ("layer total (one model instance at a time)", layer["total"], result["ratio"]),
        (
            "bulk  write: seal_column x3 + blind_index_column",
            result["bulk_us_per_row"]["write"],
            result["bulk_ratio_write"],
        ),
        ("bulk  read:  open_column x3 (+ index check)", result["bulk_us_per_row"]["read"], result["bulk_ratio_read"]),
        ("bulk  total (import, export, list endpoints)", result["bulk_us_per_row"]["total"], result["bulk_ratio"]),
    ]
    for label, value, ratio in lines:
        print(f"  {label:<58}{value:>9.2f}{'' if ratio is None else f'{ratio:>11.2f}x'}")
    print(
        f"  bulk / bare: {result['bulk_ratio']:.2f}x (rounds {result['bulk_ratio_min']:.2f}-"
        f"{result['bulk_ratio_max']:.2f}x), goal <= {result['goal_ratio']:.1f}x: {verdict}"
    )
    print(
        f"  model instance / bare: {result['ratio']:.2f}x "
        f"(rounds {result['ratio_min']:.2f}-{result['ratio_max']:.2f}x): "
        "Django's attribute machinery, paid per value on single-row saves and reads"
    )
    print(
        f"  import, one core: {result['import_contacts_per_second']:,.0f} contacts sealed/s on the bulk path; "
        f"{result['orm_contacts_per_second']:,.0f}/s through model instances "
        f"({result['import_contacts_per_second_with_model_build']:,.0f}/s counting Contact(...) construction)"
    )
    print(
        f"  for context, Django's own cost (not the layer): Contact(...) {build['write']:.2f} µs/row, "
        f"Contact.from_db(...) {build['read']:.2f} µs/row"
    )


def profile_layer(rows: list[Row], layer: Layer, limit: int) -> None:
    """cProfile of the layer's write and read halves alone, on stderr."""
    import cProfile
    import pstats

    fresh = layer.build_for_write(rows)
    profiler = cProfile.Profile()
    profiler.enable()
    written = layer.write(fresh)
    profiler.disable()
    loaded = layer.build_for_read(written)
    profiler.enable()
    layer.read(loaded)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stderr)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help=f"rows per round (default {DEFAULT_ROWS:,})")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help=f"rounds (default {DEFAULT_ROUNDS})")
    parser.add_argument(
        "--chunk", type=int, default=DEFAULT_CHUNK, help=f"rows between switches of side (default {DEFAULT_CHUNK:,})"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--strict", action="store_true", help=f"exit 1 when the ratio is above {GOAL_RATIO}")
    parser.add_argument("--profile", action="store_true", help="cProfile the layer (one pass) on stderr as well")
    args = parser.parse_args()
    if min(args.rows, args.rounds, args.chunk) < 1:
        parser.error("--rows, --rounds and --chunk must be at least 1")

    configure_django()
    from accounts.tenancy import account_scope

    rows = make_rows(args.rows)
    bare = Bare()
    account = bench_account()
    with account_scope(account):
        layer, bulk = Layer(account), Bulk(account)
        one_round(rows[:WARMUP_ROWS], bare, layer, bulk, args.chunk)  # keys created and cached, code warm
        rounds = [one_round(rows, bare, layer, bulk, args.chunk) for _ in range(args.rounds)]
        if args.profile:
            profile_layer(rows, layer, limit=30)
    result = summarise(rounds, args.rows, args.chunk)
    if not args.json:
        print_table(result)
    print(json.dumps(result, separators=(",", ":")))
    return 1 if args.strict and not result["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
