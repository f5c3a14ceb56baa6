"""Quotas per tenant: a token bucket (requests/s, burst) and a cap on requests in flight, in-process or
shared by every ingress replica through Redis. (Weighted sharing of a saturated replica: ``tenants/fair.py``.)

Redis does a tenant's whole check in one Lua script on Redis's own clock (``TIME``), so replicas
never race or disagree about time. In-flight requests are members of a sorted set scored by their
start, so a replica that dies mid-request leaks nothing past ``lease_s``. When Redis fails, limits
fall back to this process's own (counted in ``fallbacks``): a Redis outage never fails a request.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Protocol

from tenants.keys import KeyLimits
from wattgate.errors import TooManyRequests

log = logging.getLogger("wattgate.tenants")


def burst_of(limits: KeyLimits) -> int:
    return int(limits.burst or max(1, math.ceil(limits.rps or 1)))


@dataclass
class TokenBucket:
    rps: float
    burst: int
    tokens: float = -1.0
    last_s: float = 0.0

    def take(self, now: float) -> float:
        """0 when a token was taken, else the seconds until one is there."""
        if self.tokens < 0:
            self.tokens, self.last_s = float(self.burst), now
        self.tokens = min(float(self.burst), self.tokens + max(0.0, now - self.last_s) * self.rps)
        self.last_s = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rps


class Limiter(Protocol):
    """Admits a tenant's request against its key's limits or raises TooManyRequests; ``release`` ends it."""

    async def acquire(self, tenant: str, limits: KeyLimits, request_id: str) -> None: ...

    async def release(self, tenant: str, limits: KeyLimits, request_id: str) -> None: ...


def _refuse(tenant: str, what: str, retry_after_s: float) -> TooManyRequests:
    return TooManyRequests(f"tenant {tenant}: {what}", retry_after_s)


class LocalLimiter:
    """This process's buckets and in-flight counts."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._in_flight: dict[str, int] = {}

    async def acquire(self, tenant: str, limits: KeyLimits, request_id: str) -> None:
        self.acquire_now(tenant, limits)

    def acquire_now(self, tenant: str, limits: KeyLimits) -> None:
        if limits.max_concurrency is not None and self._in_flight.get(tenant, 0) >= limits.max_concurrency:
            raise _refuse(tenant, f"{limits.max_concurrency} requests already in flight (max_concurrency)", 1.0)
        if limits.rps is not None:
            bucket = self._buckets.get(tenant)
            if bucket is None or bucket.rps != limits.rps or bucket.burst != burst_of(limits):
                bucket = self._buckets[tenant] = TokenBucket(limits.rps, burst_of(limits))
            wait_s = bucket.take(self.clock())
            if wait_s > 0:
                raise _refuse(tenant, f"over {limits.rps:g} requests/s (burst {bucket.burst})", wait_s)
        if limits.max_concurrency is not None:
            self._in_flight[tenant] = self._in_flight.get(tenant, 0) + 1

    async def release(self, tenant: str, limits: KeyLimits, request_id: str) -> None:
        if limits.max_concurrency is not None and self._in_flight.get(tenant, 0) > 0:
            self._in_flight[tenant] -= 1


# KEYS: bucket hash, in-flight zset. ARGV: rps (0: none), burst, max in flight (0: none), member, lease ms.
# Returns {1, 0} admitted, {0, retry ms, 1} over the rate, {0, retry ms, 2} at the concurrency cap.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rps, burst, maxc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local lease = tonumber(ARGV[5])
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - lease)
  if redis.call('ZCARD', KEYS[2]) >= maxc then return {0, 1000, 2} end
end
if rps > 0 then
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  local tokens, ts = tonumber(b[1]), tonumber(b[2])
  if tokens == nil then tokens, ts = burst, now end
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rps / 1000)
  if tokens < 1 then
    redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
    return {0, math.ceil((1 - tokens) * 1000 / rps), 1}
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rps) + 1000)
end
if maxc > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[2], lease)
end
return {1, 0}
"""


class RedisLimiter:
    """The same limits for every ingress replica, held in Redis; this process's own when Redis fails."""

    def __init__(self, url: str, prefix: str, lease_s: float = 60.0, timeout_s: float = 0.5) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
        self._script = self._redis.register_script(_ACQUIRE)
        self._prefix = prefix
        self._lease_ms = int(lease_s * 1000)
        self.local = LocalLimiter()
        self.fallbacks = 0
        self._warned_s = -math.inf
        self._local_ids: set[str] = set()

    def _keys(self, tenant: str) -> list[str]:
        return [f"{self._prefix}:bucket:{tenant}", f"{self._prefix}:inflight:{tenant}"]

    def _fallback(self, exc: Exception) -> None:
        self.fallbacks += 1
        if time.monotonic() - self._warned_s > 10:
            self._warned_s = time.monotonic()
            log.warning("tenant limits: Redis unavailable (%s); this replica's own limits apply", type(exc).__name__)

    async def acquire(self, tenant: str, limits: KeyLimits, request_id: str) -> None:
        if limits.rps is None and limits.max_concurrency is None:
            return
        from redis.exceptions import RedisError

        args = [limits.rps or 0, burst_of(limits), limits.max_concurrency or 0, request_id, self._lease_ms]
        try:
            got = await self._script(keys=self._keys(tenant), args=args)
        except (RedisError, OSError) as exc:
            self._fallback(exc)
            self.local.acquire_now(tenant, limits)
            self._local_ids.add(request_id)
            return
        if int(got[0]) == 1:
            return
        retry_s = int(got[1]) / 1000
        if int(got[2]) == 2:
            raise _refuse(tenant, f"{limits.max_concurrency} requests already in flight (max_concurrency)", retry_s)
        raise _refuse(tenant, f"over {limits.rps:g} requests/s (burst {burst_of(limits)})", retry_s)

    async def release(self, tenant: str, limits: KeyLimits, request_id: str) -> None:
        if request_id in self._local_ids:
            self._local_ids.discard(request_id)
            await self.local.release(tenant, limits, request_id)
            return
        if limits.max_concurrency is None:
            return
        from redis.exceptions import RedisError

        try:
            await self._redis.zrem(self._keys(tenant)[1], request_id)
        except (RedisError, OSError) as exc:  # the lease expires it
            self._fallback(exc)

    async def close(self) -> None:
        await self._redis.aclose()
