"""Gunicorn's settings for the production image (read from the working directory).

Access log: off on purpose. ``audit.middleware.RequestContextMiddleware``
already writes exactly one JSON line per request to stdout (the
``bluespark.access`` logger), with the request id, actor and account; a
second, plain line from gunicorn would double every request in the logs.
Gunicorn's error log (start-up, worker crashes) still goes to stderr.

The master imports Bluespark once and forks ready workers (``preload_app``):
a recycled worker serves at once instead of importing Django for a second
while connections queue behind it (``make bench-api``: the peer's p99 went
from 0.1-0.8 s to 65-94 ms, ours from 140 to 100-130 ms). Importing the
application opens no connection (tests/bluespark/test_wsgi.py), so workers
share none; ``random`` reseeds itself in each child. Each worker then opens
its own before it accepts (``post_worker_init``): its first request no longer
waits for the data, the key store and Redis (about 25 ms here).
"""

import gc
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")

# Gunicorn honours X-Forwarded-Proto only from these addresses: the same TLS
# proxy that Django trusts for X-Forwarded-For (BLUESPARK_TRUSTED_PROXIES).
# (A comma-separated string: gunicorn rejects a list here.)
forwarded_allow_ips = os.environ.get("BLUESPARK_TRUSTED_PROXIES", "").strip() or "127.0.0.1"

timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 30
# Above nginx's upstream keepalive, so gunicorn never closes a connection nginx is about to reuse.
keepalive = 75
# A container's /tmp may be disk-backed; heartbeats belong in memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108 - heartbeat files, no data
# Workers are recycled now and then so a slow leak cannot grow without bound, each after its own
# number of requests: with 2,000-2,200, both workers (sharing the load evenly) restarted within the
# same second every 18 s under make bench-api's load, and requests queued until one came back.
max_requests = 10000
max_requests_jitter = 5000
# No runtime control socket: nothing in the container needs to resize or reload workers.
control_socket_disable = True


preload_app = True


def pre_fork(server, worker):  # noqa: ARG001 - gunicorn's hook signature
    """Keep what the master imported (alive as long as the worker) out of the workers' garbage collections.

    It is then neither scanned by every full collection nor copied on write
    by one (the use Python's documentation gives for gc.freeze).
    """
    gc.freeze()


# A worker's first requests fill Django's and DRF's lazy caches (URL resolvers, serializer fields,
# templates...): kept for its life, but scanned by every full garbage collection after that.
FREEZE_AFTER_REQUESTS = 200


def post_request(worker, req, environ, resp):  # noqa: ARG001 - gunicorn's hook signature
    """Once a worker has served its first requests, freeze what they left (as pre_fork does the master's).

    Full collections then scan only what later requests leave: in make
    bench-api, the server-side p99 of our list went from 22-24 to 16 ms and
    its p99.9 from 37 to 24 ms. Runs after the response is sent. An object
    frozen here that later becomes cyclic garbage is never collected: worker
    recycling (max_requests) bounds that.
    """
    if worker.nr == FREEZE_AFTER_REQUESTS:
        gc.collect()
        gc.freeze()


def post_worker_init(worker):  # noqa: ARG001 - gunicorn's hook signature
    """Open the worker's connections before it accepts a request (bluespark.warmup)."""
    from bluespark.warmup import open_connections

    open_connections()
