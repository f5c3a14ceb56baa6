"""The built-in dashboard's data: time series derived from successive metrics snapshots.

:class:`DashboardHistory` keeps, for up to ``max_age_s``, a small reduction of each (gateway-wide,
merged) snapshot it is given, and answers :class:`DashboardQuery` with per-interval figures: J and
gCO2e per 1,000 requests per model/variant/pool, grid intensity per region (plus the provider's
forecast), traffic share per pool, requests per route kind, cache hit rate and energy avoided, SLO
attainment and p99 per model, carbon budget use and the anomalies now open. No HTTP: the gateway
(``gateway/dashboard.py``) parses the query and serves the page.

The query has a ``tenant`` field, unused until tenants exist (issue 16): a tenant's view will filter
the request-level families by a ``tenant`` label; today a tenant filter is refused.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable

from serving.tenant_sink import ANONYMOUS_LABEL, OTHER_LABEL
from tenants.keys import check_tenant
from wattgate.errors import BadRequest

MAX_WINDOW_S = 3600.0
# Pool replicas and idle energy per pool (wattgate_pool_replicas, wattgate_idle_energy_joules_total)
# are not exported yet; their panel is listed empty under this name until they are.
POOL_PANEL = "pool_replicas_idle"
# Panels of the whole gateway that no tenant label splits: an operator's only.
OPERATOR_ONLY = ("cache_hit_rate", "energy_avoided", POOL_PANEL)


@dataclass(frozen=True)
class DashboardQuery:
    window_s: float = 300.0
    tenant: str | None = None  # that tenant's view; None: the whole gateway's

    @classmethod
    def parse(cls, params: dict[str, list[str]]) -> "DashboardQuery":
        unknown = set(params) - {"window", "tenant"}
        if unknown:
            raise BadRequest(f"unknown dashboard parameters {sorted(unknown)}; known: window, tenant")
        window = params.get("window", ["300"])
        try:
            window_s = float(window[-1])
        except ValueError:
            raise BadRequest(f"window must be a number of seconds, got {window[-1]!r}") from None
        if not (math.isfinite(window_s) and 10 <= window_s <= MAX_WINDOW_S):
            raise BadRequest(f"window must be between 10 and {MAX_WINDOW_S:g} s, got {window[-1]!r}")
        tenant = params.get("tenant", [None])[-1]
        if tenant is not None:
            try:
                check_tenant(tenant)
            except BadRequest:
                raise BadRequest("tenant must be a tenant name (1-64 characters of [A-Za-z0-9_.-])") from None
        return cls(window_s, tenant)


def _sum_by(snapshot: dict, name: str, keep: tuple[str, ...]) -> dict[tuple, Any]:
    """A family's series summed over every label not in ``keep`` (histograms: bucket-wise)."""
    fam = snapshot.get(name)
    if fam is None:
        return {}
    idx = [fam["labels"].index(k) for k in keep]
    out: dict[tuple, Any] = {}
    for labels, value in fam["series"]:
        key = tuple(labels[i] for i in idx)
        if isinstance(value, list):
            prev = out.get(key)
            out[key] = list(value) if prev is None else [a + b for a, b in zip(prev, value)]
        else:
            out[key] = out.get(key, 0.0) + value
    return out


