"""Token-bucket rate limits kept in Redis, shared by every process.

A bucket holds up to ``capacity`` tokens and refills at ``capacity /
period`` tokens a second; each request takes one. The whole check is one
Lua script, so concurrent workers never race on a bucket. Celery's own
``rate_limit`` and DRF's throttles keep state per process or per cache key
without atomicity; this one is exact across processes.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings

# Take ``cost`` tokens from the bucket at ``key`` (refilled up to ``now`` first); {allowed, tokens left}.
_TAKE_FUNCTION = """
local function take(key, capacity, rate, now, cost)
  local state = redis.call('HMGET', key, 'tokens', 'at')
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
  redis.call('HSET', key, 'tokens', tokens, 'at', now)
  redis.call('PEXPIRE', key, math.ceil(capacity / rate * 1000) + 1000)
  return {allowed, tostring(tokens)}
end
"""

_BUCKET_SCRIPT = (
    _TAKE_FUNCTION
    + """
return take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
"""
)

# Look at KEYS[1]'s bucket; only if it would allow a request, take a token from KEYS[2]'s (when
# ARGV[4] names its capacity); and read KEYS[3]'s value. One round trip for what a request checks.
_GATE_SCRIPT = (
    _TAKE_FUNCTION
    + """
local now = tonumber(ARGV[1])
local looked = take(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]), now, 0)
local taken = {0, '0'}
if ARGV[4] ~= '' and tonumber(looked[2]) >= 1 then
  taken = take(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), now, 1)
end
return {looked[2], taken[1], taken[2], redis.call('GET', KEYS[3])}
"""
)


logger = logging.getLogger(__name__)

#: Seconds a client is told to wait (Retry-After) when the limits cannot be counted.
UNAVAILABLE_RETRY_AFTER = 5


class RateLimitUnavailable(RuntimeError):
    """Redis did not answer, so the request cannot be counted: it is refused (503), never let through uncounted.

    The API answers a 503 problem and pages a 503 page, both with
    ``Retry-After`` (``bluespark.rest``, ``security.middleware``).
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


@dataclass(frozen=True)
class Gate:
    """What :func:`gate` found: the looked-at bucket, the taken one (None when not taken), the value read."""

    looked: Decision
    taken: Decision | None
    value: bytes | None


_lock = threading.Lock()
_client: redis.Redis | None = None
_scripts: dict[str, Any] = {}


def redis_client() -> redis.Redis:
    """The process's client for the rate limits' Redis (REDIS_URL), also for the plain keys ``gate`` reads."""
    global _client
    if _client is None:
        with _lock:
            if _client is None:
                _client = redis.Redis.from_url(settings.REDIS_URL)
    return _client


def _script(source: str):  # type: ignore[no-untyped-def]
    script = _scripts.get(source)
    if script is None:
        client = redis_client()
        with _lock:
            script = _scripts.setdefault(source, client.register_script(source))
    return script


def _run(source: str, keys: list[str], args: list[Any]) -> Any:
    try:
        return _script(source)(keys=keys, args=args)
    except redis.RedisError as error:
        # The error's kind only: a Redis error's text can carry the URL, password included.
        logger.error("rate_limit_unavailable", extra={"error": type(error).__name__})
        raise RateLimitUnavailable("The rate limits' store does not answer.") from None


def _bucket_key(policy: RateLimit, subject: str) -> str:
    return f"bluespark:{settings.ENVIRONMENT}:ratelimit:{policy.name}:{subject}"


def _decision(policy: RateLimit, allowed: bool, tokens: float) -> Decision:
    return Decision(
        allowed=allowed,
        limit=policy.capacity,
        remaining=max(0, math.floor(tokens)),
        reset_seconds=math.ceil((policy.capacity - tokens) / policy.rate),
        retry_after=0 if allowed else max(1, math.ceil((1 - tokens) / policy.rate)),
    )


def hit(policy: RateLimit, subject: str, *, now: float, cost: int = 1) -> Decision:
    """Take ``cost`` tokens from ``subject``'s bucket under ``policy``; ``now`` is seconds since the epoch.

    ``cost=0`` only looks: ``allowed`` then says whether one more request would be.
    ``RateLimitUnavailable`` when Redis does not answer.
    """
    args = [policy.capacity, policy.rate, now, cost]
    allowed, tokens_left = _run(_BUCKET_SCRIPT, [_bucket_key(policy, subject)], args)
    tokens = float(tokens_left)
    return _decision(policy, tokens >= 1 if cost == 0 else bool(allowed), tokens)


def gate(look: tuple[RateLimit, str], take: tuple[RateLimit, str] | None, *, now: float, read: str) -> Gate:
    """In one round trip: look at ``look``'s bucket (as ``hit(cost=0)``); only if it allows a request,
    take one token from ``take``'s; and read the plain Redis key ``read`` (None when unset).

    For a request that must pass a guard (the client's address) before it may
    spend from its own bucket, and wants one more fact from Redis on the way.
    """
    look_policy, look_subject = look
    keys = [_bucket_key(look_policy, look_subject), "", read]
    args: list[Any] = [now, look_policy.capacity, look_policy.rate, "", ""]
    if take is not None:
        keys[1] = _bucket_key(*take)
        args[3:] = [take[0].capacity, take[0].rate]
    else:
        keys[1] = keys[0]
    looked_tokens, taken_allowed, taken_tokens, value = _run(_GATE_SCRIPT, keys, args)
    looked = _decision(look_policy, float(looked_tokens) >= 1, float(looked_tokens))
    taken = None
    if take is not None and looked.allowed:
        taken = _decision(take[0], bool(taken_allowed), float(taken_tokens))
    return Gate(looked=looked, taken=taken, value=value)


def reset_rate_limit_client() -> None:
    """Forget the Redis client (tests that change REDIS_URL)."""
    global _client
    with _lock:
        _client = None
        _scripts.clear()
