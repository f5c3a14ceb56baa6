"""The event-level simulator: requests arrive one by one, the live router places each, FCFS pools serve them.

For each simulated step, arrivals (Poisson or MMPP) of every client are drawn for ``warmup_s +
window_s``; each request goes to one of ``ingress_replicas`` routers at random, and that router's
:class:`routing.split.RouterCore` (the gateway's own decision code) places it, seeing its own
in-flight counts and moving averages, the lagged intensity and the decision cadence. The pool is a
FCFS queue with ``replicas x servers_per_replica`` servers; a request's latency is gateway overhead
+ RTT (+ jitter) + batching delay (uniform up to ``batch_delay_ms``) + its wait + its service time
drawn from the pool's distribution. Latency and SLO attainment are measured on the requests of the
window, never taken from a queueing formula; a request the router sheds (``Overloaded``) or cannot
place counts as a miss.

Approximations, stated with every result (:data:`APPROXIMATION`): a step is represented by its
window (and ``sample_every > 1`` simulates one step in that many, each standing for the skipped
ones); queues and in-flight counts start empty and routers start from the step's steady rates
(the warm-up absorbs the transient); requests queue in gateway order. Each simulated request stands
for ``demand x represented seconds / window arrivals`` requests, so totals match the demand exactly.
Common random numbers: arrivals and service draws depend on (seed, step) only, so every policy
meets the same requests.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from energy.carbon import operational_g
from routing.candidates import RouteRequest
from routing.control import RoutingControl
from routing.simulator.arrivals import arrivals
from routing.simulator.provisioning import active_j, check_mode
from routing.simulator.scenario import Prepared
from routing.observed import BudgetTracker
from routing.split import RouterCore
from wattgate.errors import Unavailable

__all__ = ["APPROXIMATION", "EventOutcome", "run_events", "sampled_steps"]

APPROXIMATION = (
    "event-level: per-request routing by the live RouterCore, FCFS pools with sampled service times; "
    "each step represented by a {window:g} s window after {warmup:g} s warm-up{sampling}; queues start empty"
)


@dataclass(frozen=True)
class EventOutcome:
    """One policy over a scenario, measured on simulated requests (energy and carbon from the pools' curves)."""

    provisioning: str
    carbon_g_per_request: float
    energy_j_per_request: float
    idle_energy_j_per_request: float
    active_energy_j_per_request: float
    p99_latency_ms: float
    slo_attainment: float
    shed_fraction: float
    share_by_pool: dict[str, float]
    share_by_variant: dict[str, float]
    requests: float  # represented
    simulated_requests: int
    past_capacity_steps: int  # steps in which some pool got more than its provisioned capacity
    steps: int
    replica_hours: dict[str, float]
    energy_method: str

    def to_dict(self) -> dict:
        out = dict(self.__dict__)
        out["p99_latency_ms"] = None if math.isinf(self.p99_latency_ms) else self.p99_latency_ms
        return out


class _TraceIntensity:
    """The lagged trace value per region as an intensity view; ``generation`` bumps when one changes."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.generation = 0

    def set(self, values: dict[str, float]) -> None:
        if values != self.values:
            self.values = values
            self.generation += 1

    def get(self, region: str) -> tuple[float, str, bool]:
        return self.values[region], "trace/lagged", False


def sampled_steps(prep: Prepared) -> list[tuple[int, float]]:
    """(step, seconds it represents): one step in ``sample_every``, the last standing for the rest."""
    every = prep.scenario.events.sample_every
    n = len(prep.times)
    return [(t, min(every, n - t) * prep.step_s) for t in range(0, n, every)]


def effective_demand(prep: Prepared, seed: int) -> np.ndarray:
    """Demand [step, client] the windows represent: a client with no arrival in a window counts as none."""
    out = np.zeros_like(prep.demand_rps)
    for t, _ in sampled_steps(prep):
        _, clients = _arrivals(prep, seed, t)
        seen = np.bincount(clients[clients >= 0], minlength=out.shape[1]) > 0
        out[t] = np.where(seen, prep.demand_rps[t], 0.0)
    return out


def _arrivals(prep: Prepared, seed: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times and clients of step t; clients of warm-up arrivals are marked ~c (negative)."""
    sc = prep.scenario
    a, ev = sc.arrivals, sc.events
    rng = np.random.default_rng([seed, t, 0])
    times, clients = arrivals(rng, prep.demand_rps[t], ev.warmup_s + ev.window_s, a.process, a.burst_factor,
                              a.burst_fraction, a.mean_burst_s)
    return times, np.where(times >= ev.warmup_s, clients, ~clients)


def run_events(prep: Prepared, policy: str, params: dict, provisioning: str, seed: int) -> EventOutcome:
    sc, topo = prep.scenario, prep.topology
    check_mode(provisioning)
    gw, ev = sc.gateway, sc.events
    req = sc.request
    variants = tuple(dict.fromkeys((req.variant, *req.allowed_variants)))
    models = prep.pool_models
    n_pools, n_clients = len(topo.pools), len(prep.client_regions)
    pidx = {name: i for i, name in enumerate(topo.names)}
    vidx = {v: i for i, v in enumerate(variants)}
    control = RoutingControl(policy, params)
    intensity = _TraceIntensity()
    budgets = _budget_tracker(prep)
    n_routers = gw.ingress_replicas
    cores = [
        RouterCore(topo, control, intensity, sc.slo_p99_ms, budgets, cadence_s=gw.decision_cadence_ms / 1000.0,
                   ingress_replicas=n_routers)
        for _ in range(n_routers)
    ]
    requests = [RouteRequest(req.model, req.variant, c, sc.slo_p99_ms, req.tenant, tuple(req.allowed_variants))
                for c in prep.client_regions]
    rtt = [[pool.rtt_ms[c] for pool in topo.pools] for c in prep.client_regions]
    budget_scale = 0.0

    totals = {"idle_j": 0.0, "active_j": 0.0, "carbon_g": 0.0, "served": 0.0, "shed": 0.0}
    by_pool = np.zeros(n_pools)
    by_variant = np.zeros(len(variants))
    replica_s = np.zeros(n_pools)
    lat_parts, w_parts = [], []
    past, simulated, methods = 0, 0, set()
    prev_n = [m.replicas_initial for m in models]
    for t, rep_s in sampled_steps(prep):
        now0 = t * prep.step_s
        demand = prep.demand_rps[t]
        intensity.set({p.region: float(prep.observed_g_per_kwh[t, i]) for i, p in enumerate(topo.pools)})
        for core in cores:
            for i, name in enumerate(topo.names):
                core.mark_down(name, now0 + ev.warmup_s + ev.window_s + 1.0 if not prep.healthy[t, i] else 0.0)
                core.load[name].in_flight = 0
            for c, r in enumerate(requests):
                if demand[c] > 0:
                    core.warm_start(r, demand[c] / n_routers, now0)
            core.warm_pools(now0)
        planned = np.mean([list(core.planned_load_rps(now0).values()) for core in cores], axis=0)
        n_rep = [m.replicas_for(planned[i], provisioning, sc.autoscaling.target_utilisation) for i, m in enumerate(models)]

        times, marked = _arrivals(prep, seed, t)
        n = len(times)
        rng = np.random.default_rng([seed, t, 1])
        routers = rng.integers(0, n_routers, n).tolist()
        jitter = (rng.exponential(gw.rtt_jitter_ms, n) if gw.rtt_jitter_ms > 0 else np.zeros(n)).tolist()
        ubatch = rng.random(n).tolist()
        service = [[m.service_for(v).draw_ms(rng, n).tolist() for v in variants] for m in models]
        queues = [[now0] * (n_rep[i] * m.servers_per_replica) for i, m in enumerate(models)]
        flights: list[list] = [[] for _ in cores]
        warm_end = now0 + ev.warmup_s
        rec_lat, rec_pool, rec_var, rec_client = [], [], [], []
        overhead = gw.overhead_ms
        budget_scale = rep_s / ev.window_s if budgets is not None else 0.0
        for i, (t_rel, cm) in enumerate(zip(times.tolist(), marked.tolist())):
            now = now0 + t_rel
            c = cm if cm >= 0 else ~cm
            r = routers[i]
            core, fl = cores[r], flights[r]
            while fl and fl[0][0] <= now:
                core.finish(heapq.heappop(fl)[1])
            try:
                e = core.pick(requests[c], now)
            except Unavailable:
                if cm >= 0:
                    rec_lat.append(math.inf), rec_pool.append(-1), rec_var.append(0), rec_client.append(c)
                continue
            p, v = pidx[e.pool], vidx[e.variant]
            core.begin(e.pool, now)
            s_ms = service[p][v][i]
            b_ms = models[p].batch_delay_ms * ubatch[i]
            tq = now + (overhead + b_ms) / 1000.0
            heap = queues[p]
            if not heap:  # a pool scaled to zero starts a replica on demand
                n_rep[p] = 1
                heap.extend([tq + models[p].startup_s] * models[p].servers_per_replica)
            start = heap[0] if heap[0] > tq else tq
            heapq.heapreplace(heap, start + s_ms / 1000.0)
            lat = overhead + rtt[c][p] + jitter[i] + b_ms + (start - tq) * 1000.0 + s_ms
            heapq.heappush(fl, (now + lat / 1000.0, e.pool))
            if cm >= 0:
                rec_lat.append(lat), rec_pool.append(p), rec_var.append(v), rec_client.append(c)
                if budgets is not None:
                    budgets.add(req.model, e.decision.carbon_g * budget_scale, now, req.tenant)
        simulated += len(rec_lat)

        # Each measured request stands for demand x represented seconds / the client's window arrivals.
        cl = np.array(rec_client, dtype=np.int64)
        pools_i = np.array(rec_pool, dtype=np.int64)
        var_i = np.array(rec_var, dtype=np.int64)
        counts = np.bincount(cl, minlength=n_clients)
        w = demand[cl] * rep_s / np.maximum(counts[cl], 1)
        served = pools_i >= 0
        load = np.bincount(pools_i[served], weights=w[served], minlength=n_pools) / rep_s
        g_per_j = operational_g(1.0, prep.intensity_g_per_kwh[t], np.array([p.pue for p in topo.pools]))
        for p, m in enumerate(models):
            if load[p] > n_rep[p] * m.replica_capacity_rps * (1 + 1e-9):
                past += 1
                break
        for p, m in enumerate(models):
            idle = m.idle_w_per_replica * (n_rep[p] * rep_s + max(0, n_rep[p] - prev_n[p]) * m.startup_s)
            active = 0.0
            for v, variant in enumerate(variants):
                sel = served & (pools_i == p) & (var_i == v)
                if sel.any():
                    curve = topo.pools[p].curve(variant)
                    methods.add(curve.method)
                    served_pv = w[sel].sum()
                    active += served_pv * active_j(curve, load[p] / max(n_rep[p], 1), m.idle_w_per_replica)
                    by_variant[v] += served_pv
            totals["idle_j"] += idle
            totals["active_j"] += active
            totals["carbon_g"] += (idle + active) * g_per_j[p]
            replica_s[p] += n_rep[p] * rep_s
        by_pool += load * rep_s
        totals["served"] += w[served].sum()
        totals["shed"] += w[~served].sum()
        lat_parts.append(np.array(rec_lat))
        w_parts.append(w)
        prev_n = n_rep

    lat = np.concatenate(lat_parts) if lat_parts else np.zeros(0)
    wt = np.concatenate(w_parts) if w_parts else np.zeros(0)
    served_req, total_req = totals["served"], totals["served"] + totals["shed"]
    per = (lambda x: x / served_req) if served_req else (lambda x: math.nan)
    return EventOutcome(
        provisioning=provisioning,
        carbon_g_per_request=per(totals["carbon_g"]),
        energy_j_per_request=per(totals["idle_j"] + totals["active_j"]),
        idle_energy_j_per_request=per(totals["idle_j"]),
        active_energy_j_per_request=per(totals["active_j"]),
        p99_latency_ms=weighted_quantile(lat, wt, 0.99),
        slo_attainment=float(wt[lat <= sc.slo_p99_ms].sum() / wt.sum()) if wt.sum() else 0.0,
        shed_fraction=totals["shed"] / total_req if total_req else 0.0,
        share_by_pool={name: float(by_pool[i] / served_req) if served_req else 0.0 for i, name in enumerate(topo.names)},
        share_by_variant={v: float(by_variant[i] / served_req) if served_req else 0.0 for i, v in enumerate(variants)},
        requests=float(total_req),
        simulated_requests=simulated,
        past_capacity_steps=past,
        steps=len(sampled_steps(prep)),
        replica_hours={name: float(replica_s[i] / 3600.0) for i, name in enumerate(topo.names)},
        energy_method="+".join(sorted(methods)) or "none",
    )


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The smallest value with at least a q share of the weight at or below it (inf if the tail is infinite)."""
    if values.size == 0 or weights.sum() <= 0:
        return math.nan
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    k = int(np.searchsorted(cum, q * cum[-1] * (1 - 1e-12)))
    return float(values[order][min(k, values.size - 1)])


def _budget_tracker(prep: Prepared) -> BudgetTracker | None:
    b = prep.scenario.budget
    if b is None:
        return None
    who = {prep.scenario.request.model if b.scope == "model" else prep.scenario.request.tenant: b.carbon_g}
    models, tenants = (who, {}) if b.scope == "model" else ({}, who)
    return BudgetTracker(models, b.period_h * 3600.0, tenants, start_s=0.0)
