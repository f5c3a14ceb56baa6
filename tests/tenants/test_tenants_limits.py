"""Quotas: token buckets and in-flight caps, in-process and shared through a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from tenants.keys import KeyLimits
from tenants.limits import LocalLimiter, RedisLimiter, TokenBucket
from wattgate.errors import TooManyRequests


def test_token_bucket_burst_then_rate():
    b = TokenBucket(rps=2, burst=3)
    assert [b.take(0.0) for _ in range(3)] == [0, 0, 0]
    assert b.take(0.0) == pytest.approx(0.5)
    assert b.take(0.5) == 0  # one token back after 1/rps
    assert b.take(0.5) > 0


async def test_local_limiter_rate_and_concurrency():
    clock = [0.0]
    lim = LocalLimiter(clock=lambda: clock[0])
    limits = KeyLimits(rps=1, burst=1, max_concurrency=1)
    await lim.acquire("a", limits, "r1")
    with pytest.raises(TooManyRequests, match="in flight"):
        await lim.acquire("a", limits, "r2")
    await lim.release("a", limits, "r1")
    with pytest.raises(TooManyRequests) as info:
        await lim.acquire("a", limits, "r3")
    assert info.value.status_code == 429 and info.value.retry_after_s >= 1
    await lim.acquire("b", limits, "r4")  # another tenant has its own bucket
    clock[0] = 1.0
    await lim.acquire("a", limits, "r5")


@pytest.mark.integration
async def test_redis_limits_are_shared_and_fall_back_when_redis_is_down():
    from tests.redis_server import LocalRedis

    with LocalRedis() as redis:
        one, two = RedisLimiter(redis.url, "t"), RedisLimiter(redis.url, "t")  # two ingress replicas
        limits = KeyLimits(rps=0.5, burst=4, max_concurrency=3)
        admitted = 0
        for i in range(8):
            try:
                await (one if i % 2 else two).acquire("a", limits, f"r{i}")
                admitted += 1
                await (one if i % 2 else two).release("a", limits, f"r{i}")
            except TooManyRequests:
                pass
        assert admitted == 4  # one bucket for both replicas
        conc = KeyLimits(max_concurrency=2)
        await one.acquire("b", conc, "x1")
        await two.acquire("b", conc, "x2")
        with pytest.raises(TooManyRequests, match="in flight"):
            await one.acquire("b", conc, "x3")
        await two.release("b", conc, "x2")
        await one.acquire("b", conc, "x3")
        redis.kill()
        await one.acquire("c", KeyLimits(rps=1, burst=1), "y1")  # Redis gone: this replica's own limits
        with pytest.raises(TooManyRequests):
            await one.acquire("c", KeyLimits(rps=1, burst=1), "y2")
        assert one.fallbacks == 2
        await asyncio.gather(one.close(), two.close())
