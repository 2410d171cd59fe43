"""A real Celery worker process against the test databases and the test broker (REDIS_URL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connections

ROOT = Path(settings.BASE_DIR)


def database_url_for_worker(alias: str = "default") -> str:
    """The URL of the database that the test run created for ``alias`` (``test_…``), for another process."""
    db = connections[alias].settings_dict
    credentials = quote(db["USER"] or "")
    if db.get("PASSWORD"):
        credentials += ":" + quote(db["PASSWORD"])
    host = db["HOST"] or "localhost"
    if host.startswith("/"):
        return f"postgres://{credentials}@/{db['NAME']}?host={quote(host)}&port={db['PORT'] or 5432}"
    return f"postgres://{credentials}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


def declare_task_queues() -> None:
    """Declare the task queues and their bindings in the broker, so a task sent before a worker starts waits for it.

    The suite's autouse cache clear empties the Redis database that the broker shares, bindings included, and a
    process that declared them once does not declare them again: a task sent then would be dropped as unroutable.
    """
    from bluespark.celery import app

    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.amqp.queues.values():
            queue.bind(channel).declare()


@contextmanager
def celery_worker(
    *, include: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    """A worker on both queues (solo pool) that sees the test run's databases, the key store's included.

    Its output (warnings and errors) is in the process's stdout: read it with ``worker_output`` when a test fails.
    """
    worker_env = {
        **os.environ,
        "BLUESPARK_ENV": "test",
        "DATABASE_URL": database_url_for_worker("default"),
        "KEYSTORE_DATABASE_URL": database_url_for_worker("keystore"),
        **(env or {}),
    }
    command = [sys.executable, "-m", "celery", "-A", "bluespark", "worker", "--pool", "solo"]
    command += ["--queues", "default,bulk", "--without-heartbeat", "--without-mingle", "--without-gossip"]
    command += ["--loglevel", "WARNING"]
    for module in include:
        command += ["--include", module]
    process = subprocess.Popen(
        command, cwd=ROOT, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def worker_output(process: subprocess.Popen[str]) -> str:
    """Stop the worker and return what it printed (for a failure message)."""
    if process.poll() is None:
        process.terminate()
    try:
        return process.communicate(timeout=30)[0] or ""
    except (subprocess.TimeoutExpired, ValueError):
        process.kill()
        return "(the worker's output could not be read)"
