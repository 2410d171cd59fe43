"""The WSGI application can be imported by gunicorn's master and forked (``preload_app`` in gunicorn.conf.py).

Each worker then opens its connections before it serves (``post_worker_init``, ``bluespark.warmup``).
"""

import gc
import os
import socket
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from urllib.parse import quote

from django.conf import settings
from gunicorn.config import Config

PROBE = textwrap.dedent(
    """
    import os
    import bluespark.wsgi
    from django.db import connections

    def is_socket(fd):
        try:
            return os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except FileNotFoundError:  # the descriptor listdir itself used
            return False

    opened = [alias for alias in connections if connections[alias].connection is not None]
    print(opened, sum(map(is_socket, os.listdir("/proc/self/fd"))))
    """
)


WARM_UP = textwrap.dedent(
    """
    import bluespark.wsgi
    from bluespark.warmup import open_connections
    from django.db import connections

    print(open_connections())
    print([alias for alias in connections if connections[alias].connection is not None])
    """
)


def run_probe(probe: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", probe],
        cwd=settings.BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "bluespark.settings", **environment},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def server_database(alias: str) -> str:
    """A URL of the database server ``alias`` uses, naming a database that exists outside the test run."""
    database = settings.DATABASES[alias]
    user, password = quote(database["USER"] or "", safe=""), quote(database["PASSWORD"] or "", safe="")
    credentials = f"{user}:{password}@" if password else f"{user}@" if user else ""
    return f"postgres://{credentials}{database['HOST']}:{database['PORT'] or 5432}/postgres"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_importing_the_application_opens_no_connection():
    """A database, Redis or any other socket opened at import would be shared by every forked worker."""
    result = run_probe(PROBE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] 0"


def test_a_worker_opens_its_kept_connections_before_serving():
    result = run_probe(
        WARM_UP,
        DATABASE_CONN_MAX_AGE="60",
        DATABASE_URL=server_database("default"),
        KEYSTORE_DATABASE_URL=server_database("keystore"),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["['default', 'keystore', 'redis']", "['default', 'keystore']"]


def test_connections_closed_after_every_request_are_not_opened_ahead():
    result = run_probe(WARM_UP, DATABASE_CONN_MAX_AGE="0")

    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["['redis']", "[]"]


def test_a_worker_whose_dependencies_refuse_still_starts_and_says_which():
    nowhere = closed_port()
    result = run_probe(
        WARM_UP,
        DATABASE_CONN_MAX_AGE="60",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{nowhere}/bluespark",
        KEYSTORE_DATABASE_URL=server_database("keystore"),
        REDIS_URL=f"redis://127.0.0.1:{nowhere}/0",
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-2:] == ["['keystore']", "['keystore']"], result.stdout
    output = result.stdout + result.stderr
    assert output.count("worker_connection_failed") == 2, output


def test_gunicorn_preloads_the_application_and_freezes_it_before_forking():
    namespace: dict[str, object] = {}
    config_file = settings.BASE_DIR / "gunicorn.conf.py"
    exec(compile(config_file.read_text(), str(config_file), "exec"), namespace)  # noqa: S102 - our own file
    config = Config()
    for name, value in namespace.items():
        if name in config.settings:
            config.set(name, value)
    assert config.preload_app is True
    assert config.pre_fork is namespace["pre_fork"]
    assert config.post_worker_init is namespace["post_worker_init"]
    assert config.post_request is namespace["post_request"]
    # Workers share the load evenly: only a wide jitter keeps them from restarting together.
    assert config.max_requests_jitter >= config.max_requests // 2


def test_a_worker_freezes_what_its_first_requests_left_once():
    namespace: dict[str, object] = {}
    config_file = settings.BASE_DIR / "gunicorn.conf.py"
    exec(compile(config_file.read_text(), str(config_file), "exec"), namespace)  # noqa: S102 - our own file
    post_request, after = namespace["post_request"], namespace["FREEZE_AFTER_REQUESTS"]
    worker = SimpleNamespace(nr=0)  # what the hook reads of gunicorn's worker: its request count
    frozen = gc.get_freeze_count()
    try:
        counts = []
        for worker.nr in (1, after - 1, after, after + 1, 2 * after):
            kept = [[]]
            kept[0].append(kept)  # what a request leaves alive: a cycle still referenced here
            post_request(worker, None, {}, None)
            counts.append(gc.get_freeze_count())
        # Frozen objects can still be freed (the count then drops), but only a freeze makes it grow.
        assert counts[0] <= frozen and counts[1] <= frozen  # nothing before
        assert counts[2] > frozen  # then everything alive at that request
        assert counts[4] <= counts[3] <= counts[2]  # and never again
    finally:
        gc.unfreeze()
