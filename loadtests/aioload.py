"""A closed-loop aiohttp load generator: N workers, each sending its next request as the last returns.

Not client-bound on this machine the way httpx is (httpx tops out near 250 req/s here), so it is
what ``make bench`` and the closing notes measure with.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Callable, Mapping

import numpy as np


@dataclass(frozen=True)
class LoadResult:
    requests: int
    errors: int
    status_counts: dict[str, int]
    duration_s: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def measured(cls, latencies: list[float], statuses: dict[str, int], duration_s: float,
                 ok: Callable[[str], bool]) -> "LoadResult":
        """The result of a run: its latencies (ms) and status counts; ``ok`` says which statuses are not errors."""
        n = len(latencies)
        lat = np.array(latencies) if latencies else np.array([float("nan")])
        return cls(
            requests=n,
            errors=sum(v for k, v in statuses.items() if not ok(k)),
            status_counts=statuses,
            duration_s=duration_s,
            requests_per_s=n / duration_s,
            p50_ms=float(np.percentile(lat, 50)),
            p95_ms=float(np.percentile(lat, 95)),
            p99_ms=float(np.percentile(lat, 99)),
        )


async def run_load(
    url: str,
    make_request: Callable[[int], tuple[bytes, dict[str, str]]],
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    on_window: Callable[[str], None] | None = None,
    observe: Callable[[int, Mapping[str, str]], None] | None = None,
    method: str = "POST",
) -> LoadResult:
    """``on_window("start")`` / ``("end")`` run when the measured window opens and closes (to sample
    server CPU time); ``observe(status, headers)`` sees each measured response. ``method="GET"`` sends
    no body (``make_request``'s body is ignored)."""
    import aiohttp

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = 0
    deadline_warm = time.perf_counter() + warmup_s
    deadline = deadline_warm + duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal counter
        while True:
            now = time.perf_counter()
            if now >= deadline:
                return
            counter += 1
            body, headers = make_request(counter)
            t0 = time.perf_counter()
            try:
                async with session.request(method, url, data=body if method != "GET" else None, headers=headers) as resp:
                    await resp.read()
                    status = str(resp.status)
                    if observe is not None and t0 >= deadline_warm:
                        observe(resp.status, resp.headers)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            t1 = time.perf_counter()
            if t0 >= deadline_warm:
                latencies.append((t1 - t0) * 1000)
                statuses[status] = statuses.get(status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    loop = asyncio.get_running_loop()
    if on_window is not None:
        loop.call_at(loop.time() + (deadline_warm - time.perf_counter()), on_window, "start")
        loop.call_at(loop.time() + (deadline - time.perf_counter()), on_window, "end")
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return LoadResult.measured(latencies, statuses, duration_s, ok=lambda status: status.startswith("2"))


def digits_json_request(rows: int = 1, seed: int = 0) -> Callable[[int], tuple[bytes, dict[str, str]]]:
    """Requests carrying real digits images, cycling through the dataset."""
    from sklearn.datasets import load_digits

    x = load_digits().data.astype(np.float32)
    bodies = [
        json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [rows, 64], "data": x[i : i + rows].reshape(-1).tolist()}]}).encode()
        for i in range(0, len(x) - rows, rows)
    ]
    headers = {"content-type": "application/json"}
    return lambda i: (bodies[i % len(bodies)], headers)


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--url", default="http://127.0.0.1:8000/v2/models/digits/infer")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--duration", type=float, default=10)
    a = p.parse_args()
    r = asyncio.run(run_load(a.url, digits_json_request(), a.concurrency, a.duration))
    print(json.dumps(r.to_dict(), indent=2))
