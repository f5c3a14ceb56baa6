"""The cache benchmark without a gateway: its cells, its ratios, and the backend measured on its own."""

from __future__ import annotations

import asyncio

import pytest

from bench.cache import backend_table, cells_for, hit_over_miss, measure_backend


def test_cache_bench_cells_hit_only_warmed_bodies_and_never_repeat_a_miss():
    cells, warm = cells_for("http://h", "int8", warm_n=16)
    by = {c.name: c for c in cells}
    assert list(by) == ["floor", "digits hit", "digits miss", "minilm hit", "minilm miss"]
    assert by["floor"].method == "GET" and by["floor"].url.endswith("/v2/health/live")
    warmed = {b for _, b in warm}
    assert all(by[n].make(i)[0] in warmed for n in ("digits hit", "minilm hit") for i in range(64))
    for n in ("digits miss", "minilm miss"):
        bodies = [by[n].make(i)[0] for i in range(200)]
        assert len(set(bodies)) == 200 and not warmed & set(bodies)
    assert [c.name for c in cells_for("http://h", None)[0]] == ["floor", "digits hit", "digits miss"]


def test_cache_bench_ratios_pair_cells_at_the_same_concurrency():
    rows = {("floor", 8): {"requests_per_s": 3000.0}, ("digits hit", 8): {"requests_per_s": 1500.0},
            ("digits miss", 8): {"requests_per_s": 1000.0}, ("digits hit", 32): {"requests_per_s": 900.0},
            ("minilm hit", 8): {"requests_per_s": 1200.0}, ("minilm miss", 8): {"requests_per_s": 200.0}}
    r = hit_over_miss(rows)
    assert r["digits"] == {8: {"hit_over_miss": 1.5, "floor_over_miss": 3.0}}  # no miss cell at 32
    assert r["minilm"][8]["hit_over_miss"] == pytest.approx(6.0)


def test_backend_measurement_counts_every_hit_it_timed():
    r = asyncio.run(measure_backend(None, n=200, concurrency=4))
    assert r["backend"].startswith("in-process LRU") and r["n"] == 200 and r["value_bytes"] > 40
    # 200 timed hits, then 4 callers x 50 hits: every get_or_compute after the misses was a hit.
    assert r["hits_counted"] == 200 + 4 * 50
    for op in ("get", "set", "hit", "miss_overhead"):
        assert 0 < r[f"{op}_p50_us"] <= r[f"{op}_p99_us"]
    assert r["hit_throughput_per_s"] > 0 and "perf_counter_ns" in r["method"]
    assert "in-process LRU" in backend_table([r])


@pytest.mark.integration
def test_backend_measurement_against_a_real_redis():
    from tests.redis_server import LocalRedis

    with LocalRedis() as server:
        r = asyncio.run(measure_backend(server.url, n=100, concurrency=4))
    assert r["backend"] == f"redis at {server.url}" and r["hits_counted"] == 100 + 4 * 25
    assert 0 < r["get_p50_us"] <= r["get_p99_us"]
