"""``make bench``: wattgate against its peers, same model, same machine, same aiohttp load, one run.

    python -m bench.peers          # digits (+ MiniLM fp32/int8 if built) at concurrency 1, 8, 32, 128
    python -m bench.peers --quick  # concurrency 32 only, 3 s cells (~2-3 minutes)

Per cell: requests/s, p50/p99, the server process tree's CPU-seconds per 1,000 requests and the
*modelled* J per 1,000 requests (see bench.report). Prints the table with ratios to plain
Ray Serve (HAProxy) and Triton, writes ``loadtests/results/bench-<stamp>.json`` and ``.png``.
Plain Ray Serve (HAProxy), Triton and wattgate (cache off) also get digits cells over gRPC
(``rayserve-grpc``, ``triton-grpc``, ``wattgate-grpc``, same server, ``loadtests.grpcload``), compared
with Triton's gRPC and plain Serve's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np

from bench.report import Cell, add_ratios, finish, render_table, text_target, write_json
from bench.settings import BenchSettings
from bench.systems import (
    GRPC_SYSTEMS, LABELS, BenchModel, RunningSystem, discover_models, feature_skip, start_rayserve, start_triton, start_uvicorn,
    start_wattgate,
)
from loadtests.aioload import digits_json_request, run_load
from loadtests.grpcload import digits_grpc_request, run_grpc_load
from loadtests.payloads import SENTENCES, ZipfSampler, digits_images
from loadtests.procs import ProcessTreeCpu
from wattgate.errors import WattgateError

MakeRequest = Callable[[int], tuple[bytes, dict[str, str]]]
JSON = {"content-type": "application/json"}
ZIPF_ITEMS = 100_000  # distinct inputs in the cache cell's catalogue: ~25-60 % hits as the cache warms


def machine() -> str:
    from wattgate.machine import cpu_model

    return f"{platform.node()}: {cpu_model()}, {os.cpu_count()} CPUs, Linux {platform.release()}"


def text_requests(variant: str | None) -> MakeRequest:
    params = {"parameters": {"variant": variant}} if variant else {}
    bodies = [json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [t]}], **params}).encode()
              for t in SENTENCES]
    return lambda i: (bodies[i % len(bodies)], JSON)


def zipf_digits_requests(zipf_s: float, items: int = ZIPF_ITEMS, seed: int = 0) -> MakeRequest:
    """Zipf-drawn inputs over a catalogue of digits images, each item a distinct one-pixel variation."""
    images = digits_images()
    sampler = ZipfSampler(items, zipf_s, seed)

    def make(_: int) -> tuple[bytes, dict[str, str]]:
        k = sampler.draw()
        x = images[k % len(images)].copy()
        round_ = k // len(images)
        if round_:
            x[round_ % 64] = (x[round_ % 64] + round_) % 17
        return json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x.tolist()}]}).encode(), JSON

    return make


def requests_for(system: str, model: BenchModel, s: BenchSettings) -> MakeRequest:
    if model.text:
        return text_requests(model.variant if system.startswith("wattgate") else None)
    if system == "wattgate-cache":
        return zipf_digits_requests(s.zipf_s)
    return digits_json_request(rows=1)


class _Window:
    """Opens and closes the measured window: the server's CPU-seconds and the wall time between."""

    def __init__(self, pid: int) -> None:
        self.cpu = ProcessTreeCpu(pid)
        self.marks: dict[str, float] = {}

    def __call__(self, which: str) -> None:
        if which == "start":
            self.cpu.start()
            self.marks["t0"] = time.perf_counter()
        else:
            self.marks["cpu_s"] = self.cpu.seconds()
            self.marks["t1"] = time.perf_counter()

    def finish(self, cell: Cell, ok: int, s: BenchSettings) -> Cell:
        window = self.marks.get("t1", 0.0) - self.marks.get("t0", 0.0) or s.duration_s
        return finish(cell, ok, window, self.marks.get("cpu_s", float("nan")), os.cpu_count() or 1)


def http_cell(system: str, model: BenchModel, url: str, concurrency: int, pid: int, s: BenchSettings) -> Cell:
    window = _Window(pid)
    cache = Counter()

    def observe(status: int, headers) -> None:
        state = headers.get("x-cache")
        if state:
            cache[state] += 1

    result = asyncio.run(run_load(url, requests_for(system, model, s), concurrency, s.duration_s, s.warmup_s, window, observe))
    cell = Cell(model.label, system, LABELS[system], concurrency, requests=result.requests, errors=result.errors,
                status_counts=result.status_counts, p50_ms=result.p50_ms, p99_ms=result.p99_ms)
    if cache["hit"] + cache["miss"]:
        cell.cache_hit_rate = cache["hit"] / (cache["hit"] + cache["miss"])
    if result.errors:
        cell.notes.append(f"{result.errors} non-2xx responses: {result.status_counts}")
    return window.finish(cell, result.status_counts.get("200", 0), s)


