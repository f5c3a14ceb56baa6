"""The cache benchmark: the backend alone, then hits against misses through a gateway, with the floor no hit can beat.

    python -m bench.cache [--concurrency 1,8,32] [--duration 6] [--cache-url redis://...] [-n 2000] [--backend-only]

First the backend alone (the in-process LRU, and Redis too with ``--cache-url``), in one process and
one event loop: p50/p99 of raw get/set, of ``PredictionCacheService.get_or_compute`` hits, and of its
misses (which compute nothing, so they show the cache's own overhead), plus hit throughput with 16
concurrent callers. ``--backend-only`` stops there (no gateway, no model repository needed).

Then it starts wattgate with the cache on (in-process LRU, or Redis with ``--cache-url``) and measures,
with a closed-loop aiohttp load at each concurrency:

- ``floor``: ``GET /v2/health/live`` on the same gateway: HTTP, HAProxy and Ray Serve with no work at
  all. No cache hit can be cheaper, so ``floor / miss`` bounds what a cache can gain on this machine.
- ``digits hit`` / ``digits miss``: N distinct images warmed, then repeated (every request a hit);
  then a fresh image per request (every request a miss: lookup, in-flight marker, model, store).
- ``minilm hit`` / ``minilm miss`` (when the repository has minilm): the same with sentences, where
  the model, not the serving stack, is most of a miss.

Each cell reports req/s, latency and CPU per request: the gateway's process tree (Ray, HAProxy
and the replica) and the load generator's own. Prints the tables, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.settings import BenchSettings
from bench.systems import ROOT, discover_models, start_wattgate
from cache.base import describe, make_cache
from cache.service import PredictionCacheService
from cache.settings import CacheSettings
from cache.values import encode_outputs
from loadtests.aioload import run_load
from loadtests.payloads import SENTENCES
from loadtests.procs import ProcessTreeCpu
from wattgate.metrics import MetricsRegistry
from wattgate.tensors import Tensor

JSON = {"content-type": "application/json"}
Request = Callable[[int], tuple[bytes, dict[str, str]]]


# -- the backend on its own ------------------------------------------------------------------------


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


async def measure_backend(url: str | None, n: int = 2000, *, concurrency: int = 16) -> dict:
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


def backend_table(results: list[dict]) -> str:
    lines = [f"{'backend':40} {'get µs p50/p99':>16} {'set µs p50/p99':>16} {'hit µs p50/p99':>16} "
             f"{'miss overhead µs':>17} {'hits/s':>9}"]
    for r in results:
        lines.append(f"{r['backend']:40} {r['get_p50_us']:>7} / {r['get_p99_us']:<6} {r['set_p50_us']:>7} / {r['set_p99_us']:<6} "
                     f"{r['hit_p50_us']:>7} / {r['hit_p99_us']:<6} {r['miss_overhead_p50_us']:>8} / {r['miss_overhead_p99_us']:<6} "
                     f"{r['hit_throughput_per_s']:>9,}")
    return "\n".join(lines)


# -- through a real gateway -------------------------------------------------------------------------


@dataclass
class CacheCell:
    name: str
    url: str
    make: Request
    method: str = "POST"


def digits_body(x: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x.reshape(-1).tolist()}]}).encode()


def text_body(sentence: str, variant: str) -> bytes:
    return json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [sentence]}],
                       "parameters": {"variant": variant}}).encode()


def cells_for(base: str, minilm_variant: str | None, warm_n: int = 256) -> tuple[list[CacheCell], list[tuple[str, bytes]]]:
    """The cells, and the (url, body) pairs to send once beforehand so that the hit cells only hit."""
    rng = np.random.default_rng(0)
    digits_url = f"{base}/v2/models/digits/infer"
    warm = [digits_body(rng.integers(0, 17, (1, 64)).astype(np.float32)) for _ in range(warm_n)]
    # Fresh images: integer pixels like the warm ones (same parse cost), never repeated in a run.
    fresh = (digits_body(x) for x in (rng.integers(0, 17, (1, 64)).astype(np.float32) for _ in itertools.count()))
    cells = [
        CacheCell("floor", f"{base}/v2/health/live", lambda i: (b"", {}), "GET"),
        CacheCell("digits hit", digits_url, lambda i: (warm[i % len(warm)], JSON)),
        CacheCell("digits miss", digits_url, lambda i: (next(fresh), JSON)),
    ]
    warm_text: list[bytes] = []
    if minilm_variant:
        text_url = f"{base}/v2/models/minilm/infer"
        warm_text = [text_body(s, minilm_variant) for s in SENTENCES]
        # A miss: a real sentence made unique by a counter, so every request runs the model.
        counter = itertools.count()
        cells += [
            CacheCell("minilm hit", text_url, lambda i: (warm_text[i % len(warm_text)], JSON)),
            CacheCell("minilm miss", text_url, lambda i: (
                text_body(f"{SENTENCES[i % len(SENTENCES)]} ({next(counter)})", minilm_variant), JSON)),
        ]
    return cells, [(digits_url, b) for b in warm] + [(f"{base}/v2/models/minilm/infer", b) for b in warm_text]


async def measure(cell: CacheCell, server_pid: int, concurrency: int, duration_s: float) -> dict:
    server = ProcessTreeCpu(server_pid)
    marks: dict[str, float] = {}

    def on_window(which: str) -> None:
        if which == "start":
            server.start()
            marks["client0"] = time.process_time()
        else:
            marks["server_s"] = server.seconds()
            marks["client_s"] = time.process_time() - marks["client0"]

    r = await run_load(cell.url, cell.make, concurrency, duration_s, on_window=on_window, method=cell.method)
    n = max(r.requests, 1)
    return {**r.to_dict(), "server_cpu_us_per_request": marks.get("server_s", float("nan")) / n * 1e6,
            "client_cpu_us_per_request": marks.get("client_s", float("nan")) / n * 1e6}


def hit_over_miss(rows: dict[tuple[str, int], dict]) -> dict[str, dict[int, dict[str, float]]]:
    """Per model and concurrency: hit / miss throughput, and floor / miss (the most any cache could give)."""
    out: dict[str, dict[int, dict[str, float]]] = {}
    for (name, n), hit in rows.items():
        model, _, kind = name.partition(" ")
        miss, floor = rows.get((f"{model} miss", n)), rows.get(("floor", n))
        if kind != "hit" or not miss or not miss["requests_per_s"]:
            continue
        out.setdefault(model, {})[n] = {
            "hit_over_miss": hit["requests_per_s"] / miss["requests_per_s"],
            "floor_over_miss": floor["requests_per_s"] / miss["requests_per_s"] if floor else float("nan"),
        }
    return out


def measure_gateway(args, levels: list[int]) -> dict[tuple[str, int], dict]:
    models = discover_models(args.repository)
    has_minilm = any(m.model == "minilm" for m in models)
    log_dir = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    system = start_wattgate("wattgate-cache", args.cache_url)(models, BenchSettings(), log_dir, args.repository)
    base = next(iter(system.urls.values())).split("/v2/")[0]
    cells, warm = cells_for(base, args.minilm_variant if has_minilm else None)
    try:
        async def go() -> dict[tuple[str, int], dict]:
            import aiohttp

            async with aiohttp.ClientSession() as c:
                for url, body in warm:
                    async with c.post(url, data=body, headers=JSON) as resp:
                        await resp.read()
            return {(c.name, n): await measure(c, system.server.pid, n, args.duration) for n in levels for c in cells}

        return asyncio.run(go())
    finally:
        system.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--concurrency", default="1,8,32", help="comma-separated")
    p.add_argument("--duration", type=float, default=6.0)
    p.add_argument("--cache-url", help="redis:// URL of a running Redis (default: the in-process LRU only)")
    p.add_argument("--minilm-variant", default="int8", help="'' to skip the minilm cells")
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--results-dir", type=Path, default=ROOT / "loadtests" / "results")
    p.add_argument("-n", type=int, default=2000, help="operations per backend measurement")
    p.add_argument("--backend-only", action="store_true", help="only the backend on its own, no gateway")
    args = p.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    backends = [asyncio.run(measure_backend(url, args.n)) for url in (None, *([args.cache_url] if args.cache_url else []))]
    print(f"cache backends: {args.n} operations each, one process, one event loop")
    print(backend_table(backends))
    rows = {} if args.backend_only else measure_gateway(args, levels)
    backend = args.cache_url or "in-process LRU"
    ratios = hit_over_miss(rows)
    if rows:
        print(f"cache bench: {args.duration:.0f} s per cell, cache {backend}")
        print(f"{'cell':12} {'conc':>4} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'server µs/req':>14} {'client µs/req':>14}")
        for (name, n), r in rows.items():
            print(f"{name:12} {n:4d} {r['requests_per_s']:8,.0f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['errors']:7d} "
                  f"{r['server_cpu_us_per_request']:14,.0f} {r['client_cpu_us_per_request']:14,.0f}")
        for model, by_level in ratios.items():
            print(f"{model}: hit / miss throughput " + ", ".join(
                f"{x['hit_over_miss']:.2f}x at concurrency {n} (ceiling floor / miss {x['floor_over_miss']:.2f}x)" for n, x in by_level.items()))
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"bench-cache-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"backend": backend, "concurrency": levels, "duration_s": args.duration,
                               "method": "closed-loop aiohttp on loopback; CPU from /proc (psutil) over the measured window",
                               "cells": [{"cell": name, "concurrency": n, **r} for (name, n), r in rows.items()],
                               "ratios": ratios, "backends": backends}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
