"""What operators watch beyond energy totals: traffic, energy and carbon per pool, route reasons,
latency against the SLO (per request, :class:`TrafficSink`; the same again per tenant, for the
dashboard's tenant view), and the router's state at each scrape: pools marked down, stale intensity,
carbon budget use (:class:`StateGauges`).

Gauges merge across ingress replicas by summing (``wattgate.metrics.merge``), so each is chosen to
stay meaningful when summed: ``wattgate_pool_down`` counts the replicas that see a pool down,
``wattgate_intensity_stale`` the replicas whose reading is stale, and each replica's budget use is
its own carbon over the whole budget, so the sum is the gateway's use.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

from routing.intensity.snapshot import IntensitySnapshot
from serving.accounting import AccountedRequest
from wattgate.metrics import MetricsRegistry

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_POLICY = re.compile(r"[a-z][a-z0-9-]{0,31}")


def route_kind(reason: str | None) -> str:
    """A bounded label for a free-text route reason: the policy's name, plus how the pool was reached."""
    if not reason:
        return "single-pool"
    head = reason.split(":", 1)[0].strip()
    kind = head if _POLICY.fullmatch(head) else "other"
    if "best-effort" in reason:
        kind += "/best-effort"
    for marker, suffix in (("(fallback:", "/fallback"), ("; spill to", "/spill"), ("(re-placed", "/re-placed")):
        if marker in reason:
            kind += suffix
    return kind


class TrafficSink:
    """Per request: which pool served it and why, its energy and carbon there, latency against its SLO.

    With ``tenant_label`` (the tenant sink's bounded label), requests that name a tenant are counted
    again under ``wattgate_tenant_pool_*``, ``wattgate_tenant_slo_requests_total`` and
    ``wattgate_tenant_request_latency_seconds``: what a tenant's own view of the dashboard shows.
    Anonymous requests add nothing there, so a gateway without tenants exports no extra series.
    """

    def __init__(self, registry: MetricsRegistry, default_slo_ms: float,
                 tenant_label: Callable[[str | None], str] | None = None) -> None:
        self.default_slo_ms = default_slo_ms
        self.tenant_label = tenant_label
        pool_labels = ("model", "variant", "pool")
        self.requests = registry.counter(
            "wattgate_pool_requests_total", "Requests served per pool, by route kind (policy and how the pool was reached)",
            (*pool_labels, "route"),
        )
        self.energy = registry.counter("wattgate_pool_energy_joules_total", "Energy charged to requests per pool (J)", pool_labels)
        self.carbon = registry.counter(
            "wattgate_pool_carbon_grams_total", "Carbon of requests per pool (gCO2eq; requests of unknown carbon add 0)", pool_labels
        )
        self.latency = registry.histogram(
            "wattgate_request_latency_seconds", "Gateway latency per request, parse to accounted (s)", ("model", "pool"),
            buckets=LATENCY_BUCKETS_S,
        )
        self.slo = registry.counter(
            "wattgate_slo_requests_total", "Requests by whether their latency met the SLO they were routed under",
            ("model", "pool", "slo"),
        )
        t = ("tenant", *pool_labels)
        self.t_requests = registry.counter("wattgate_tenant_pool_requests_total",
                                           "Requests of a tenant served per pool, by route kind", (*t, "route"))
        self.t_energy = registry.counter("wattgate_tenant_pool_energy_joules_total",
                                         "Energy charged to a tenant's requests per pool (J)", t)
        self.t_carbon = registry.counter("wattgate_tenant_pool_carbon_grams_total",
                                         "Carbon of a tenant's requests per pool (gCO2eq; unknown carbon adds 0)", t)
        self.t_latency = registry.histogram("wattgate_tenant_request_latency_seconds",
                                            "Gateway latency of a tenant's requests (s)", ("tenant", "model"),
                                            buckets=LATENCY_BUCKETS_S)
        self.t_slo = registry.counter("wattgate_tenant_slo_requests_total",
                                      "A tenant's requests by whether their latency met the SLO", ("tenant", "model", "slo"))
        self._kinds: dict[str | None, str] = {}  # route reason -> its bounded label

    def record_many(self, batch: Sequence[AccountedRequest]) -> None:
        """A group of requests, summed per series first (a batched sink: see serving/accounting.py)."""
        groups: dict[tuple, list] = {}
        for a in batch:
            r = a.record
            key = (r.model, r.variant, r.pool, r.tenant)
            g = groups.get(key)
            if g is None:
                g = groups[key] = [0.0, 0.0, {}, [], 0]  # J, gCO2e, route kind -> requests, latencies (s), SLO met
            g[0] += r.energy_j
            g[1] += r.carbon_g or 0.0
            kind = self._kinds.get(r.route_reason)
            if kind is None:
                kind = route_kind(r.route_reason)
                if len(self._kinds) < 1024:  # reasons name pools and policies: a small, bounded set
                    self._kinds[r.route_reason] = kind
            g[2][kind] = g[2].get(kind, 0) + 1
            g[3].append(r.latency_ms / 1000.0)
            if r.latency_ms <= (a.slo_ms or self.default_slo_ms):
                g[4] += 1
        for (model, variant, pool, tenant), (energy_j, carbon_g, kinds, latencies, met) in groups.items():
            key = (model, variant, pool)
            missed = float(len(latencies) - met)
            for kind, n in kinds.items():
                self.requests.inc_key((*key, kind), float(n))
            self.energy.inc_key(key, energy_j)
            self.carbon.inc_key(key, carbon_g)
            self.latency.observe_many_key((model, pool), latencies)
            # Both outcomes exist from the first request, so attainment (met / all) is never an empty query.
            self.slo.inc_key((model, pool, "met"), float(met))
            self.slo.inc_key((model, pool, "missed"), missed)
            if self.tenant_label is not None and tenant is not None:
                t = self.tenant_label(tenant)
                for kind, n in kinds.items():
                    self.t_requests.inc_key((t, *key, kind), float(n))
                self.t_energy.inc_key((t, *key), energy_j)
                self.t_carbon.inc_key((t, *key), carbon_g)
                self.t_latency.observe_many_key((t, model), latencies)
                self.t_slo.inc_key((t, model, "met"), float(met))
                self.t_slo.inc_key((t, model, "missed"), missed)


class StateGauges:
    """The router's state, read at each scrape."""

    def __init__(self, registry: MetricsRegistry, intensity: IntensitySnapshot,
                 pool_health: Callable[[], Mapping[str, bool]],
                 budget_use: Callable[[], Mapping[tuple[str, str], float]]) -> None:
        self.intensity = intensity
        self.pool_health = pool_health
        self.budget_use = budget_use
        self.stale = registry.gauge(
            "wattgate_intensity_stale", "1 per replica whose intensity for the region is stale or missing", ("region",)
        )
        self.down = registry.gauge("wattgate_pool_down", "1 per replica that has the pool marked down", ("pool",))
        self.budget = registry.gauge(
            "wattgate_carbon_budget_used_ratio", "Carbon spent in the budget period over the budget (1 = all spent)",
            ("scope", "name"),
        )

    def refresh(self) -> None:
        for region in self.intensity.regions:
            view = self.intensity.get(region)
            self.stale.set(1.0 if view.stale or not view.known else 0.0, region=region)
        for pool, healthy in self.pool_health().items():
            self.down.set(0.0 if healthy else 1.0, pool=pool)
        for (scope, name), ratio in self.budget_use().items():
            self.budget.set(ratio, scope=scope, name=name)
