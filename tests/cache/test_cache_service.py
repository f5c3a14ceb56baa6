import asyncio
import logging

import numpy as np
import pytest

from cache.avoided import AvoidedEnergy
from cache.keys import cache_key
from cache.memory import MemoryCache
from cache.service import PredictionCacheService
from cache.settings import CacheSettings, ModelCacheSettings
from cache.values import encode_outputs
from wattgate.errors import BackendError, CacheUnavailable
from wattgate.metrics import MetricsRegistry, render
from wattgate.tensors import Tensor


def make_service(settings=None, backend=None):
    settings = settings or CacheSettings()
    metrics = MetricsRegistry()
    if backend is None:  # not `or`: an empty MemoryCache is falsy (it has __len__)
        backend = MemoryCache(settings.memory_max_bytes)
    return PredictionCacheService(backend, settings, metrics), metrics


def key_for(x, version="1", model="m"):
    return cache_key(model, version, "", [], [Tensor.from_numpy("x", x)])


class BrokenCache:
    """A backend whose Redis is gone: every call raises what RedisCache raises then."""

    def __init__(self):
        self.calls = 0

    async def get(self, key):
        self.calls += 1
        raise CacheUnavailable("redis GET failed: ConnectionError: connection refused")

    async def set(self, key, value, ttl_s, *, only_if_absent=False):
        self.calls += 1
        raise CacheUnavailable("redis SET failed: ConnectionError: connection refused")

    async def delete(self, key):
        raise CacheUnavailable("redis DEL failed")

    async def close(self):
        pass


@pytest.mark.asyncio
async def test_miss_then_hit(model):
    svc, metrics = make_service()
    x = np.array([1.0, 2.0], dtype=np.float32)
    first = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    second = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    assert (first.status, second.status) == ("miss", "hit")
    assert model.calls == 1
    assert first.extra == {"energy_j": 0.5} and second.extra is None
    assert first.computed and not second.computed
    np.testing.assert_array_equal(second.outputs[0].data, [2.0, 4.0])
    assert second.cache_latency_ms > 0 and second.cache_cpu_s >= 0
    assert svc.hits.value(model="m") == 1 and svc.misses.value(model="m") == 1
    assert 'wattgate_cache_hits_total{model="m"} 1.0' in render(metrics.snapshot())


@pytest.mark.asyncio
async def test_a_new_version_never_sees_the_old_versions_entry(model):
    svc, _ = make_service()
    x = np.array([5.0], dtype=np.float32)
    await svc.get_or_compute(key_for(x, "1"), model.compute_for(x), model="m", version="1")
    v2 = await svc.get_or_compute(key_for(x, "2"), model.compute_for(x), model="m", version="2")
    assert v2.status == "miss" and model.calls == 2


