"""The energy figures an auditor asks about, measured through a real gateway (cache on, digits):

    python -m bench.energy_check [--repository model_repository] [--repeats 5] [--load-s 6]

- the start-up account, and the first request after the replica is ready;
- a lone request after 1 s of idle time: idle vs active joules (repeated: mean, min, max);
- energy avoided per cache hit at low load and under load, against the active energy of a miss;
- conservation over the whole run from /metrics: Σ active + Σ idle + start-up + written off +
  pending against metered.

Energy is the CPU-time model's (modelled: CCF aws-x86 per-vCPU watts), as on any machine without
RAPL or NVML. Prints a table and writes JSON to the bench's results folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx
import numpy as np

from bench.settings import BenchSettings
from bench.systems import discover_models, start_wattgate
from loadtests.aioload import run_load
from loadtests.scrape import ENERGY, MetricsDelta, scrape

JSON = {"content-type": "application/json"}


def _body(value: float, rid: str | None = None) -> bytes:
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [value] * 64}]}
    if rid:
        doc["id"] = rid
    return json.dumps(doc).encode()


def _total(after: dict, name: str, before: dict | None = None, **match: str) -> float:
    """Sum of ``name``'s series matching ``match`` (what changed since ``before``, when given); 0 if absent."""
    return MetricsDelta(before or {}, after).total(name, **match) or 0.0


def _spread(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values), "n": len(values)}


def measure(url: str, base: str, repeats: int, load_s: float) -> dict:
    client = httpx.Client(timeout=30, headers=JSON)
    infer = lambda v: client.post(url, content=_body(v)).json()["parameters"]  # noqa: E731
    out: dict = {"energy_method": "cpu-time-model (modelled: CCF aws-x86, 0.74 W idle / 3.5 W max per vCPU)"}
    out["startup_j"] = _total(scrape(base), "wattgate_startup_energy_joules_total")
    first = infer(0.5)
    out["first_request"] = {k: first[k] for k in ("energy_j", "energy_active_j", "energy_idle_j")}
    lone = []
    for i in range(repeats):
        time.sleep(1.0)
        lone.append(infer(1000.0 + i))
    out["lone_after_1s_idle"] = {k: _spread([p[k] for p in lone]) for k in ("energy_j", "energy_active_j", "energy_idle_j")}

    # Low load: 20 misses 0.2 s apart, then each again (hits) 0.2 s apart.
    misses = []
    for i in range(20):
        misses.append(infer(2000.0 + i))
        time.sleep(0.2)
    before = scrape(base)
    hits = []
    for i in range(20):
        hits.append(infer(2000.0 + i))
        time.sleep(0.2)
    avoided = _total(scrape(base), "wattgate_energy_avoided_joules_total", before)
    assert {h["cache"] for h in hits} == {"hit"}
    out["low_load"] = {
        "miss_active_j": _spread([p["energy_active_j"] for p in misses]),
        "hit_energy_j": _spread([p["energy_j"] for p in hits]),
        "avoided_per_hit_j": avoided / len(hits),
    }

    # Under load: c=16 closed loop, fresh inputs (misses), then a small set repeated (hits).
    rng = np.random.default_rng(0)
    fresh = lambda i: (_body(float(rng.integers(0, 1 << 30)), f"load-miss-{i}"), JSON)  # noqa: E731
    m1 = scrape(base)
    miss_run = asyncio.run(run_load(url, fresh, 16, load_s))
    m2 = scrape(base)
    n_miss = _total(m2, "wattgate_requests_total", m1)
    warm = [client.post(url, content=_body(3000.0 + i)) for i in range(32)]  # noqa: F841
    m3 = scrape(base)
    hit_run = asyncio.run(run_load(url, lambda i: (_body(3000.0 + i % 32), JSON), 16, load_s))
    m4 = scrape(base)
    n_hit = _total(m4, "wattgate_requests_total", m3)
    out["under_load_c16"] = {
        "miss_rps": miss_run.requests_per_s, "hit_rps": hit_run.requests_per_s,
        "miss_active_j_per_request": _total(m2, ENERGY, m1, kind="active") / n_miss,
        "miss_idle_j_per_request": _total(m2, ENERGY, m1, kind="idle") / n_miss,
        "hit_energy_j_per_request": _total(m4, ENERGY, m3) / n_hit,
        "avoided_per_hit_j": _total(m4, "wattgate_energy_avoided_joules_total", m3) / n_hit,
    }
    end = scrape(base)
    metered = _total(end, "wattgate_metered_energy_joules_total")
    booked = sum(_total(end, name) for name in (
        ENERGY, "wattgate_startup_energy_joules_total", "wattgate_unattributed_energy_joules_total",
        "wattgate_pending_energy_joules"))
    out["conservation"] = {"metered_j": metered, "booked_j": booked, "booked_over_metered": booked / metered}
    return out


def _print(r: dict) -> None:
    f = lambda x: f"{x * 1000:.3f} mJ"  # noqa: E731
    print(f"energy: {r['energy_method']}")
    print(f"start-up (booked to no request): {r['startup_j']:.3f} J")
    fr = r["first_request"]
    print(f"first request after ready: {f(fr['energy_j'])} (active {f(fr['energy_active_j'])}, idle {f(fr['energy_idle_j'])})")
    lone = r["lone_after_1s_idle"]
    print(f"lone request after 1 s idle, n={lone['energy_j']['n']}: idle mean {f(lone['energy_idle_j']['mean'])} "
          f"[{f(lone['energy_idle_j']['min'])}, {f(lone['energy_idle_j']['max'])}], active mean {f(lone['energy_active_j']['mean'])} "
          f"[{f(lone['energy_active_j']['min'])}, {f(lone['energy_active_j']['max'])}]")
    low = r["low_load"]
    print(f"low load (5 req/s): miss active mean {f(low['miss_active_j']['mean'])}; hit cost mean {f(low['hit_energy_j']['mean'])}; "
          f"avoided per hit {f(low['avoided_per_hit_j'])}")
    ul = r["under_load_c16"]
    print(f"under load (c=16): misses {ul['miss_rps']:.0f} req/s, active {f(ul['miss_active_j_per_request'])} + idle "
          f"{f(ul['miss_idle_j_per_request'])} per request; hits {ul['hit_rps']:.0f} req/s, {f(ul['hit_energy_j_per_request'])} "
          f"per hit; avoided per hit {f(ul['avoided_per_hit_j'])}")
    c = r["conservation"]
    print(f"conservation: booked {c['booked_j']:.3f} J of metered {c['metered_j']:.3f} J ({c['booked_over_metered']:.4f})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--load-s", type=float, default=6.0)
    args = p.parse_args(argv)
    s = BenchSettings()
    s.results_dir.mkdir(parents=True, exist_ok=True)
    models = [m for m in discover_models(args.repository) if m.label == "digits"]
    system = start_wattgate("wattgate-cache")(models, s, s.results_dir, args.repository)
    try:
        url = system.urls["digits"]
        result = measure(url, url.split("/v2/")[0], args.repeats, args.load_s)
    finally:
        system.stop()
    _print(result)
    out = s.results_dir / f"energy-check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
