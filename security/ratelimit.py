"""Token-bucket rate limits kept in Redis, shared by every process.

A bucket holds up to ``capacity`` tokens and refills at ``capacity /
period`` tokens a second; each request takes one. The whole check is one
Lua script, so concurrent workers never race on a bucket. Celery's own
``rate_limit`` and DRF's throttles keep state per process or per cache key
without atomicity; this one is exact across processes.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import redis
from django.conf import settings

_BUCKET_SCRIPT = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil then
  tokens = capacity
  at = now
end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""


@dataclass(frozen=True)
class RateLimit:
    """A policy: ``capacity`` requests per ``period`` seconds, with bursts up to ``capacity``."""

    name: str
    capacity: int
    period: float

    @property
    def rate(self) -> float:
        return self.capacity / self.period


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int  # until the bucket is full again
    retry_after: int  # until one request is allowed again (0 when allowed)


_lock = threading.Lock()
_client: redis.Redis | None = None
_script = None


def _bucket_script():  # type: ignore[no-untyped-def]
    global _client, _script
    if _script is None:
        with _lock:
            if _script is None:
                _client = redis.Redis.from_url(settings.REDIS_URL)
                _script = _client.register_script(_BUCKET_SCRIPT)
    return _script


def hit(policy: RateLimit, subject: str, *, now: float, cost: int = 1) -> Decision:
    """Take ``cost`` tokens from ``subject``'s bucket under ``policy``; ``now`` is seconds since the epoch.

    ``cost=0`` only looks: ``allowed`` then says whether one more request would be.
    """
    key = f"bluespark:{settings.ENVIRONMENT}:ratelimit:{policy.name}:{subject}"
    allowed, tokens_left = _bucket_script()(keys=[key], args=[policy.capacity, policy.rate, now, cost])
    tokens = float(tokens_left)
    if cost == 0:
        allowed = tokens >= 1
    return Decision(
        allowed=bool(allowed),
        limit=policy.capacity,
        remaining=max(0, math.floor(tokens)),
        reset_seconds=math.ceil((policy.capacity - tokens) / policy.rate),
        retry_after=0 if allowed else max(1, math.ceil((1 - tokens) / policy.rate)),
    )


def reset_rate_limit_client() -> None:
    """Forget the Redis client (tests that change REDIS_URL)."""
    global _client, _script
    with _lock:
        _client, _script = None, None