def grpc_cell(system: str, model: BenchModel, target: str, concurrency: int, pid: int, s: BenchSettings,
              app: str | None = None) -> Cell:
    """digits over gRPC ModelInfer (raw tensors), one row per request; ``app``: the Serve application to call."""
    window = _Window(pid)
    make = digits_grpc_request(model.peer_name)
    metadata = (("application", app),) if app else None
    result = asyncio.run(run_grpc_load(target, make, concurrency, s.duration_s, s.warmup_s, window, metadata))
    cell = Cell(model.label, system, LABELS[system], concurrency, requests=result.requests, errors=result.errors,
                status_counts=result.status_counts, p50_ms=result.p50_ms, p99_ms=result.p99_ms)
    if result.errors:
        cell.notes.append(f"{result.errors} non-OK calls: {result.status_counts}")
    return window.finish(cell, result.status_counts.get("OK", 0), s)


def inproc_cells(models: list[BenchModel], s: BenchSettings) -> list[Cell]:
    """The physical limit: ONNX Runtime called in a loop with batches of ``concurrency`` rows, no HTTP."""
    from bench.peer_servers import PeerModel, PeerRunner

    cells = []
    for model in models:
        runner = PeerRunner(PeerModel(**model.peer_spec()))
        images = digits_images()
        for c in s.concurrency:
            def feeds(i: int) -> dict[str, np.ndarray]:
                if model.text:
                    return runner.tokenize([SENTENCES[(i + r) % len(SENTENCES)] for r in range(c)])
                return {"pixels": images[np.arange(i, i + c) % len(images)]}

            end = time.perf_counter() + s.warmup_s
            while time.perf_counter() < end:
                runner.run(feeds(0))
            lat, rows, i = [], 0, 0
            cpu0, t0 = time.process_time(), time.perf_counter()
            while time.perf_counter() - t0 < s.duration_s:
                t = time.perf_counter()
                runner.run(feeds(i))
                lat.append((time.perf_counter() - t) * 1000)
                rows += c
                i += c
            window, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
            cell = Cell(model.label, "ort-inproc", LABELS["ort-inproc"], c, requests=rows, errors=0,
                        p50_ms=float(np.percentile(lat, 50)), p99_ms=float(np.percentile(lat, 99)))
            cell.notes.append("latency is per batch call; CPU is this process's (it also includes tokenising for text)")
            cells.append(finish(cell, rows, window, cpu_s, os.cpu_count() or 1))
    return cells


def _starter(system: str, s: BenchSettings, args) -> Callable[..., RunningSystem]:
    if system == "uvicorn-ort":
        return start_uvicorn
    if system in ("rayserve-default", "rayserve-haproxy"):
        return start_rayserve(system.split("-", 1)[1])
    if system == "triton":
        return start_triton
    if system in ("wattgate", "wattgate-cache", "wattgate-green"):
        start = start_wattgate(system, args.cache_url, args.wattgate_config)
        return lambda models, s, log_dir: start(models, s, log_dir, args.repository)
    raise WattgateError(f"unknown system {system!r}; choose from {', '.join(LABELS)}")


def run_bench(s: BenchSettings, models: list[BenchModel], args) -> list[Cell]:
    log_dir = s.results_dir / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    cells: list[Cell] = []
    for system in s.systems:
        started = time.perf_counter()
        print(f"bench: {system} ...", flush=True)
        if system == "ort-inproc":
            cells += inproc_cells(models, s)
            continue
        skipped = lambda why: [Cell(m.label, system, LABELS[system], c, skipped=why) for m in models for c in s.concurrency]  # noqa: E731
        try:
            running = _starter(system, s, args)(models, s, log_dir)
        except WattgateError as exc:
            print(f"bench: {system} skipped: {exc.message.splitlines()[0]}", flush=True)
            cells += skipped(exc.message.splitlines()[0])
            continue
        try:
            why = feature_skip(system, running.features)
            for model in models:
                reason = why or running.skips.get(model.label)
                for c in s.concurrency:
                    if reason:
                        cells.append(Cell(model.label, system, LABELS[system], c, skipped=reason))
                        continue
                    cell = http_cell(system, model, running.urls[model.label], c, running.pid, s)
                    if running.features:
                        cell.notes.append(f"probe: {running.features}")
                    cells.append(cell)
                    print(f"bench:   {model.label} c={c}: {cell.requests_per_s or 0:,.0f} req/s, p99 {cell.p99_ms:.1f} ms", flush=True)
            if running.grpc_system and not why:
                cells += _grpc_cells(running, [m for m in models if m.label == "digits"], s)
        finally:
            running.stop()
        print(f"bench: {system} done in {time.perf_counter() - started:.0f} s", flush=True)
    return cells


