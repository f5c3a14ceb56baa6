"""One load-test report from locust's CSVs, two ``/metrics`` scrapes, the energy ledger and response tallies.

Each figure names its source. Energy comes from the ledger when it has the run's rows (one per
request, durable), else from ``/metrics`` counters, else from the responses' own ``energy_j``; the
cache hit rate from ``/metrics``, else the ledger, else responses. A figure with no source is None,
never zero.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from loadtests import scrape
from loadtests.locust_csv import aggregated, read_failures, read_history, read_stats
from loadtests.scrape import MetricsDelta


@dataclass(frozen=True)
class LedgerSummary:
    """The ledger rows written during the run (time_s within its window)."""

    requests: int
    energy_j: float
    carbon_g: float
    by_pool: dict[str, int]
    by_cache: dict[str, int]
    methods: dict[str, int]
    buckets: list[tuple[int, int, float]]  # (bucket start unix s, requests, energy_j)


def read_ledger(path: str | Path, since_s: float, until_s: float, bucket_s: float = 1.0) -> LedgerSummary | None:
    """None when there is no ledger file or it has no rows in the window (never creates one)."""
    path = Path(path)
    if not path.exists():
        return None
    from energy.ledger import EnergyLedger

    ledger = EnergyLedger(path, background=False)
    try:
        n, energy, carbon = 0, 0.0, 0.0
        pools, caches, methods = Counter(), Counter(), Counter()
        buckets: dict[int, list[float]] = {}
        for chunk in ledger.iter_records(since_s=since_s):
            for r in chunk:
                if r.time_s > until_s:
                    continue
                n += 1
                energy += r.energy_j
                carbon += r.carbon_g
                pools[r.pool] += 1
                caches[r.cache] += 1
                methods[r.energy_method] += 1
                b = buckets.setdefault(int(r.time_s // bucket_s * bucket_s), [0, 0.0])
                b[0] += 1
                b[1] += r.energy_j
    finally:
        ledger.close()
    if n == 0:
        return None
    return LedgerSummary(n, energy, carbon, dict(pools), dict(caches), dict(methods),
                         [(t, int(v[0]), v[1]) for t, v in sorted(buckets.items())])


@dataclass(frozen=True)
class LoadReport:
    scenario: str
    url: str
    users: int
    started_at_s: float
    duration_s: float
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    error_rate: float
    cache_hit_rate: float | None
    j_per_1k: float | None
    g_per_1k: float | None
    pool_share: dict[str, float]
    energy_methods: dict[str, int]
    sources: dict[str, str | None]
    # The same run counted four ways: locust's successes, ledger rows, /metrics requests, tallied responses.
    cross_check: dict[str, float | None] = field(default_factory=dict)
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    failure_kinds: list[dict[str, str]] = field(default_factory=list)
    timeseries: list[dict[str, float | None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def values(self) -> dict[str, float | None]:
        """The gateable figures, by the names ``--fail-on`` uses."""
        return {k: getattr(self, k) for k in ("requests_per_s", "p50_ms", "p95_ms", "p99_ms", "error_rate", "cache_hit_rate", "j_per_1k", "g_per_1k")}

    def to_dict(self) -> dict[str, Any]:
        return _finite(asdict(self))


def _finite(obj):
    """JSON has no NaN: missing latencies become null."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def build_report(
    *, prefix: str | Path, scenario: str, url: str, users: int, started_at_s: float, ended_at_s: float,
    metrics: MetricsDelta, ledger: LedgerSummary | None, tally: dict | None,
) -> LoadReport:
    rows = read_stats(prefix)
    total = aggregated(rows)
    tally = tally or {}
    sources: dict[str, str | None] = {"latency": "locust"}
    notes: list[str] = []

    # Energy and carbon per 1,000 requests.
    j_per_1k = g_per_1k = None
    methods: dict[str, int] = {}
    m_req, m_energy, m_carbon = (metrics.total(n) for n in (scrape.REQUESTS, scrape.ENERGY, scrape.CARBON))
    if ledger is not None:
        j_per_1k = 1000 * ledger.energy_j / ledger.requests
        g_per_1k = 1000 * ledger.carbon_g / ledger.requests
        methods, sources["energy"] = ledger.methods, "ledger"
    elif m_req and m_energy is not None:
        j_per_1k = 1000 * m_energy / m_req
        g_per_1k = 1000 * m_carbon / m_req if m_carbon is not None else None
        methods, sources["energy"] = tally.get("counts", {}).get("energy_method", {}), "/metrics"
    elif tally.get("with_energy"):
        j_per_1k = 1000 * tally["energy_j"] / tally["with_energy"]
        g_per_1k = 1000 * tally["carbon_g"] / tally["with_carbon"] if tally.get("with_carbon") else None
        methods, sources["energy"] = tally["counts"].get("energy_method", {}), "responses"
    else:
        sources["energy"] = None
        notes.append("no energy figures: the ledger had no rows for this run, /metrics no energy counters, responses no energy_j")

    # Cache hit rate: hits / (hits + misses); bypassed and uncached requests are neither.
    hits, misses = metrics.total(scrape.CACHE_HITS), metrics.total(scrape.CACHE_MISSES)
    cache_counts = (ledger.by_cache if ledger else None) or tally.get("counts", {}).get("cache", {})
    cache_hit_rate = None
    if hits is not None and misses is not None and hits + misses > 0:
        cache_hit_rate, sources["cache"] = hits / (hits + misses), "/metrics"
    elif cache_counts.get("hit", 0) + cache_counts.get("miss", 0) > 0:
        cache_hit_rate = cache_counts.get("hit", 0) / (cache_counts.get("hit", 0) + cache_counts.get("miss", 0))
        sources["cache"] = "ledger" if ledger else "responses"
    else:
        sources["cache"] = None
        if cache_counts:
            notes.append(f"cache never consulted (cache states seen: {', '.join(sorted(cache_counts))})")

    pools = (ledger.by_pool if ledger else None) or tally.get("counts", {}).get("pool", {})
    n_pools = sum(pools.values())
    pool_share = {k: v / n_pools for k, v in sorted(pools.items())} if n_pools else {}
    sources["pool"] = ("ledger" if ledger else "responses") if n_pools else None

    return LoadReport(
        scenario=scenario, url=url, users=users, started_at_s=started_at_s, duration_s=ended_at_s - started_at_s,
        requests=total.requests, failures=total.failures, requests_per_s=total.requests_per_s,
        p50_ms=total.p50_ms, p95_ms=total.p95_ms, p99_ms=total.p99_ms,
        error_rate=total.failures / total.requests if total.requests else math.nan,
        cache_hit_rate=cache_hit_rate, j_per_1k=j_per_1k, g_per_1k=g_per_1k, pool_share=pool_share,
        energy_methods=methods, sources=sources,
        cross_check={"locust_ok": total.requests - total.failures, "ledger_rows": ledger.requests if ledger else None,
                     "metrics_requests": m_req, "tallied_responses": tally.get("responses")},
        endpoints=[asdict(r) for r in rows if r.name != "Aggregated"],
        failure_kinds=read_failures(prefix),
        timeseries=_timeseries(prefix, ledger, tally),
        notes=notes,
    )