def reduce_snapshot(snapshot: dict) -> dict[str, Any]:
    """What the dashboard keeps of a snapshot (a few hundred numbers, not the whole text)."""
    latency = snapshot.get("wattgate_request_latency_seconds", {})
    return {
        "requests": _sum_by(snapshot, "wattgate_pool_requests_total", ("model", "variant", "pool")),
        "energy": _sum_by(snapshot, "wattgate_pool_energy_joules_total", ("model", "variant", "pool")),
        "carbon": _sum_by(snapshot, "wattgate_pool_carbon_grams_total", ("model", "variant", "pool")),
        "pool_requests": _sum_by(snapshot, "wattgate_pool_requests_total", ("pool",)),
        "routes": _sum_by(snapshot, "wattgate_pool_requests_total", ("route",)),
        "hits": _sum_by(snapshot, "wattgate_cache_hits_total", ("model",)),
        "misses": _sum_by(snapshot, "wattgate_cache_misses_total", ("model",)),
        "bypass": _sum_by(snapshot, "wattgate_cache_bypass_total", ("model",)),
        "avoided": _sum_by(snapshot, "wattgate_energy_avoided_joules_total", ("model",)),
        "slo": _sum_by(snapshot, "wattgate_slo_requests_total", ("model", "slo")),
        "latency": _sum_by(snapshot, "wattgate_request_latency_seconds", ("model",)),
        "latency_buckets": list(latency.get("buckets", [])),
        "intensity": _sum_by(snapshot, "wattgate_intensity_g_per_kwh", ("region",)),
        "budget": _sum_by(snapshot, "wattgate_carbon_budget_used_ratio", ("scope", "name")),
        "anomaly": _sum_by(snapshot, "wattgate_energy_anomaly", ("model", "variant", "pool")),
        "pool_replicas": _sum_by(snapshot, "wattgate_pool_replicas", ("pool",)),
        "pool_idle": _sum_by(snapshot, "wattgate_idle_energy_joules_total", ("pool",)),
        # Per tenant: what a tenant's view is built from, and the operators' per-tenant panel.
        "tenant_totals": {
            "requests": _sum_by(snapshot, "wattgate_tenant_requests_total", ("tenant",)),
            "energy": _sum_by(snapshot, "wattgate_tenant_energy_joules_total", ("tenant",)),
        },
        "key_budget": _sum_by(snapshot, "wattgate_budget_used_ratio", ("tenant",)),
        "tenant": {
            "requests": _sum_by(snapshot, "wattgate_tenant_pool_requests_total", ("tenant", "model", "variant", "pool")),
            "energy": _sum_by(snapshot, "wattgate_tenant_pool_energy_joules_total", ("tenant", "model", "variant", "pool")),
            "carbon": _sum_by(snapshot, "wattgate_tenant_pool_carbon_grams_total", ("tenant", "model", "variant", "pool")),
            "pool_requests": _sum_by(snapshot, "wattgate_tenant_pool_requests_total", ("tenant", "pool")),
            "routes": _sum_by(snapshot, "wattgate_tenant_pool_requests_total", ("tenant", "route")),
            "slo": _sum_by(snapshot, "wattgate_tenant_slo_requests_total", ("tenant", "model", "slo")),
            "latency": _sum_by(snapshot, "wattgate_tenant_request_latency_seconds", ("tenant", "model")),
            "latency_buckets": list(snapshot.get("wattgate_tenant_request_latency_seconds", {}).get("buckets", [])),
        },
    }


def tenant_view(reduced: dict[str, Any], tenant: str) -> dict[str, Any]:
    """One tenant's share of a reduced snapshot, in the same shape: its own series under the keys the
    panels read, the public grid intensity, and nothing of any other tenant or of the shared parts."""
    t = reduced.get("tenant", {})

    def own(family: dict) -> dict:
        return {k[1:]: v for k, v in family.items() if k[0] == tenant}

    budget = {k: v for k, v in reduced.get("budget", {}).items() if k == ("tenant", tenant)}
    return {
        **{name: own(t.get(name, {})) for name in ("requests", "energy", "carbon", "pool_requests", "routes", "slo", "latency")},
        "latency_buckets": t.get("latency_buckets", []),
        "intensity": reduced.get("intensity", {}),
        "budget": budget,
        "key_budget": {k: v for k, v in reduced.get("key_budget", {}).items() if k == (tenant,)},
        "tenant_totals": {name: {k: v for k, v in fam.items() if k == (tenant,)}
                          for name, fam in reduced.get("tenant_totals", {}).items()},
        **{name: {} for name in ("hits", "misses", "bypass", "avoided", "anomaly", "pool_replicas", "pool_idle")},
    }


