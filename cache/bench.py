"""Cache benchmark: get/set latency and the service's hit and miss paths, against Redis or the in-process LRU."""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time

import numpy as np

from cache.base import describe, make_cache
from cache.service import PredictionCacheService
from cache.settings import CacheSettings
from cache.values import encode_outputs
from wattgate.metrics import MetricsRegistry
from wattgate.tensors import Tensor


def digits_outputs() -> list[Tensor]:
    """What the digits classifier returns for one image: 10 probabilities and a label."""
    probs = np.random.default_rng(0).random((1, 10), dtype=np.float32)
    return [Tensor.from_numpy("probabilities", probs), Tensor.from_numpy("label", np.array([3], dtype=np.int64))]


def _pct_us(samples_ns: list[int], q: float) -> float:
    return round(float(np.percentile(np.asarray(samples_ns), q)) / 1e3, 1)


async def _timed(n: int, op) -> list[int]:
    out = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        await op(i)
        out.append(time.perf_counter_ns() - t0)
    return out


async def bench_cache(url: str | None, n: int = 2000, *, concurrency: int = 16) -> dict:
    """Sequential latencies (p50/p99 in µs) of raw get/set and of ``get_or_compute`` hits and misses
    (a miss here computes nothing, so it shows the cache's own overhead), plus hit throughput with
    ``concurrency`` concurrent callers on distinct keys. One process, one event loop, wall clock."""
    settings = CacheSettings(url=url, socket_timeout_s=1.0, connect_timeout_s=1.0, default_ttl_s=120)
    backend = make_cache(settings)
    service = PredictionCacheService(backend, settings, MetricsRegistry())
    outputs = digits_outputs()
    value = encode_outputs(outputs)
    prefix = f"wg:bench:{secrets.token_hex(4)}:"

    async def compute():
        return outputs, None

    try:
        for i in range(min(n, 100)):  # fill the pool, warm the interpreter
            await backend.set(f"{prefix}warm{i}", value, 60)
            await backend.get(f"{prefix}warm{i}")
        set_ns = await _timed(n, lambda i: backend.set(f"{prefix}raw{i}", value, 60))
        get_ns = await _timed(n, lambda i: backend.get(f"{prefix}raw{i}"))
        miss_ns = await _timed(n, lambda i: service.get_or_compute(f"{prefix}svc{i}", compute, model="bench", version="1"))
        hit_ns = await _timed(n, lambda i: service.get_or_compute(f"{prefix}svc{i}", compute, model="bench", version="1"))

        per_worker = max(1, n // concurrency)

        async def worker(w: int) -> None:
            for i in range(per_worker):
                await service.get_or_compute(f"{prefix}svc{(w * per_worker + i) % n}", compute, model="bench", version="1")

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        hit_throughput = per_worker * concurrency / (time.perf_counter() - t0)
        hits = service.hits.value(model="bench")
    finally:
        await backend.close()
    return {
        "backend": describe(settings),
        "n": n,
        "value_bytes": len(value),
        "set_p50_us": _pct_us(set_ns, 50),
        "set_p99_us": _pct_us(set_ns, 99),
        "get_p50_us": _pct_us(get_ns, 50),
        "get_p99_us": _pct_us(get_ns, 99),
        "hit_p50_us": _pct_us(hit_ns, 50),
        "hit_p99_us": _pct_us(hit_ns, 99),
        "miss_overhead_p50_us": _pct_us(miss_ns, 50),
        "miss_overhead_p99_us": _pct_us(miss_ns, 99),
        "hit_throughput_per_s": round(hit_throughput),
        "concurrency": concurrency,
        "hits_counted": int(hits),
        "method": "wall clock (perf_counter_ns), one process, one event loop",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", help="redis:// URL of a running Redis; default: start a throwaway redis-server")
    parser.add_argument("-n", type=int, default=2000)
    parser.add_argument("--memory-only", action="store_true", help="only the in-process LRU")
    args = parser.parse_args()
    results = [asyncio.run(bench_cache(None, args.n))]
    if not args.memory_only:
        if args.url:
            results.append(asyncio.run(bench_cache(args.url, args.n)))
        else:
            from cache.local_redis import LocalRedis

            with LocalRedis() as server:
                results.append(asyncio.run(bench_cache(server.url, args.n)))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