def _timeseries(prefix, ledger: LedgerSummary | None, tally: dict) -> list[dict[str, float | None]]:
    """Per second: users (locust), requests/s and latency (the locustfile's per-second tally, else
    locust's history, whose percentiles trail over a 10 s window) and J/1k (ledger, else responses)."""
    if ledger is not None:
        energy = {t: (n, e) for t, n, e in ledger.buckets}
    else:
        energy = {int(t): (int(with_e), e) for t, _, with_e, e in tally.get("buckets", []) if with_e}
    history = read_history(prefix)
    users = {int(p.time_s): p.users for p in history}
    points = tally.get("per_second") or [
        {"time_s": p.time_s, "requests_per_s": p.requests_per_s, "p50_ms": p.p50_ms, "p95_ms": p.p95_ms, "p99_ms": p.p99_ms}
        for p in history
    ]
    out = []
    last_users = 0
    for p in points:
        t = int(p["time_s"])
        last_users = users.get(t, last_users)
        n, e = energy.get(t, (0, 0.0))
        out.append({"time_s": p["time_s"], "users": last_users, "requests_per_s": p["requests_per_s"],
                    "p50_ms": p["p50_ms"], "p95_ms": p["p95_ms"], "p99_ms": p["p99_ms"],
                    "j_per_1k": 1000 * e / n if n else None})
    return out


def _fmt(v: float | None, spec: str, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:{spec}}{unit}"


def render_table(r: LoadReport) -> str:
    methods = ", ".join(f"{m}" for m in sorted(r.energy_methods)) or "-"
    pools = ", ".join(f"{k} {100 * v:.1f} %" for k, v in r.pool_share.items()) or "n/a"
    rows = [
        ("requests/s", _fmt(r.requests_per_s, ",.1f"), f"locust, {r.requests:,} requests in {r.duration_s:.0f} s"),
        ("latency p50 / p95 / p99", f"{_fmt(r.p50_ms, '.0f')} / {_fmt(r.p95_ms, '.0f')} / {_fmt(r.p99_ms, '.0f')} ms", "locust"),
        ("error rate", _fmt(None if math.isnan(r.error_rate) else 100 * r.error_rate, ".2f", " %"), f"locust, {r.failures:,} failed"),
        ("cache hit rate", _fmt(None if r.cache_hit_rate is None else 100 * r.cache_hit_rate, ".1f", " %"), r.sources.get("cache") or "-"),
        ("J / 1,000 requests", _fmt(r.j_per_1k, ".4g"), f"{r.sources.get('energy') or '-'}; method: {methods}"),
        ("gCO2e / 1,000 requests", _fmt(r.g_per_1k, ".4g"), r.sources.get("energy") or "-"),
        ("share by pool", pools, r.sources.get("pool") or "-"),
    ]
    w0 = max(len(a) for a, _, _ in rows)
    w1 = max(len(b) for _, b, _ in rows)
    head = f"wattgate load test: {r.scenario}, {r.users} users, {r.duration_s:.0f} s, {r.url}"
    lines = [head, f"{'metric':<{w0}}  {'value':>{w1}}  source", f"{'-' * w0}  {'-' * w1}  {'-' * 6}"]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def write_json(report: LoadReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_dict(), indent=2))
    return path