@pytest.mark.asyncio
async def test_caching_switched_off_per_model(model):
    svc, _ = make_service(CacheSettings(per_model={"m": ModelCacheSettings(enabled=False)}))
    x = np.array([1.0], dtype=np.float32)
    outcomes = [await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1") for _ in range(2)]
    assert [o.status for o in outcomes] == ["off", "off"] and model.calls == 2
    other = [await svc.get_or_compute(key_for(x, model="n"), model.compute_for(x), model="n", version="1") for _ in range(2)]
    assert [o.status for o in other] == ["miss", "hit"]


@pytest.mark.asyncio
async def test_values_above_the_size_limit_are_served_but_not_stored(model):
    svc, _ = make_service(CacheSettings(per_model={"m": ModelCacheSettings(max_value_bytes=64)}))
    x = np.arange(100, dtype=np.float32)
    outcomes = [await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1") for _ in range(2)]
    assert [o.status for o in outcomes] == ["miss", "miss"]
    assert svc.oversize.value(model="m") == 2
    np.testing.assert_array_equal(outcomes[1].outputs[0].data, x * 2)


@pytest.mark.asyncio
async def test_per_model_ttl_reaches_the_backend(model):
    seen = []

    class Recording(MemoryCache):
        async def set(self, key, value, ttl_s, *, only_if_absent=False):
            if not only_if_absent:
                seen.append(ttl_s)
            return await super().set(key, value, ttl_s, only_if_absent=only_if_absent)

    settings = CacheSettings(default_ttl_s=300, per_model={"m": ModelCacheSettings(ttl_s=7)})
    svc, _ = make_service(settings, Recording(1 << 20))
    x = np.array([1.0], dtype=np.float32)
    await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    await svc.get_or_compute(key_for(x, model="n"), model.compute_for(x), model="n", version="1")
    assert seen == [7, 300]


@pytest.mark.asyncio
async def test_fifty_identical_concurrent_requests_compute_once(slow_model):
    svc, _ = make_service()
    x = np.array([3.0], dtype=np.float32)
    outcomes = await asyncio.gather(
        *(svc.get_or_compute(key_for(x), slow_model.compute_for(x), model="m", version="1") for _ in range(50))
    )
    assert slow_model.calls == 1
    assert sorted(o.status for o in outcomes).count("miss") == 1
    assert sum(o.coalesced for o in outcomes) == 49
    assert all(float(o.outputs[0].data[0]) == 6.0 for o in outcomes)
    assert svc.coalesced.value(model="m") == 49
    assert sum(o.extra is not None for o in outcomes) == 1  # only the leader carries the energy info


@pytest.mark.asyncio
async def test_followers_get_the_leaders_error_and_nothing_is_stored(slow_model):
    svc, _ = make_service()
    x = np.array([1.0], dtype=np.float32)
    compute = slow_model.compute_for(x, fail=BackendError("runtime exploded"))
    results = await asyncio.gather(
        *(svc.get_or_compute(key_for(x), compute, model="m", version="1") for _ in range(10)), return_exceptions=True
    )
    assert slow_model.calls == 1
    assert all(isinstance(r, BackendError) for r in results)
    ok = await svc.get_or_compute(key_for(x), slow_model.compute_for(x), model="m", version="1")
    assert ok.status == "miss"  # the failure was not cached, and the marker was released


@pytest.mark.asyncio
async def test_a_cancelled_leader_hands_over_to_a_follower(slow_model):
    svc, _ = make_service()
    x = np.array([4.0], dtype=np.float32)
    leader = asyncio.create_task(svc.get_or_compute(key_for(x), slow_model.compute_for(x), model="m", version="1"))
    await asyncio.sleep(0.01)
    followers = [
        asyncio.create_task(svc.get_or_compute(key_for(x), slow_model.compute_for(x), model="m", version="1"))
        for _ in range(5)
    ]
    await asyncio.sleep(0.01)
    leader.cancel()
    outcomes = await asyncio.gather(*followers)
    assert leader.cancelled()
    assert slow_model.calls == 2  # the cancelled run and the follower that took over
    assert [o.coalesced for o in outcomes].count(False) == 1
    assert all(float(o.outputs[0].data[0]) == 8.0 for o in outcomes)


@pytest.mark.asyncio
async def test_corrupt_value_is_a_miss_and_gets_overwritten(model):
    backend = MemoryCache(1 << 20)
    svc, _ = make_service(backend=backend)
    x = np.array([1.0], dtype=np.float32)
    await backend.set(key_for(x), b"WGCV\x01garbage", 60)
    first = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    second = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    assert (first.status, second.status) == ("miss", "hit")
    assert svc.errors.value(model="m", op="decode") == 1
    np.testing.assert_array_equal(second.outputs[0].data, [2.0])


@pytest.mark.asyncio
async def test_unavailable_cache_is_bypassed_counted_and_warned_about_at_a_bounded_rate(model, caplog):
    svc, _ = make_service(CacheSettings(warn_interval_s=60), BrokenCache())
    caplog.set_level(logging.WARNING, logger="cache.service")
    for i in range(40):
        x = np.array([float(i)], dtype=np.float32)
        outcome = await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
        assert outcome.status == "bypass" and float(outcome.outputs[0].data[0]) == 2.0 * i
        assert outcome.extra == {"energy_j": 0.5}
    assert model.calls == 40
    assert svc.bypasses.value(model="m") == 40
    warnings = [r for r in caplog.records if r.name == "cache.service"]
    assert len(warnings) == 1 and "without it" in warnings[0].getMessage()


@pytest.mark.asyncio
async def test_the_warning_comes_back_after_the_interval_with_a_suppressed_count(model, caplog):
    svc, _ = make_service(CacheSettings(warn_interval_s=0.05), BrokenCache())
    caplog.set_level(logging.WARNING, logger="cache.service")
    x = np.array([1.0], dtype=np.float32)
    for _ in range(5):
        await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    await asyncio.sleep(0.06)
    await svc.get_or_compute(key_for(x), model.compute_for(x), model="m", version="1")
    messages = [r.getMessage() for r in caplog.records if r.name == "cache.service"]
    assert len(messages) == 2 and "(4 more since the last warning)" in messages[1]


@pytest.mark.asyncio
async def test_compute_errors_pass_through_a_bypass_unchanged(model):
    svc, _ = make_service(backend=BrokenCache())
    x = np.array([1.0], dtype=np.float32)
    with pytest.raises(BackendError, match="boom"):
        await svc.get_or_compute(key_for(x), model.compute_for(x, fail=BackendError("boom")), model="m", version="1")


@pytest.mark.asyncio
async def test_unencodable_outputs_are_served_uncached():
    svc, _ = make_service()
    bad = Tensor("y", "FP32", (2,), np.array([object(), object()], dtype=object))

    async def compute():
        return [bad], None

    outcome = await svc.get_or_compute("k", compute, model="m", version="1")
    assert outcome.status == "miss" and outcome.outputs == [bad]
    assert svc.errors.value(model="m", op="encode") == 1


def test_record_avoided_counts_by_method():
    svc, metrics = make_service()
    svc.record_avoided("m", 3.0, 0.001, method="metered-active-ema")
    svc.record_avoided("m", 3.0, 0.001, method="metered-active-ema")
    assert svc.energy_avoided.value(model="m", method="metered-active-ema") == 6.0
    text = render(metrics.snapshot())
    assert 'wattgate_carbon_avoided_grams_total{model="m",method="metered-active-ema"} 0.002' in text


def test_avoided_energy_is_active_energy_per_inference_from_enough_misses():
    avoided = AvoidedEnergy(alpha=0.5, min_samples=2)
    assert avoided.on_hit("m", "fp32", 1, 0.0) is None  # nothing to estimate from yet
    avoided.set_profile("m", "fp32", 0.004)
    assert avoided.on_hit("m", "fp32", 2, 0.001) == (pytest.approx(0.007), "profile-active")
    avoided.observe_miss("m", "fp32", 0.004, 2)  # 2 mJ per inference
    avoided.observe_miss("m", "fp32", 0.012, 3)  # 4 mJ per inference
    est = avoided.estimate("m", "fp32")
    assert (est.energy_j, est.samples, est.method) == (pytest.approx(0.003), 2, "metered-active-ema")
    with pytest.raises(ValueError):
        avoided.observe_miss("m", "fp32", float("nan"), 1)


def test_avoided_energy_never_exceeds_what_the_same_inferences_cost_computed():
    avoided = AvoidedEnergy(alpha=1.0, min_samples=1)
    for _ in range(9):
        avoided.observe_miss("m", "v", 0.001, 1)
    avoided.observe_miss("m", "v", 0.1, 1)  # one costly miss: the EMA (alpha 1) jumps to 0.1 J
    total = sum(avoided.on_hit("m", "v", 1, 0.0)[0] for _ in range(50))
    mean_j = (9 * 0.001 + 0.1) / 10
    assert total <= 50 * mean_j + 1e-12


def test_stored_value_matches_encode_outputs():
    # The gateway (or an operator) may pre-warm entries with encode_outputs; the service must read them.
    async def run():
        backend = MemoryCache(1 << 20)
        svc, _ = make_service(backend=backend)
        x = np.array([9.0], dtype=np.float32)
        await backend.set(key_for(x), encode_outputs([Tensor.from_numpy("y", np.array([1.5], dtype=np.float32))]), 60)

        async def never():
            raise AssertionError("should have been a hit")

        return await svc.get_or_compute(key_for(x), never, model="m", version="1")

    outcome = asyncio.run(run())
    assert outcome.status == "hit" and float(outcome.outputs[0].data[0]) == 1.5
