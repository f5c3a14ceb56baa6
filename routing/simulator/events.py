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
from routing.autoscale import ScalingSignal, decide
from routing.candidates import RouteRequest
from routing.control import RoutingControl
from routing.intensity.snapshot import IntensityView
from routing.observed import BudgetTracker
from routing.simulator.arrivals import arrivals
from routing.simulator.provisioning import active_j, check_mode
from routing.simulator.scenario import Prepared
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
    # With workload.deferrable: gCO2e per deferrable request, each charged its step's average.
    deferrable_carbon_g_per_request: float | None = None

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

    def get(self, region: str) -> IntensityView:
        return IntensityView(self.values[region], "trace/lagged", "trace", False)


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


def run_events(prep: Prepared, policy: str, params: dict, provisioning: str, seed: int,
               deferrable_fraction: np.ndarray | None = None) -> EventOutcome:
    """``deferrable_fraction[step]``: the share of a step's requests that is deferrable work (for its carbon)."""
    check_mode(provisioning)
    run = _Run(prep, policy, params, provisioning, seed, deferrable_fraction)
    for t, rep_s in sampled_steps(prep):
        n_rep = run.start_step(t)
        run.account(t, rep_s, n_rep, run.route_window(t, n_rep, rep_s))
    return run.outcome()


@dataclass
class _Window:
    """The measured requests of one window: client, pool (-1: shed), variant index and latency."""

    client: list[int]
    pool: list[int]
    variant: list[int]
    latency_ms: list[float]


