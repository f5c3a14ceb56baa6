"""Against a real redis-server started by the fixture: TTLs, coalescing across replicas, outages."""

import asyncio
import logging
import os
import signal
import time

import numpy as np
import pytest
import redis.asyncio as aioredis

from cache.base import make_cache
from cache.keys import cache_key
from cache.service import PredictionCacheService
from cache.settings import CacheSettings, ModelCacheSettings
from tests.redis_server import LocalRedis
from wattgate.errors import CacheUnavailable
from wattgate.metrics import MetricsRegistry
from wattgate.tensors import Tensor

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]


def fast_settings(url, **overrides):
    # Timeouts far roomier than the defaults: this 2-core machine is shared, and under the full
    # suite a 0.5 s connect once timed out before any outage, turning the expected miss and hit
    # into bypasses. The outages these tests stage are a killed server (refused at once) or a
    # stopped one, whose test sets its own short socket timeout.
    values = dict(url=url, breaker_backoff_s=0.05, breaker_max_backoff_s=0.2, socket_timeout_s=5.0, connect_timeout_s=5.0)
    values.update(overrides)
    return CacheSettings(**values)


def service_for(settings):
    return PredictionCacheService(make_cache(settings), settings, MetricsRegistry())


def key_for(x, version="1"):
    return cache_key("m", version, "", [], [Tensor.from_numpy("x", x)])


async def test_hit_after_miss_and_value_lives_in_redis(redis_server, model):
    svc = service_for(fast_settings(redis_server.url))
    x = np.array([1.0, 2.0], dtype=np.float32)
    try:
        first = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
        second = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    finally:
        await svc.close()
    assert (first.status, second.status, model.calls) == ("miss", "hit", 1)
    np.testing.assert_array_equal(second.outputs[0].data, [2.0, 4.0])
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await client.exists(key_for(x)) == 1
        assert await client.exists(key_for(x) + ":inflight") == 0  # the marker was released
        assert 0 < await client.pttl(key_for(x)) <= 300_000
    finally:
        await client.aclose()