def _grpc_cells(running: RunningSystem, models: list[BenchModel], s: BenchSettings) -> list[Cell]:
    cells = []
    for model in models:
        for c in s.concurrency:
            cell = grpc_cell(running.grpc_system, model, running.grpc_target, c, running.pid, s,
                             model.peer_name if running.grpc_apps else None)
            cells.append(cell)
            print(f"bench:   {model.label} c={c} gRPC: {cell.requests_per_s or 0:,.0f} req/s, p99 {cell.p99_ms:.1f} ms", flush=True)
    return cells


def parse_args(argv=None):
    d = BenchSettings()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="concurrency 32 only, 3 s cells")
    p.add_argument("--concurrency", help=f"comma-separated (default {','.join(map(str, d.concurrency))})")
    p.add_argument("--duration", type=float, help="seconds per cell (default 8, or 4 with MiniLM cells)")
    p.add_argument("--systems", help=f"comma-separated subset of {','.join(d.systems)}")
    p.add_argument("--models", help="comma-separated model labels (default: digits and MiniLM if built)")
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--results-dir", type=Path, default=d.results_dir)
    p.add_argument("--cache-url", help="redis:// URL for the cache-on cell (default: the in-process cache)")
    p.add_argument("--replicas", type=int, help=f"replicas of plain Ray Serve and of wattgate's ingress (default {d.replicas})")
    p.add_argument("--wattgate-config", type=Path, help="base YAML for the wattgate cells")
    p.add_argument("--no-plot", action="store_true")
    return p.parse_args(argv)


def settings_from(args) -> BenchSettings:
    update: dict = {"results_dir": args.results_dir}
    if args.quick:
        update |= {"concurrency": (32,), "duration_s": 3.0, "warmup_s": 1.0}
    if args.concurrency:
        update["concurrency"] = tuple(int(x) for x in args.concurrency.split(","))
    if args.duration:
        update["duration_s"] = args.duration
    if args.replicas:
        update["replicas"] = args.replicas
    if args.systems:
        update["systems"] = tuple(x.strip() for x in args.systems.split(",") if x.strip())
    return BenchSettings(**update)


def _quality(repository: Path, model: str, variant: str) -> str:
    from models.registry import ModelRegistry

    try:
        q = ModelRegistry(repository).show(model).variants[variant].quality
    except Exception:  # a missing model or variant: the ratio still stands, without its quality
        return "unknown"
    return f"mean {q.get('cosine_mean')}, p5 {q.get('cosine_p5')}"


def main(argv=None) -> int:
    from bench.report import ENERGY_METHOD
    from loadtests.plots import plot_bench

    args = parse_args(argv)
    s = settings_from(args)
    startable = [x for x in LABELS if x not in GRPC_SYSTEMS]
    unknown = [x for x in s.systems if x not in startable]
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; choose from {', '.join(startable)} (rayserve-haproxy, triton and wattgate bring their gRPC cells)")
    models = discover_models(args.repository)
    if args.models:
        wanted = {x.strip() for x in args.models.split(",")}
        models = [m for m in models if m.label in wanted]
    if s.duration_s is None:
        s = s.model_copy(update={"duration_s": 8.0 if len(models) == 1 else 4.0})
    started = time.perf_counter()
    cells = run_bench(s, models, args)
    add_ratios(cells)
    where = f"{machine()}; {s.replicas} replica(s) each for plain Ray Serve and wattgate's ingress"
    print(render_table(cells, where))
    target = text_target(cells)
    if target:
        quality = _quality(args.repository, "minilm", "int8")
        print(f"text: wattgate minilm int8 (cosine to fp32 {quality}) / plain Ray Serve minilm fp32 @serve.batch("
              f"{s.max_batch_size}): " + ", ".join(f"{x:.2f}x at concurrency {c}" for c, x in target.items()))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {"text_target_x_naive_fp32": target, "machine": where, "settings": s.model_dump(mode="json"), "energy_method": ENERGY_METHOD,
            "load_generator": "loadtests.aioload (aiohttp, closed loop)", "wall_s": time.perf_counter() - started}
    path = write_json(cells, meta, s.results_dir / f"bench-{stamp}.json")
    png = None if args.no_plot else plot_bench([c.to_dict() for c in cells], s.results_dir / f"bench-{stamp}.png")
    print(f"wrote {path}" + (f" and {png}" if png else "") + f" in {meta['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