class _Run:
    """One policy through every sampled step: routers, queues and the running totals."""

    def __init__(self, prep: Prepared, policy: str, params: dict, provisioning: str, seed: int,
                 deferrable_fraction: np.ndarray | None = None) -> None:
        sc, topo = prep.scenario, prep.topology
        self.deferrable_fraction = deferrable_fraction
        self.deferred = {"carbon_g": 0.0, "served": 0.0}
        self.prep, self.provisioning, self.seed = prep, provisioning, seed
        req = sc.request
        self.variants = tuple(dict.fromkeys((req.variant, *req.allowed_variants)))
        self.pidx = {name: i for i, name in enumerate(topo.names)}
        self.vidx = {v: i for i, v in enumerate(self.variants)}
        self.intensity = _TraceIntensity()
        self.budgets = _budget_tracker(prep)
        control = RoutingControl(policy, params)
        gw = sc.gateway
        self.cores = [
            RouterCore(topo, control, self.intensity, sc.slo_p99_ms, self.budgets,
                       cadence_s=gw.decision_cadence_ms / 1000.0, ingress_replicas=gw.ingress_replicas)
            for _ in range(gw.ingress_replicas)
        ]
        self.requests = [RouteRequest(req.model, req.variant, c, sc.slo_p99_ms, req.tenant, tuple(req.allowed_variants))
                         for c in prep.client_regions]
        self.rtt = [[pool.rtt_ms[c] for pool in topo.pools] for c in prep.client_regions]
        n_pools = len(topo.pools)
        self.totals = {"idle_j": 0.0, "active_j": 0.0, "carbon_g": 0.0, "served": 0.0, "shed": 0.0}
        self.by_pool, self.replica_s = np.zeros(n_pools), np.zeros(n_pools)
        self.by_variant = np.zeros(len(self.variants))
        self.lat_parts: list[np.ndarray] = []
        self.w_parts: list[np.ndarray] = []
        self.past = self.simulated = 0
        self.methods: set[str] = set()
        self.prev_n = [m.replicas_initial for m in prep.pool_models]
        # provisioning: policy runs the live autoscaling policy on the routers' intent each step.
        overhead = gw.overhead_ms + 4.6 * gw.rtt_jitter_ms  # the jitter's p99 (exponential)
        self.specs = [m.scaling_spec(req.variant, overhead) for m in prep.pool_models]
        self.curves = [p.curve(req.variant) if p.serves(req.variant) else None for p in topo.pools]

    def start_step(self, t: int) -> list[int]:
        """Routers see step t (lagged intensity, health, steady rates); returns the replicas provisioned."""
        prep, sc, topo = self.prep, self.prep.scenario, self.prep.topology
        now0, ev = t * prep.step_s, sc.events
        demand = prep.demand_rps[t]
        self.intensity.set({p.region: float(prep.observed_g_per_kwh[t, i]) for i, p in enumerate(topo.pools)})
        for core in self.cores:
            for i, name in enumerate(topo.names):
                core.mark_down(name, now0 + ev.warmup_s + ev.window_s + 1.0 if not prep.healthy[t, i] else 0.0)
                core.load[name].in_flight = 0
            for c, r in enumerate(self.requests):
                if demand[c] > 0:
                    core.warm_start(r, demand[c] / len(self.cores), now0)
            core.warm_pools(now0)
        # The autoscaler provisions for the load the routers plan to send (it has converged on it).
        intents = [core.intent(now0) for core in self.cores]
        planned = np.mean([[rps for rps, _ in it.values()] for it in intents], axis=0)
        budget = [min(it[name][1] for it in intents) for name in topo.names]
        if self.provisioning == "policy":
            total = float(planned.sum())
            n_rep = [
                decide(self.specs[i], self.curves[i],
                       ScalingSignal(float(planned[i]), total, budget[i], None, self.prev_n[i], self.prev_n[i])).replicas
                for i in range(len(topo.pools))
            ]
        else:
            target = sc.autoscaling.target_utilisation
            n_rep = [m.replicas_for(planned[i], self.provisioning, target) for i, m in enumerate(prep.pool_models)]
        # Routers see what is provisioned: a pool with no replica is cold and takes no request.
        for core in self.cores:
            for i, (name, m) in enumerate(zip(topo.names, prep.pool_models)):
                core.set_warm(name, n_rep[i], m.replicas_max)
        return n_rep

    def route_window(self, t: int, n_rep: list[int], rep_s: float) -> _Window:
        """Every arrival of step t through a router and a FCFS pool; the measured ones are returned."""
        prep, sc = self.prep, self.prep.scenario
        gw, models = sc.gateway, prep.pool_models
        now0 = t * prep.step_s
        times, marked = _arrivals(prep, self.seed, t)
        n = len(times)
        rng = np.random.default_rng([self.seed, t, 1])
        routers = rng.integers(0, len(self.cores), n).tolist()
        jitter = (rng.exponential(gw.rtt_jitter_ms, n) if gw.rtt_jitter_ms > 0 else np.zeros(n)).tolist()
        ubatch = rng.random(n).tolist()
        service = [[m.service_for(v).draw_ms(rng, n).tolist() for v in self.variants] for m in models]
        queues = [[now0] * (n_rep[i] * m.servers_per_replica) for i, m in enumerate(models)]
        flights: list[list] = [[] for _ in self.cores]
        out = _Window([], [], [], [])
        overhead, rtt, pidx, vidx, requests = gw.overhead_ms, self.rtt, self.pidx, self.vidx, self.requests
        budgets, model, tenant = self.budgets, sc.request.model, sc.request.tenant
        budget_scale = rep_s / sc.events.window_s  # a measured request's carbon stands for this many
        for i, (t_rel, cm) in enumerate(zip(times.tolist(), marked.tolist())):
            now = now0 + t_rel
            c = cm if cm >= 0 else ~cm
            core, fl = self.cores[routers[i]], flights[routers[i]]
            while fl and fl[0][0] <= now:
                core.finish(heapq.heappop(fl)[1])
            try:
                e = core.pick(requests[c], now)
            except Unavailable:  # shed (Overloaded) or no healthy pool: a miss
                if cm >= 0:
                    out.client.append(c), out.pool.append(-1), out.variant.append(0), out.latency_ms.append(math.inf)
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
                out.client.append(c), out.pool.append(p), out.variant.append(v), out.latency_ms.append(lat)
                if budgets is not None:
                    budgets.add(model, e.decision.carbon_g * budget_scale, now, tenant)
        return out

    def account(self, t: int, rep_s: float, n_rep: list[int], win: _Window) -> None:
        """Energy and carbon of step t: idle per provisioned replica, active per (weighted) request."""
        prep, topo, models = self.prep, self.prep.topology, self.prep.pool_models
        n_pools, n_clients = len(topo.pools), len(prep.client_regions)
        demand = prep.demand_rps[t]
        self.simulated += len(win.latency_ms)
        cl = np.array(win.client, dtype=np.int64)
        pools_i = np.array(win.pool, dtype=np.int64)
        var_i = np.array(win.variant, dtype=np.int64)
        # Each measured request stands for demand x represented seconds / the client's window arrivals.
        counts = np.bincount(cl, minlength=n_clients)
        w = demand[cl] * rep_s / np.maximum(counts[cl], 1)
        served = pools_i >= 0
        load = np.bincount(pools_i[served], weights=w[served], minlength=n_pools) / rep_s
        g_per_j = operational_g(1.0, prep.intensity_g_per_kwh[t], np.array([p.pue for p in topo.pools]))
        if any(load[p] > n_rep[p] * m.replica_capacity_rps * (1 + 1e-9) for p, m in enumerate(models)):
            self.past += 1
        step_carbon_g = 0.0
        for p, m in enumerate(models):
            idle = m.idle_w_per_replica * (n_rep[p] * rep_s + max(0, n_rep[p] - self.prev_n[p]) * m.startup_s)
            active = 0.0
            for v, variant in enumerate(self.variants):
                sel = served & (pools_i == p) & (var_i == v)
                if sel.any():
                    curve = topo.pools[p].curve(variant)
                    self.methods.add(curve.method)
                    served_pv = w[sel].sum()
                    active += served_pv * active_j(curve, load[p] / max(n_rep[p], 1), m.idle_w_per_replica)
                    self.by_variant[v] += served_pv
            self.totals["idle_j"] += idle
            self.totals["active_j"] += active
            self.totals["carbon_g"] += (idle + active) * g_per_j[p]
            step_carbon_g += (idle + active) * g_per_j[p]
            self.replica_s[p] += n_rep[p] * rep_s
        self.by_pool += load * rep_s
        self.totals["served"] += w[served].sum()
        if self.deferrable_fraction is not None:
            f = float(self.deferrable_fraction[t])
            self.deferred["carbon_g"] += f * step_carbon_g
            self.deferred["served"] += f * w[served].sum()
        self.totals["shed"] += w[~served].sum()
        self.lat_parts.append(np.array(win.latency_ms))
        self.w_parts.append(w)
        self.prev_n = n_rep

    def outcome(self) -> EventOutcome:
        names, slo = self.prep.topology.names, self.prep.scenario.slo_p99_ms
        lat = np.concatenate(self.lat_parts) if self.lat_parts else np.zeros(0)
        wt = np.concatenate(self.w_parts) if self.w_parts else np.zeros(0)
        tot = self.totals
        served, total = tot["served"], tot["served"] + tot["shed"]

        def per(x: float) -> float:
            return x / served if served else math.nan

        return EventOutcome(
            provisioning=self.provisioning,
            carbon_g_per_request=per(tot["carbon_g"]),
            energy_j_per_request=per(tot["idle_j"] + tot["active_j"]),
            idle_energy_j_per_request=per(tot["idle_j"]),
            active_energy_j_per_request=per(tot["active_j"]),
            p99_latency_ms=weighted_quantile(lat, wt, 0.99),
            slo_attainment=float(wt[lat <= slo].sum() / wt.sum()) if wt.sum() else 0.0,
            shed_fraction=tot["shed"] / total if total else 0.0,
            share_by_pool={n: float(self.by_pool[i] / served) if served else 0.0 for i, n in enumerate(names)},
            share_by_variant={v: float(self.by_variant[i] / served) if served else 0.0 for i, v in enumerate(self.variants)},
            requests=float(total),
            simulated_requests=self.simulated,
            past_capacity_steps=self.past,
            steps=len(sampled_steps(self.prep)),
            replica_hours={n: float(self.replica_s[i] / 3600.0) for i, n in enumerate(names)},
            energy_method="+".join(sorted(self.methods)) or "none",
            deferrable_carbon_g_per_request=(self.deferred["carbon_g"] / self.deferred["served"]
                                             if self.deferred["served"] else None),
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
