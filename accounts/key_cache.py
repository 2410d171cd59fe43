"""Verified API keys, kept by each process for a few seconds, and the epoch that voids them.

An API request's key used to cost a database query every time (the lookup by
prefix, with its account). Now a process keeps a key the database verified,
under its prefix, with the token's SHA-256, for ``API_KEY_CACHE_SECONDS``.
A later request with the same token compares the hash in constant time and
checks the expiry again, as the database path does.

Revocation stays immediate through the *key-set epoch*, a random value in
Redis that every revocation and every account closure replaces
(:func:`key_set_changed`). Each cached key remembers the epoch read *before*
its database lookup; each request reads the current one in the same Redis
round trip as its rate limit (``security.ratelimit.gate``). When they
differ, the process forgets every key it kept and asks the database again.
The epoch is replaced at once and again at commit: a process that looked the
key up between the two saw it still live, and the second change voids what
it cached.

What the lifetime still bounds: a revocation made while Redis was
unreachable (the API's rate limit needs Redis too, so the API is refusing
requests then), and an account's name as the API sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import transaction

from accounts.models import ApiKey
from security.ratelimit import redis_client

logger = logging.getLogger(__name__)

# Past this many keys a process starts again from empty (a bound, not an expected size).
MAX_KEPT_KEYS = 1000


@dataclass(frozen=True)
class KeptKey:
    key: ApiKey
    token_hash: bytes
    epoch: bytes | None
    kept_at: float  # time.time(): a clock set back ends the lifetime rather than stretching it


_kept: dict[str, KeptKey] = {}
_lock = threading.Lock()


def epoch_key() -> str:
    return f"bluespark:{settings.ENVIRONMENT}:api-keys:epoch"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def kept_key(prefix: str, token: str) -> KeptKey | None:
    """The key this process keeps for a token, if the token's hash matches and its time has not run out."""
    kept = _kept.get(prefix)
    if kept is None:
        return None
    if not kept.kept_at <= time.time() < kept.kept_at + settings.API_KEY_CACHE_SECONDS:
        _kept.pop(prefix, None)
        return None
    if not hmac.compare_digest(kept.token_hash, token_hash(token)):
        return None
    return kept


def keep(prefix: str, token: str, key: ApiKey, *, epoch: bytes | None) -> None:
    """Keep a key the database just verified; ``epoch`` is the one read before that lookup."""
    seconds = settings.API_KEY_CACHE_SECONDS
    if seconds <= 0:
        return
    with _lock:
        if len(_kept) >= MAX_KEPT_KEYS:
            _kept.clear()
        _kept[prefix] = KeptKey(key, token_hash(token), epoch, time.time())


def forget_all() -> None:
    """Forget every kept key (the epoch moved, or a test needs a clean process)."""
    with _lock:
        _kept.clear()


def _new_epoch() -> None:
    forget_all()
    try:
        redis_client().set(epoch_key(), secrets.token_hex(16))
    except redis.RedisError:
        # The revocation itself is in the database; kept keys run out within API_KEY_CACHE_SECONDS.
        logger.warning("api_key_epoch_not_changed", exc_info=True)


def key_set_changed() -> None:
    """Void every process's kept keys: now, and again when the caller's transaction commits."""
    _new_epoch()
    transaction.on_commit(_new_epoch)
