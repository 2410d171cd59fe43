"""Gunicorn's settings for the production image (read from the working directory).

Access log: off on purpose. ``audit.middleware.RequestContextMiddleware``
already writes exactly one JSON line per request to stdout (the
``bluespark.access`` logger), with the request id, actor and account; a
second, plain line from gunicorn would double every request in the logs.
Gunicorn's error log (start-up, worker crashes) still goes to stderr.
"""

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
# Workers are recycled now and then so a slow leak cannot grow without bound.
max_requests = 2000
max_requests_jitter = 200
# No runtime control socket: nothing in the container needs to resize or reload workers.
control_socket_disable = True
