"""A web worker's connections, opened before it serves (``post_worker_init`` in gunicorn.conf.py)."""

from __future__ import annotations

import logging

import redis
from django.db import DatabaseError, connections

from security.ratelimit import redis_client

logger = logging.getLogger(__name__)


def open_connections() -> list[str]:
    """Connect to every database kept open between requests, and to Redis; the names of those connected.

    A recycled worker's first request used to open them itself: the data,
    the key store and Redis, about 25 ms here, while the request waited. A
    worker that opens them before it accepts leaves the queue to the other
    workers meanwhile. Databases closed after every request
    (``CONN_MAX_AGE=0``, development and tests) are left alone: the first
    request would close the connection at once. What does not answer is
    logged by its error's kind and left to the first request, which fails
    on it as it would have; the worker still starts.
    """
    opened = []
    for alias in connections:
        if not connections.settings[alias]["CONN_MAX_AGE"]:
            continue
        try:
            connections[alias].ensure_connection()
        except DatabaseError as error:
            logger.warning("worker_connection_failed", extra={"dependency": alias, "error": type(error).__name__})
        else:
            opened.append(alias)
    try:
        redis_client().ping()
    except redis.RedisError as error:
        logger.warning("worker_connection_failed", extra={"dependency": "redis", "error": type(error).__name__})
    else:
        opened.append("redis")
    return opened