async def test_ttl_expiry(redis_server, model):
    svc = service_for(fast_settings(redis_server.url, per_model={"m": ModelCacheSettings(ttl_s=0.2)}))
    x = np.array([3.0], dtype=np.float32)
    try:
        statuses = [(await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")).status for _ in range(2)]
        await asyncio.sleep(0.3)
        statuses.append((await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")).status)
    finally:
        await svc.close()
    assert statuses == ["miss", "hit", "miss"] and model.calls == 2


async def test_version_isolation(redis_server, model):
    svc = service_for(fast_settings(redis_server.url))
    x = np.array([3.0], dtype=np.float32)
    try:
        await svc.get_or_compute(key_for(x, "1"), model.compute_for(x), model="m", version="1")
        v2 = await svc.get_or_compute(key_for(x, "2"), model.compute_for(x), model="m", version="2")
        v1 = await svc.get_or_compute(key_for(x, "1"), model.compute_for(x), model="m", version="1")
    finally:
        await svc.close()
    assert (v2.status, v1.status, model.calls) == ("miss", "hit", 2)


async def test_fifty_concurrent_requests_over_two_replicas_compute_once(redis_server, slow_model):
    # Two services with their own pools stand in for two gateway replicas sharing one Redis.
    a, b = service_for(fast_settings(redis_server.url)), service_for(fast_settings(redis_server.url))
    x = np.array([7.0], dtype=np.float32)
    try:
        outcomes = await asyncio.gather(
            *((a if i % 2 else b).get_or_compute(key_for(x), slow_model.compute_for(x), model="m", version="1") for i in range(50))
        )
    finally:
        await a.close()
        await b.close()
    assert slow_model.calls == 1
    assert [o.status for o in outcomes].count("miss") == 1
    assert all(float(o.outputs[0].data[0]) == 14.0 for o in outcomes)
    # One replica led; the other replica's leader found the marker and waited for the value.
    assert a.coalesced.value(model="m") + b.coalesced.value(model="m") == 49


async def test_replica_that_loses_the_race_computes_itself_when_the_marker_outlives_its_ttl(redis_server, model):
    settings = fast_settings(redis_server.url, inflight_ttl_ms=150)
    svc = service_for(settings)
    x = np.array([2.0], dtype=np.float32)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        # Another replica claimed the key and then died without ever storing or releasing.
        await client.set(key_for(x) + ":inflight", b"other", px=10_000)
        t0 = time.perf_counter()
        outcome = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
        waited_s = time.perf_counter() - t0
    finally:
        await client.aclose()
        await svc.close()
    assert outcome.status == "miss" and model.calls == 1
    assert 0.14 <= waited_s < 1.0


async def test_corrupt_value_in_redis_is_recomputed_and_overwritten(redis_server, model):
    svc = service_for(fast_settings(redis_server.url))
    x = np.array([2.0], dtype=np.float32)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        await client.set(key_for(x), b"\x80\x04not a cache value")
        first = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
        second = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    finally:
        await client.aclose()
        await svc.close()
    assert (first.status, second.status, model.calls) == ("miss", "hit", 1)
    np.testing.assert_array_equal(second.outputs[0].data, [4.0])


async def test_killing_redis_under_load_fails_no_request_and_the_cache_comes_back(redis_server, caplog):
    caplog.set_level(logging.WARNING, logger="cache.service")
    svc = service_for(fast_settings(redis_server.url, warn_interval_s=10))
    calls = 0

    def compute_for(i):
        async def compute():
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.001)
            return [Tensor.from_numpy("y", np.array([i * 3], dtype=np.int64))], None

        return compute

    async def request(i):
        x = np.array([i % 25], dtype=np.int64)
        outcome = await svc.get_or_compute(key_for(x), compute_for(i % 25), model="m", version="1")
        assert int(outcome.outputs[0].data[0]) == (i % 25) * 3
        return outcome.status

    statuses = []
    try:
        for batch in range(30):  # 300 requests, 10 at a time; redis dies after the 10th batch
            if batch == 10:
                redis_server.kill()
            statuses += await asyncio.gather(*(request(batch * 10 + j) for j in range(10)))
        assert len(statuses) == 300
        assert "hit" in statuses[:100] and "bypass" in statuses[100:]
        assert svc.bypasses.value(model="m") > 0
        warnings = [r for r in caplog.records if r.name == "cache.service"]
        assert 1 <= len(warnings) <= 2

        redis_server.start()  # same port, empty (no persistence)
        x = np.array([1], dtype=np.int64)
        deadline = time.monotonic() + 5
        seen = []
        while time.monotonic() < deadline:
            seen.append((await svc.get_or_compute(key_for(x), compute_for(1), model="m", version="1")).status)
            if seen[-1] == "hit":
                break
            await asyncio.sleep(0.02)
        assert seen[-1] == "hit", seen
    finally:
        await svc.close()


async def test_slow_redis_times_out_into_a_bypass(redis_server, model):
    svc = service_for(fast_settings(redis_server.url, socket_timeout_s=0.1))
    x = np.array([5.0], dtype=np.float32)
    await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")  # stored, connection pooled
    os.kill(redis_server.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.perf_counter()
        slow = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
        elapsed_s = time.perf_counter() - t0
        skipped = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    finally:
        os.kill(redis_server.proc.pid, signal.SIGCONT)
    try:
        assert (slow.status, skipped.status) == ("bypass", "bypass")
        assert elapsed_s < 0.5
        assert float(slow.outputs[0].data[0]) == 10.0
        await asyncio.sleep(0.1)  # past the breaker's back-off
        back = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
        assert back.status == "hit"
    finally:
        await svc.close()


async def test_redis_out_of_memory_serves_answers_uncached(redis_server, model):
    client = aioredis.Redis.from_url(redis_server.url)
    await client.config_set("maxmemory-policy", "noeviction")
    await client.config_set("maxmemory", 1)  # any write is now refused with OOM
    await client.aclose()
    svc = service_for(fast_settings(redis_server.url))
    x = np.array([1.0], dtype=np.float32)
    try:
        outcomes = [await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1") for _ in range(2)]
    finally:
        await svc.close()
    assert [o.status for o in outcomes] == ["bypass", "bypass"]  # the in-flight marker SET is refused first
    assert all(float(o.outputs[0].data[0]) == 2.0 for o in outcomes)
    assert svc.errors.value(model="m", op="inflight") == 2
    assert svc.backend.breaker.state == "closed"  # Redis answered: no reason to stop asking


async def test_password_in_the_url_and_a_wrong_one(model):
    with LocalRedis(extra_args=("--requirepass", "s3cret")) as server:
        good = service_for(fast_settings(f"redis://:s3cret@127.0.0.1:{server.port}/0"))
        bad = service_for(fast_settings(f"redis://:wrong@127.0.0.1:{server.port}/0"))
        x = np.array([1.0], dtype=np.float32)
        try:
            statuses = [(await good.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")).status for _ in range(2)]
            refused = await bad.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
        finally:
            await good.close()
            await bad.close()
    assert statuses == ["miss", "hit"]
    assert refused.status == "bypass" and float(refused.outputs[0].data[0]) == 2.0


async def test_unix_socket_url(tmp_path, model):
    sock = tmp_path / "redis.sock"
    with LocalRedis(extra_args=("--unixsocket", str(sock), "--unixsocketperm", "700")) as _server:
        svc = service_for(fast_settings(f"unix://{sock}?db=0"))
        x = np.array([1.0], dtype=np.float32)
        try:
            statuses = [(await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")).status for _ in range(2)]
        finally:
            await svc.close()
    assert statuses == ["miss", "hit"]


async def test_redis_backend_raises_only_cache_unavailable_when_nothing_listens():
    from wattgate.net import free_port

    backend = make_cache(fast_settings(f"redis://127.0.0.1:{free_port()}/0"))
    try:
        for op in (backend.get("k"), backend.set("k", b"v", 1), backend.delete("k")):
            with pytest.raises(CacheUnavailable):
                await op
        assert backend.breaker.state == "open"
    finally:
        await backend.close()
