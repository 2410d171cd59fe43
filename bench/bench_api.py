"""The contacts API's list under gunicorn against a naive DRF ``ModelSerializer`` list of the same rows.

What it compares, in one run, served by one gunicorn (production's
``gunicorn.conf.py``: 2 sync workers) and loaded by ``wrk`` (16 connections,
2 threads), in alternating rounds (peer, ours, peer, ours...):

- **ours**: ``GET /api/v1/contacts/?limit=50`` with an API key holding
  ``contacts:read``: key lookup and rate limits (two Redis round trips), the
  account scope, 50 contacts read with their tags and their email and names
  decrypted (each address checked against its blind index), and the
  access-log line as JSON, written to a file;
- **peer**: ``GET /bench/naive/contacts/?limit=50``, a ``ListAPIView`` with a
  ``ModelSerializer`` over the same 50 rows in a plaintext table, with no
  authentication and no permission (``bench/naive_api``), the same cursor
  pagination. It is served by the same process with the same middleware, so
  its requests get an access-log line too: what ours does on top is the
  authentication, the scope, the decryption and the tags.

The goals (the issue's): at least the peer's rate in the same run, and a p99
under 100 ms. The rate is each round's completed requests over its duration;
the figures are medians of the rounds. Beside them, not a goal: the CPU time
a request costs the gunicorn workers and the bench's PostgreSQL backends
(read from /proc), which moves much less than the rates on a shared machine.
``--profile N`` runs N requests of each side through Django's test client
under cProfile instead (no server), for where the time goes.

Why wrk: the load generator shares the two cores with the server, so it must
cost little; wrk (C, one event loop a thread) takes about 0.2 ms of CPU a
request here (measured each round, beside the server's 9-13 ms). Its
``--latency`` percentiles come out as JSON from a small Lua ``done`` hook.

It needs PostgreSQL (``postgres://postgres@127.0.0.1:5432`` unless
``BENCH_DATABASE_URL`` names another server) and Redis (the rate limits;
``BENCH_REDIS_URL``, default ``redis://127.0.0.1:6379/7``). It creates,
migrates and reuses its own databases, ``bluespark_bench_api`` and
``bluespark_bench_api_keys`` (``--rebuild`` makes them again); one account of
10,000 contacts is created through the product's bulk path. The keyring, the
gunicorn log and the access log live under ``.tmp/bench-api``. Settings are
the test environment's, with production's persistent database connections
(``DATABASE_CONN_MAX_AGE=60``) and a per-key rate limit high enough never to
refuse (the bucket is still taken on every request). ``wrk`` is Debian's
package (``make bench-api`` installs it). Exit status 0 whatever the result,
unless ``--strict``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
VAR_DIR = REPO / ".tmp" / "bench-api"
ACCESS_LOG = VAR_DIR / "access.log"
GUNICORN_LOG = VAR_DIR / "gunicorn.log"
WRK_SCRIPT = VAR_DIR / "report.lua"
DATABASE, KEYSTORE = "bluespark_bench_api", "bluespark_bench_api_keys"
ACCOUNT_NAME = "bench-api"
OURS_PATH = "/api/v1/contacts/"
PEER_PATH = "/bench/naive/contacts/"  # bench.naive_api.urls.NAIVE_PATH
PAGE = 50
GOAL_RATIO = 1.0
GOAL_P99_MS = 100.0
DEFAULT_CONTACTS = 10_000
BATCH = 1_000  # contacts.services.MAX_BULK_ITEMS

FIRST_NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Niklaus"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton", "Wirth"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example.co.uk"]
CITIES = ["Lyon", "Porto", "Ghent", "Turin", "Bergen", "Graz", "Cork", "Brno"]
TAGS = ["vip", "beta", "customer", "lead", "webinar"]

# wrk prints this after each run: its own counts and latency percentiles, as one JSON line.
WRK_REPORT = """
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"status_errors":%d,"connect_errors":%d,"read_errors":%d,'
    .. '"write_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, summary.bytes, errors.status,
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def server_urls() -> tuple[str, str, str]:
    given = os.environ.get("BENCH_DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    parts = urlsplit(given)
    return (
        urlunsplit(parts._replace(path=f"/{DATABASE}")),
        urlunsplit(parts._replace(path=f"/{KEYSTORE}")),
        urlunsplit(parts._replace(path="/postgres")),
    )


def configure_environment() -> None:
    """The environment of this process and of gunicorn, which inherits it."""
    app_url, keys_url, _ = server_urls()
    os.environ.update(
        {
            "BLUESPARK_ENV": "test",
            "BLUESPARK_VAR_DIR": str(VAR_DIR),
            "DJANGO_SETTINGS_MODULE": "bench.naive_api.settings",
            "DATABASE_URL": app_url,
            "KEYSTORE_DATABASE_URL": keys_url,
            # Production's value (settings: 60 when prod, 0 otherwise): a worker keeps its connections.
            "DATABASE_CONN_MAX_AGE": "60",
            "REDIS_URL": os.environ.get("BENCH_REDIS_URL") or "redis://127.0.0.1:6379/7",
            # Nothing here queues a task: a broker on a closed port makes any attempt fail loudly.
            "CELERY_BROKER_URL": "redis://127.0.0.1:9/0",
            "CELERY_RESULT_BACKEND": "redis://127.0.0.1:9/0",
            # The per-key bucket is still taken on every request; it just never runs dry.
            "BLUESPARK_API_REQUESTS_PER_MINUTE": str(10**9),
            "LOG_LEVEL": "WARNING",
        }
    )
    for name in ("BLUESPARK_KEYRING", "BLUESPARK_KEYRING_FILE", "DEBUG", "SECRET_KEY"):
        os.environ.pop(name, None)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    VAR_DIR.mkdir(parents=True, exist_ok=True)


def prepare_databases(rebuild: bool) -> None:
    import psycopg2

    app_url, keys_url, admin_url = server_urls()
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        for url in (app_url, keys_url):
            name = urlsplit(url).path.lstrip("/")
            if rebuild:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    if rebuild:
        # The keyring wrapped the keys of the key store just dropped: start both afresh.
        for stale in VAR_DIR.glob("keyring-*.json"):
            stale.unlink()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    call_command("migrate", database="keystore", verbosity=0)


# --- the data ----------------------------------------------------------------------------------


def contact_item(number: int, rng: random.Random) -> dict[str, Any]:
    first, last = FIRST_NAMES[number % 10], LAST_NAMES[number // 10 % 10]
    item: dict[str, Any] = {
        "email": f"{first.lower()}.{last.lower()}{number}@{DOMAINS[number % 4]}",
        "first_name": first,
        "last_name": last,
        "attributes": {"city": rng.choice(CITIES), "score": rng.randrange(100)},
        "tags": rng.sample(TAGS, k=rng.choice((0, 0, 0, 1, 1, 2))),
    }
    if rng.random() < 0.1:
        item["status"] = "unsubscribed"
    return item


def bench_account(contacts: int) -> Any:
    """The account and its contacts, and the same rows in the peer's table; reused when they are complete."""
    from django.db import connection

    from accounts.models import Account
    from accounts.tenancy import account_scope
    from bench.naive_api.models import NaiveContact
    from contacts.models import Contact

    started = time.perf_counter()
    account = Account.objects.filter(name=ACCOUNT_NAME).first()
    if account is None:
        account = build_account(contacts)
        with connection.cursor() as cursor:
            for table in ("contacts_contact", "contacts_contacttag", "contacts_tag"):
                cursor.execute(f"VACUUM ANALYZE {table}")
        print(f"built {contacts:,} contacts in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    else:
        with account_scope(account):
            have = Contact.objects.count()
        if have != contacts:
            raise SystemExit(f"The bench account has {have:,} contacts, not {contacts:,}: run again with --rebuild.")
    # Made again each run (a second or two), so that it always holds exactly the account's rows.
    copy_to_peer_table(account)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {NaiveContact._meta.db_table}")
    return account


def build_account(contacts: int) -> Any:
    from accounts.models import Account, Membership, Role, User
    from accounts.tenancy import account_scope
    from contacts import services
    from contacts.models import Contact, CustomField

    owner = User.objects.create_user("owner@bench-api.test", "bench-api correct horse battery", full_name="Owner")
    account = Account.objects.create(name=ACCOUNT_NAME)
    Membership.objects.create(account=account, user=owner, role=Role.OWNER)
    rng = random.Random(20_261_124)
    with account_scope(account):
        CustomField.objects.create(account=account, key="city", label="City")
        CustomField.objects.create(account=account, key="score", label="Score", type=CustomField.Type.NUMBER)
        for start in range(0, contacts, BATCH):
            items = [contact_item(number, rng) for number in range(start, min(start + BATCH, contacts))]
            results = services.bulk_upsert(account, items, source=Contact.Source.API)
            failed = [result for result in results if result.status != "created"]
            if failed:
                raise SystemExit(f"bulk_upsert refused {len(failed)} contacts: {failed[0].errors}")
    return account


def copy_to_peer_table(account: Any) -> None:
    """The account's contacts, decrypted through the product's bulk path, into the plaintext table."""
    from django.db import connection

    from accounts.tenancy import account_scope
    from bench.naive_api.models import NaiveContact
    from contacts.selectors import contact_list, contact_values, open_contact_values

    with connection.schema_editor() as editor:
        if NaiveContact._meta.db_table in connection.introspection.table_names():
            editor.delete_model(NaiveContact)
        editor.create_model(NaiveContact)
        for index in NaiveContact._meta.indexes:
            # create_model leaves an unmanaged model's indexes out.
            editor.add_index(NaiveContact, index)
    with account_scope(account):
        rows = open_contact_values(account, list(contact_values(contact_list(account))))
    NaiveContact.objects.bulk_create(
        [
            NaiveContact(
                pk=row["pk"],
                public_id=row["public_id"],
                email=row["email"],
                first_name=row["first_name"],
                last_name=row["last_name"],
                status=row["status"],
                source=row["source"],
                tags=row["tags"],
                attributes=row["attributes"] or {},
                created_at=row["created_at"],
                updated_at=row["updated_at"],
            )
            for row in rows
        ],
        batch_size=BATCH,
    )


def new_api_key(account: Any) -> Any:
    """A key with contacts:read, issued by the product's service (a fresh one each run)."""
    from accounts.models import ApiScope, Membership, Role
    from accounts.services import create_api_key
    from accounts.tenancy import account_scope

    owner = Membership.objects.select_related("user").get(account=account, role=Role.OWNER).user
    with account_scope(account):
        name, scopes = f"bench {time.time():.0f}", [ApiScope.CONTACTS_READ]
        return create_api_key(account, name=name, scopes=scopes, created_by=owner)


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_gunicorn(port: int, workers: int, max_requests: int | None = None) -> subprocess.Popen[bytes]:
    """Production's gunicorn.conf.py (sync workers, worker recycling), bound to the loopback.

    Workers inherit stdout, where the access log's handler writes: it goes to
    ``.tmp/bench-api/access.log``, opened for appending so both workers' lines
    land whole.
    """
    gunicorn = REPO / ".venv" / "bin" / "gunicorn"
    if not gunicorn.exists():
        gunicorn = Path(shutil.which("gunicorn") or "gunicorn")
    env = {**os.environ, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": str(workers)}
    command = [str(gunicorn), "bluespark.wsgi", "--config", "gunicorn.conf.py"]
    if max_requests is not None:
        # The command line wins over the file: 0 turns the recycling off.
        command += ["--max-requests", str(max_requests)]
    ACCESS_LOG.write_bytes(b"")
    with open(ACCESS_LOG, "ab") as access, open(GUNICORN_LOG, "wb") as errors:
        return subprocess.Popen(  # noqa: S603 - our own command line
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=access,
            stderr=errors,
        )


def stop_gunicorn(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=40)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def fetch(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - http://127.0.0.1 only
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_until_serving(base: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"gunicorn exited ({server.returncode}): see {GUNICORN_LOG}")
        try:
            if fetch(base + "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within {timeout:.0f} s: see {GUNICORN_LOG}")


def check_answers(base: str, token: str) -> dict[str, int]:
    """Both endpoints answer 200 with the same 50 contacts, to the byte; the sizes of the bodies."""
    answers = {}
    for side, path, credentials in (("ours", OURS_PATH, token), ("peer", PEER_PATH, None)):
        status, headers, body = fetch(f"{base}{path}?limit={PAGE}", credentials)
        if status != 200:
            raise SystemExit(f"{side}: GET {path} answered {status}: {body[:300]!r}")
        page = json.loads(body)
        if len(page.get("results", [])) != PAGE:
            raise SystemExit(f"{side}: GET {path} returned {len(page.get('results', []))} rows, not {PAGE}")
        answers[side] = (page["results"], len(body), headers)
    if answers["ours"][0] != answers["peer"][0]:
        raise SystemExit("The two endpoints do not return the same 50 contacts.")
    if "RateLimit-Remaining" not in answers["ours"][2]:
        raise SystemExit("Our answer has no RateLimit headers: the per-key limit did not run.")
    status, _, _ = fetch(f"{base}{OURS_PATH}?limit={PAGE}")
    if status != 401:
        raise SystemExit(f"Our endpoint answered {status} without a key, not 401.")
    return {"ours_body_bytes": answers["ours"][1], "peer_body_bytes": answers["peer"][1]}


# --- CPU time, by process ---------------------------------------------------------------------
# On a shared machine the rates move with everyone else's load; the CPU time each request costs the
# gunicorn workers and the PostgreSQL backends moves much less, so it is printed beside them.

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def process_cpu(pid: int, *, reaped_children: bool = False) -> float:
    """CPU seconds of a process (utime + stime), and of its children it has waited for when asked."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    used = int(fields[11]) + int(fields[12])
    if reaped_children:
        used += int(fields[13]) + int(fields[14])
    return used / TICKS


def gunicorn_cpu(master: int) -> float:
    """The workers' CPU seconds so far: the live ones, and the ones recycled since (the master reaped them)."""
    try:
        with open(f"/proc/{master}/task/{master}/children", encoding="ascii") as handle:
            workers = [int(pid) for pid in handle.read().split()]
    except OSError:
        workers = []
    return process_cpu(master, reaped_children=True) - process_cpu(master) + sum(map(process_cpu, workers))


def database_backends() -> dict[int, float]:
    """CPU seconds of the PostgreSQL backends connected to the bench's databases, by pid (local server only)."""
    names = (f" {DATABASE} ", f" {KEYSTORE} ")
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if command.startswith("postgres: ") and any(name in command for name in names):
            found[int(entry.name)] = process_cpu(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds spent by the gunicorn workers and the bench's PostgreSQL backends while it runs.

    Backends are sampled every half second (one that closes in between loses at most that much);
    the workers are read at both ends. Redis is shared with other work on the machine: not counted.
    """

    def __init__(self, master: int) -> None:
        self.master = master
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> CpuMeter:
        self._workers_before = gunicorn_cpu(self.master)
        self._backends_before = database_backends()
        self._backends_last = dict(self._backends_before)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            self._backends_last.update(database_backends())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._backends_last.update(database_backends())
        self.workers = gunicorn_cpu(self.master) - self._workers_before
        self.database = sum(used - self._backends_before.get(pid, 0.0) for pid, used in self._backends_last.items())


# --- the load ----------------------------------------------------------------------------------


def run_wrk(
    url: str, *, token: str | None, seconds: float, connections: int, threads: int, master: int
) -> dict[str, Any]:
    # A generous timeout: wrk leaves timed-out requests out of its latencies, which would flatter the p99.
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s", "--latency"]
    command += ["-s", str(WRK_SCRIPT)]
    if token:
        command += ["-H", f"Authorization: Bearer {token}"]
    before = os.times()
    with CpuMeter(master) as meter:
        done = subprocess.run([*command, url], check=True, stdout=subprocess.PIPE, text=True)  # noqa: S603
    after = os.times()
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["rate"] = report["requests"] / (report["duration_us"] / 1e6)
    report["socket_errors"] = sum(report[f"{kind}_errors"] for kind in ("connect", "read", "write"))
    report["socket_errors"] += report["timeouts"]
    answered = max(report["requests"], 1)
    report["cpu_ms"] = {
        "gunicorn": meter.workers * 1000 / answered,
        "postgres": meter.database * 1000 / answered,
        "wrk": (after.children_user + after.children_system - before.children_user - before.children_system)
        * 1000
        / answered,
    }
    return report


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rate": round(statistics.median(r["rate"] for r in rounds), 1),
        "p50_ms": round(statistics.median(r["p50_us"] for r in rounds) / 1000, 2),
        "p99_ms": round(statistics.median(r["p99_us"] for r in rounds) / 1000, 2),
        "worst_p99_ms": round(max(r["p99_us"] for r in rounds) / 1000, 2),
        "rates": [round(r["rate"], 1) for r in rounds],
        "requests": sum(r["requests"] for r in rounds),
        "socket_errors": sum(r["socket_errors"] for r in rounds),
        "cpu_ms_per_request": {
            name: round(statistics.median(r["cpu_ms"][name] for r in rounds), 2) for name in rounds[0]["cpu_ms"]
        },
    }


def check_access_log(expected: dict[str, tuple[int, int]], api_key: str, account: str) -> dict[str, Any]:
    """One line per request: for each path, at least the requests wrk saw complete, at most those plus the ones
    still in flight when a wrk run stopped (``expected``: path -> (completed, in flight at most))."""
    lines: dict[str, int] = dict.fromkeys(expected, 0)
    wrong: list[str] = []
    refused = False
    with open(ACCESS_LOG, encoding="utf-8") as handle:
        for text in handle:
            line = json.loads(text)
            path = line.get("path")
            if path not in lines:
                continue
            lines[path] += 1
            status = line.get("status")
            if path == OURS_PATH and status == 401 and not refused:
                refused = True  # check_answers' request without a key
            elif status != 200 or (path == OURS_PATH and (line["api_key"], line["account"]) != (api_key, account)):
                wrong.append(text.strip())
    result: dict[str, Any] = {"lines": lines, "ok": not wrong, "unexpected": wrong[:5]}
    for path, (completed, in_flight) in expected.items():
        if not completed <= lines[path] <= completed + in_flight:
            result["ok"] = False
            result.setdefault("miscounted", {})[path] = {
                "lines": lines[path],
                "completed": completed,
                "in_flight_at_most": in_flight,
            }
    return result


def restarts() -> int:
    return GUNICORN_LOG.read_text(encoding="utf-8", errors="replace").count("Autorestarting worker")


# --- the in-process profile --------------------------------------------------------------------


def profile(token: str, requests: int) -> None:
    """cProfile ``requests`` requests of each side through Django's test client (no server), on stderr."""
    import cProfile
    import logging
    import pstats

    from django.test import Client

    access = logging.getLogger("bluespark.access")
    for handler in list(access.handlers):
        # The lines are formatted and written as under gunicorn, to a file instead of this process's stdout.
        to_file = logging.FileHandler(VAR_DIR / "profile-access.log")
        to_file.setFormatter(handler.formatter)
        access.removeHandler(handler)
        access.addHandler(to_file)
    client = Client(REMOTE_ADDR="127.0.0.1")
    for side, path, headers in (
        ("peer", PEER_PATH, {}),
        ("ours", OURS_PATH, {"HTTP_AUTHORIZATION": f"Bearer {token}"}),
    ):
        for _ in range(20):
            assert client.get(path, {"limit": PAGE}, **headers).status_code == 200
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        for _ in range(requests):
            client.get(path, {"limit": PAGE}, **headers)
        profiler.disable()
        seconds = time.perf_counter() - started
        each = seconds / requests * 1000
        print(f"== {side}: {requests} requests, {each:.2f} ms each under cProfile", file=sys.stderr)
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(25)


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per side (default 5)")
    parser.add_argument("--seconds", type=float, default=10, help="seconds per round (default 10)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of untimed load per side first (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument(
        "--max-requests", type=int, help="recycle a worker after this many requests (default: gunicorn.conf.py's)"
    )
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS, help="contacts in the account")
    parser.add_argument("--rebuild", action="store_true", help="drop the bench databases and build them again")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="instead of timing: cProfile N requests of each side on stderr"
    )
    args = parser.parse_args()
    if args.contacts < PAGE:
        parser.error(f"--contacts must be at least {PAGE}")
    if args.profile is None and shutil.which("wrk") is None:
        raise SystemExit("error: 'wrk' is missing: install Debian's 'wrk' package (or run `make bench-api`).")

    configure_environment()
    prepare_databases(args.rebuild)
    account = bench_account(args.contacts)
    issued = new_api_key(account)
    if args.profile:
        profile(issued.token, args.profile)
        return 0

    from django.db import connections

    connections.close_all()
    WRK_SCRIPT.write_text(WRK_REPORT, encoding="utf-8")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()
    server = start_gunicorn(port, args.workers, args.max_requests)
    rounds: dict[str, list[dict[str, Any]]] = {"peer": [], "ours": []}
    completed = dict.fromkeys((OURS_PATH, PEER_PATH), 0)
    in_flight = dict.fromkeys((OURS_PATH, PEER_PATH), 0)
    try:
        wait_until_serving(base, server)
        sizes = check_answers(base, issued.token)
        completed[OURS_PATH] += 2  # with the key and without
        completed[PEER_PATH] += 1
        sides = {"peer": (PEER_PATH, None), "ours": (OURS_PATH, issued.token)}
        plan = [(side, args.warmup, False) for side in sides] if args.warmup > 0 else []
        plan += [(side, args.seconds, True) for _ in range(args.rounds) for side in sides]
        for side, seconds, timed in plan:
            path, token = sides[side]
            report = run_wrk(
                f"{base}{path}?limit={PAGE}",
                token=token,
                seconds=seconds,
                connections=args.connections,
                threads=args.threads,
                master=server.pid,
            )
            if report["status_errors"]:
                raise SystemExit(f"{side}: answers other than 2xx: {json.dumps(report)}")
            completed[path] += report["requests"]
            # Requests still in flight when wrk stopped, or cut by a socket error, may or may not be logged.
            in_flight[path] += args.connections + report["socket_errors"]
            if timed:
                rounds[side].append(report)
                if not args.json:
                    cpu = report["cpu_ms"]
                    print(
                        f"  round {len(rounds[side])} {side}: {report['rate']:7.1f} req/s, "
                        f"p50 {report['p50_us'] / 1000:6.2f} ms, p99 {report['p99_us'] / 1000:6.2f} ms; CPU a request: "
                        f"gunicorn {cpu['gunicorn']:.2f} ms, PostgreSQL {cpu['postgres']:.2f} ms",
                        file=sys.stderr,
                    )
    finally:
        stop_gunicorn(server)
    load_after = os.getloadavg()

    access_log = check_access_log(
        {path: (completed[path], in_flight[path]) for path in completed}, issued.key.public_id, account.public_id
    )
    ours, peer = summary(rounds["ours"]), summary(rounds["peer"])
    ratio = ours["rate"] / peer["rate"]
    pair_ratios = [o["rate"] / p["rate"] for o, p in zip(rounds["ours"], rounds["peer"], strict=True)]
    server_cpu = {
        side: figures["cpu_ms_per_request"]["gunicorn"] + figures["cpu_ms_per_request"]["postgres"]
        for side, figures in (("ours", ours), ("peer", peer))
    }
    checks = {"ratio": ratio >= GOAL_RATIO, "p99": ours["p99_ms"] < GOAL_P99_MS, "access_log": access_log["ok"]}
    result = {
        "benchmark": "api",
        "contacts": args.contacts,
        "page": PAGE,
        "workers": args.workers,
        "max_requests": args.max_requests if args.max_requests is not None else "gunicorn.conf.py",
        "connections": args.connections,
        "threads": args.threads,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "ours": ours,
        "peer": peer,
        "ratio": round(ratio, 3),
        "round_ratios": [round(r, 3) for r in pair_ratios],
        # Not a goal: the peer's CPU time a request (gunicorn + PostgreSQL) over ours, what the rates' ratio
        # would tend to on an idle machine where the server's CPU is the only limit.
        "cpu_ratio": round(server_cpu["peer"] / server_cpu["ours"], 3),
        **sizes,
        "access_log": access_log,
        "worker_restarts": restarts(),
        "load_average": {"before": round(load_before[0], 2), "after": round(load_after[0], 2)},
        "goals": {"ratio": GOAL_RATIO, "p99_ms": GOAL_P99_MS},
        "checks": checks,
        "passed": all(checks.values()),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if not args.json:
        verdict = {True: "PASS", False: "FAIL"}
        print(
            f"GET ?limit={PAGE} of {args.contacts:,} contacts, gunicorn {args.workers} sync workers, wrk "
            f"{args.connections} connections / {args.threads} threads, {args.rounds} rounds of {args.seconds:g} s "
            f"per side (medians), {result['cpus']} CPUs, load {load_before[0]:.1f} -> {load_after[0]:.1f}"
        )
        for label, side, size in (
            ("peer: naive ModelSerializer, plaintext, no auth", peer, sizes["peer_body_bytes"]),
            ("ours: API key, scope, decryption, access log  ", ours, sizes["ours_body_bytes"]),
        ):
            cpu = side["cpu_ms_per_request"]
            print(
                f"  {label} {side['rate']:7.1f} req/s  p50 {side['p50_ms']:6.2f} ms  p99 {side['p99_ms']:6.2f} ms"
                f"  CPU a request: gunicorn {cpu['gunicorn']:5.2f} ms, PostgreSQL {cpu['postgres']:4.2f} ms"
                f"  ({size:,} B a page)"
            )
        print(
            f"  ours / peer: {ratio:.2f}x (rounds {min(pair_ratios):.2f}-{max(pair_ratios):.2f}x; "
            f"goal >= {GOAL_RATIO:.1f}x): {verdict[checks['ratio']]}"
        )
        print(f"  our p99: {ours['p99_ms']:.1f} ms (goal < {GOAL_P99_MS:.0f} ms): {verdict[checks['p99']]}")
        print(f"  server CPU a request, peer / ours: {result['cpu_ratio']:.2f}x (not a goal)")
        print(
            f"  access log: {access_log['lines'][OURS_PATH]:,} lines for our {completed[OURS_PATH]:,} completed "
            f"requests, {access_log['lines'][PEER_PATH]:,} for the peer's {completed[PEER_PATH]:,} "
            f"(+ at most {args.connections} in flight per wrk run): {verdict[access_log['ok']]}; "
            f"gunicorn recycled {result['worker_restarts']} workers"
        )
    print(json.dumps(result, separators=(",", ":")))
    return 1 if args.strict and not result["passed"] else 0


if __name__ == "__main__":
    sys.exit(main())
