"""Cache hits against misses through a real gateway: the same digits requests, all-hit then all-miss.

    python -m loadtests.bench_cache [--concurrency 32] [--duration 8] [--cache-url redis://...]

Starts wattgate with the cache on (in-process LRU, or Redis with ``--cache-url``), warms N distinct
inputs, then measures a closed-loop aiohttp load that only repeats them (every request a hit) and one
where every request carries a fresh input (every request a miss). Prints one table, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from loadtests.aioload import run_load
from loadtests.bench_systems import ROOT, start_wattgate
from loadtests.settings import BenchSettings


def _body(x: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x.reshape(-1).tolist()}]}).encode()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--cache-url")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--results-dir", type=Path, default=ROOT / "loadtests" / "results")
    args = p.parse_args(argv)
    s = BenchSettings()
    log_dir = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    from loadtests.bench_systems import discover_models

    models = [m for m in discover_models(args.repository) if m.model == "digits"]
    system = start_wattgate("wattgate-cache", args.cache_url)(models, s, log_dir, args.repository)
    url = next(iter(system.urls.values()))
    rng = np.random.default_rng(0)
    warm = [_body(rng.integers(0, 17, (1, 64)).astype(np.float32)) for _ in range(256)]
    headers = {"content-type": "application/json"}
    fresh = iter(_body(x) for x in rng.random((2_000_000, 1, 64), dtype=np.float32) * 16)
    try:
        async def go():
            import aiohttp

            async with aiohttp.ClientSession() as c:
                for b in warm:
                    async with c.post(url, data=b, headers=headers) as r:
                        await r.read()
            hits = await run_load(url, lambda i: (warm[i % len(warm)], headers), args.concurrency, args.duration)
            misses = await run_load(url, lambda i: (next(fresh), headers), args.concurrency, args.duration)
            return hits, misses

        hits, misses = asyncio.run(go())
    finally:
        system.stop()
    rows = {"hit": hits.to_dict(), "miss": misses.to_dict()}
    backend = args.cache_url or "in-process LRU"
    print(f"cache bench: digits, concurrency {args.concurrency}, {args.duration:.0f} s per cell, cache {backend}")
    print(f"{'cell':6} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name, r in rows.items():
        print(f"{name:6} {r['requests_per_s']:8,.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:7d}")
    ratio = hits.requests_per_s / max(misses.requests_per_s, 1e-9)
    print(f"hit / miss throughput: {ratio:.2f}x")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"bench-cache-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"backend": backend, "concurrency": args.concurrency, "cells": rows, "hit_over_miss": ratio}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