def quantile_from_buckets(q: float, uppers: list[float], counts: list[float]) -> float | None:
    """Prometheus' histogram_quantile over one interval's bucket increments (cumulative counts)."""
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return None
    rank = q * total
    prev_upper, prev_count = 0.0, 0.0
    for upper, count in zip(uppers, counts):
        if math.isinf(upper):
            return prev_upper  # in the +Inf bucket: the highest finite bound, as Prometheus does
        if count >= rank:
            width = count - prev_count
            return prev_upper + (upper - prev_upper) * ((rank - prev_count) / width if width > 0 else 1.0)
        prev_upper, prev_count = upper, count
    return prev_upper


def _delta(new: dict, old: dict, key) -> float | None:
    d = new.get(key, 0.0) - old.get(key, 0.0)
    return d if d >= 0 else None  # a counter went back: a replica restarted; skip the interval


def _name(key: tuple) -> str:
    return key[0] if len(key) == 1 else f"{key[0]}/{key[1]}@{key[2]}" if len(key) == 3 else "/".join(key)


class DashboardHistory:
    def __init__(self, max_age_s: float = MAX_WINDOW_S, min_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.max_age_s = max_age_s
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._samples: deque[tuple[float, dict]] = deque()
        self._lock = threading.Lock()

    def add(self, snapshot: dict) -> bool:
        """Keep this snapshot unless the last one is under ``min_interval_s`` old."""
        now = self.clock()
        with self._lock:
            if self._samples and now - self._samples[-1][0] < self.min_interval_s:
                return False
            self._samples.append((now, reduce_snapshot(snapshot)))
            while self._samples and now - self._samples[0][0] > self.max_age_s:
                self._samples.popleft()
            return True

    def query(self, q: DashboardQuery, forecast: dict[str, list[tuple[float, float]]] | None = None,
              policy: str | None = None) -> dict[str, Any]:
        now = self.clock()
        with self._lock:
            samples = [s for s in self._samples if now - s[0] <= q.window_s]
        if q.tenant in (ANONYMOUS_LABEL, OTHER_LABEL):
            samples = []  # the metrics' catch-all labels: other tenants' figures would show under this name
        elif q.tenant is not None:
            samples = [(t, tenant_view(r, q.tenant)) for t, r in samples]
        pairs = list(zip(samples, samples[1:]))
        latest = samples[-1][1] if samples else reduce_snapshot({})
        panels: dict[str, dict] = {
            "j_per_1k": {"unit": "J per 1,000 requests", "series": {}},
            "g_per_1k": {"unit": "gCO2e per 1,000 requests", "series": {}},
            "intensity": {"unit": "gCO2e/kWh", "series": {}, "forecast": forecast or {}},
            "traffic_share": {"unit": "% of requests", "series": {}},
            "route_reasons": {"unit": "requests/s", "series": {}},
            "cache_hit_rate": {"unit": "% of requests", "series": {}},
            "energy_avoided": {"unit": "J/s avoided", "series": {}},
            "slo_attainment": {"unit": "% within SLO", "series": {}},
            "p99_ms": {"unit": "ms", "series": {}},
            "budget_use": {"unit": "% of carbon budget", "series": {}},
            "tenant_j_per_1k": {"unit": "J per 1,000 requests", "series": {}},
            POOL_PANEL: {"unit": "replicas; idle W", "series": {}},
        }
        if not latest.get("pool_replicas"):
            panels[POOL_PANEL]["pending"] = "no autoscaled pool: wattgate_pool_replicas is not exported by this gateway"
        if q.tenant is not None:
            for name in OPERATOR_ONLY:
                panels[name]["pending"] = "shared by every tenant: in the operators' view only"

        def put(panel: str, key: tuple, i: int, value: float | None) -> None:
            s = panels[panel]["series"].setdefault(_name(key), [None] * len(pairs))
            s[i] = value

        for i, ((t0, a), (t1, b)) in enumerate(pairs):
            dt = t1 - t0
            for key in b["requests"]:
                n = _delta(b["requests"], a["requests"], key)
                e, g = _delta(b["energy"], a["energy"], key), _delta(b["carbon"], a["carbon"], key)
                put("j_per_1k", key, i, 1000 * e / n if n and e is not None else None)
                put("g_per_1k", key, i, 1000 * g / n if n and g is not None else None)
            total = sum(filter(None, (_delta(b["pool_requests"], a["pool_requests"], k) for k in b["pool_requests"])))
            for key in b["pool_requests"]:
                n = _delta(b["pool_requests"], a["pool_requests"], key)
                put("traffic_share", key, i, 100 * n / total if total and n is not None else None)
            for key in b["routes"]:
                n = _delta(b["routes"], a["routes"], key)
                put("route_reasons", key, i, n / dt if n is not None else None)
            for key in b["intensity"]:
                put("intensity", key, i, b["intensity"][key])
            for key in set(b["hits"]) | set(b["misses"]):
                h, m = _delta(b["hits"], a["hits"], key), _delta(b["misses"], a["misses"], key)
                byp = _delta(b["bypass"], a["bypass"], key) or 0.0
                n = (h or 0.0) + (m or 0.0) + byp
                put("cache_hit_rate", key, i, 100 * h / n if n and h is not None else None)
            for key in b["avoided"]:
                j = _delta(b["avoided"], a["avoided"], key)
                put("energy_avoided", key, i, j / dt if j is not None else None)
            for model in {k[0] for k in b["slo"]}:
                met = _delta(b["slo"], a["slo"], (model, "met"))
                missed = _delta(b["slo"], a["slo"], (model, "missed"))
                n = (met or 0.0) + (missed or 0.0)
                put("slo_attainment", (model,), i, 100 * met / n if n and met is not None else None)
            for key, row in b["latency"].items():
                old = a["latency"].get(key, [0.0] * len(row))
                inc = [x - y for x, y in zip(row, old)]
                buckets = b["latency_buckets"]
                # row = [bucket counts..., sum, count]; the +Inf bucket is the count
                counts = inc[: len(buckets)] + [inc[-1]]
                p99 = quantile_from_buckets(0.99, buckets + [math.inf], counts) if min(inc) >= 0 else None
                put("p99_ms", key, i, p99 * 1000 if p99 is not None and math.isfinite(p99) else p99)
            for key in b["budget"]:
                put("budget_use", key, i, 100 * b["budget"][key])
            for (tenant,), ratio in b.get("key_budget", {}).items():
                put("budget_use", ("key", tenant), i, 100 * ratio)
            tt, ta = b.get("tenant_totals", {}), a.get("tenant_totals", {})
            for key in tt.get("requests", {}):
                n = _delta(tt["requests"], ta.get("requests", {}), key)
                e = _delta(tt.get("energy", {}), ta.get("energy", {}), key)
                put("tenant_j_per_1k", key, i, 1000 * e / n if n and e is not None else None)
            for key in b.get("pool_replicas", {}):
                put(POOL_PANEL, (f"{key[0]} replicas",), i, b["pool_replicas"][key])
                j = _delta(b.get("pool_idle", {}), a.get("pool_idle", {}), key)
                put(POOL_PANEL, (f"{key[0]} idle W",), i, j / dt if j is not None and dt > 0 else None)
        return {
            "generated_at": now,
            "window_s": q.window_s,
            "policy": policy,
            "tenant": q.tenant,
            "t": [t1 for (_, _), (t1, _) in pairs],
            "panels": panels,
            "anomalies": sorted(_name(k) for k, v in latest["anomaly"].items() if v > 0),
        }


def forecast_points(provider, regions: list[str], hours: float = 6.0) -> dict[str, list[tuple[float, float]]]:
    """Each region's intensity forecast as (unix s, g/kWh) points; a region whose provider has none is left out."""
    out: dict[str, list[tuple[float, float]]] = {}
    for region in regions:
        try:
            readings = provider.forecast(region, hours)
        except Exception:  # NotSupported, an outage: the live line still shows
            continue
        # On the minute: regions' points line up on one time axis even when fetched moments apart.
        out[region] = [(60 * round(r.timestamp.astimezone(timezone.utc).timestamp() / 60), r.intensity_g_per_kwh)
                       for r in readings]
    return out
