"""The data plane's own cost per request, in-process: no Ray, no HTTP server, no load generator.

    python -m bench.hotpath                  # digits, cache off and cache hits, concurrency 32
    python -m bench.hotpath --profile 25     # and the top functions by own time (cProfile)
    python -m bench.hotpath --cases grpc     # cache off through the gRPC front end (gateway/grpc_api.py)

For each case it prints CPU microseconds per request (``time.process_time``: best and median of
``--rounds``), requests/s, and Python function calls per request counted by cProfile. The call count
does not move with the machine's load, so it compares two versions of the code even on a shared
host where CPU time does not. This is what guided issue 18's cuts (README "Benchmarks"); the
throughput that users see comes from ``make bench``, where Ray Serve and HAProxy add their own cost.
Writes ``loadtests/results/hotpath-<stamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import statistics
import tempfile
import time
from pathlib import Path


from bench.systems import ROOT


def _bodies(n: int) -> list[bytes]:
    from loadtests.aioload import digits_json_request

    make = digits_json_request()
    return [make(i)[0] for i in range(n)]


def build(repository: Path, cache: bool, state: Path):
    from serving.assembly import build_data_plane
    from wattgate.settings import load_settings

    settings = load_settings(None, models={"repository": str(repository),
                                           "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.0}},
                             server={"state_dir": str(state)}, intensity={"provider": "static"}, cache={"enabled": cache})
    parts = build_data_plane(settings)
    parts.mark_ready()
    return parts


class _GrpcContext:
    """What Serve's gRPC context gives ``GrpcApi.call``: metadata, the peer, and where errors go."""

    def invocation_metadata(self):
        return (("user-agent", "grpc-python/hotpath"),)

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def set_code(self, code) -> None:
        raise RuntimeError(f"gRPC call failed: {code}")

    set_details = set_trailing_metadata = set_code


def _rest_calls(parts, n: int):
    bodies = _bodies(n)
    headers = {"content-type": "application/json"}
    return lambda i: parts.dataplane.infer("digits", None, bodies[i % n], headers)


def _grpc_calls(parts, n: int):
    """``GrpcApi.call`` as Serve's ingress method makes it, with messages decoded up front (Serve's server does that)."""
    from tritonclient.grpc import service_pb2 as pb

    from gateway.admin import AdminApi
    from gateway.grpc_api import GrpcApi
    from loadtests.grpcload import digits_grpc_request

    api = GrpcApi(parts.dataplane, AdminApi(parts.host.registry, parts.host))
    make = digits_grpc_request()
    messages = [pb.ModelInferRequest.FromString(make(i)) for i in range(n)]
    context = _GrpcContext()
    return lambda i: api.call("ModelInfer", messages[i % n], context)


async def _drive(call, distinct: int, requests: int, concurrency: int) -> None:
    async def worker(k: int) -> None:
        for i in range(requests // concurrency):
            await call((k * requests // concurrency + i) % distinct)

    await asyncio.gather(*(worker(k) for k in range(concurrency)))


def measure(case: str, repository: Path, requests: int, concurrency: int, rounds: int, profile_top: int) -> dict:
    hits = case == "cache-hit"
    with tempfile.TemporaryDirectory(prefix="wattgate-hotpath-") as state:
        parts = build(repository, hits, Path(state))
        try:
            distinct = 64 if hits else 1000  # hits: a small set, all warmed first
            call = (_grpc_calls if case == "grpc" else _rest_calls)(parts, distinct)
            asyncio.run(_drive(call, distinct, max(requests // 4, distinct), concurrency))  # warm-up
            cpu_us, rps = [], []
            for _ in range(rounds):
                t0, c0 = time.perf_counter(), time.process_time()
                asyncio.run(_drive(call, distinct, requests, concurrency))
                cpu_us.append((time.process_time() - c0) / requests * 1e6)
                rps.append(requests / (time.perf_counter() - t0))
            prof = cProfile.Profile()
            prof.enable()
            asyncio.run(_drive(call, distinct, requests, concurrency))
            prof.disable()
        finally:
            parts.close()
    stats = pstats.Stats(prof)
    out = {"case": case, "requests": requests, "concurrency": concurrency,
           "cpu_us_per_request_best": min(cpu_us), "cpu_us_per_request_median": statistics.median(cpu_us),
           "requests_per_s_median": statistics.median(rps),
           "python_calls_per_request": stats.total_calls / requests}
    if profile_top:
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(profile_top)
        out["profile"] = text.getvalue()
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--cases", default="cache-off,cache-hit,grpc", help="cache-off, cache-hit (REST) and grpc (cache off)")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N functions by own time")
    p.add_argument("--results-dir", type=Path, default=ROOT / "loadtests" / "results")
    args = p.parse_args(argv)
    if not (args.repository / "digits").is_dir():
        raise SystemExit(f"no digits model in {args.repository}: run `make serve` once or `python -m models.digits`")
    results = [measure(c, args.repository, args.requests, args.concurrency, args.rounds, args.profile)
               for c in args.cases.split(",")]
    print(f"data plane per request, in-process, digits, concurrency {args.concurrency}, {args.requests} requests x {args.rounds}")
    print(f"{'case':10}  {'CPU µs best':>11}  {'CPU µs median':>13}  {'req/s':>7}  {'Python calls':>12}")
    for r in results:
        print(f"{r['case']:10}  {r['cpu_us_per_request_best']:11.0f}  {r['cpu_us_per_request_median']:13.0f}  "
              f"{r['requests_per_s_median']:7.0f}  {r['python_calls_per_request']:12.0f}")
    for r in results:
        if "profile" in r:
            print(f"\n-- {r['case']}: top functions by own time (cProfile)\n{r.pop('profile')}")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"hotpath-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"cells": results}, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
