"""Replay a prepared scenario through a routing policy, slice by slice, with the live policy code.

Each step, every client's demand is cut into ``slices_per_client`` slices; slices of all clients
are interleaved and each is routed by ``policy.choose`` on the state the gateway would observe at
that moment: intensities (possibly lagged), health, the load already routed to each pool in this
step, the tightest SLO budget (SLO - RTT) among the traffic already there, and the carbon budget
spent so far in the period. The routing is then accounted by :mod:`routing.simulator.accounting`.
"""

from __future__ import annotations

import math

import numpy as np

from routing.candidates import BudgetState, PoolState, RouteRequest, RoutingState
from routing.policies import RoutingPolicy
from routing.simulator.scenario import Prepared, Scenario
from wattgate.errors import Unavailable

__all__ = ["replay", "variants_of"]


def variants_of(prep: Prepared) -> tuple[str, ...]:
    """The variants the scenario's requests may be served as: the preferred one first."""
    req = prep.scenario.request
    return tuple(dict.fromkeys((req.variant, *req.allowed_variants)))


def replay(prep: Prepared, policy: RoutingPolicy) -> np.ndarray:
    """Route every slice; returns ``rates[step, client, pool, variant]`` in requests per second."""
    sc, topo = prep.scenario, prep.topology
    variants = variants_of(prep)
    v_index = {v: i for i, v in enumerate(variants)}
    p_index = {name: i for i, name in enumerate(topo.names)}
    n_steps, n_clients = prep.demand_rps.shape
    rates = np.zeros((n_steps, n_clients, len(topo.pools), len(variants)))
    k = sc.slices_per_client
    req = sc.request
    budget = sc.budget
    period_s = budget.period_h * 3600.0 if budget else 0.0
    spent_g = 0.0
    period_no = -1
    regions = prep.client_regions
    allowed = tuple(req.allowed_variants)
    for t in range(n_steps):
        if budget:
            this_period = int(t * prep.step_s // period_s)
            if this_period != period_no:
                period_no, spent_g = this_period, 0.0
        load = [0.0] * len(topo.pools)
        budget_ms = [math.inf] * len(topo.pools)
        intensity = prep.observed_g_per_kwh[t]
        healthy = prep.healthy[t]
        for j in range(k):
            for c in range(n_clients):
                slice_rps = prep.demand_rps[t, c] / k
                if slice_rps <= 0:
                    continue
                pools = {
                    name: PoolState(float(intensity[i]), bool(healthy[i]), load[i], tightest_budget_ms=budget_ms[i])
                    for i, name in enumerate(topo.names)
                }
                model_budgets, tenant_budgets = _budgets(sc, spent_g)
                state = RoutingState(
                    topo, pools, model_budgets, tenant_budgets,
                    # Round-robin rotates per client, so each client's traffic spreads over all pools.
                    request_seq=t * k + j + c,
                )
                request = RouteRequest(
                    req.model, req.variant, regions[c], sc.slo_p99_ms, req.tenant, allowed, slice_rps
                )
                try:
                    d = policy.choose(request, state)
                except Unavailable:
                    continue  # counted as unserved by the accounting
                i = p_index[d.pool]
                load[i] += slice_rps
                budget_ms[i] = min(budget_ms[i], sc.slo_p99_ms - topo.pools[i].rtt_ms[regions[c]])
                rates[t, c, i, v_index[d.variant]] += slice_rps
                # Charged at the decision's expected carbon, as a gateway would before its ledger settles.
                spent_g += d.carbon_g * slice_rps * prep.step_s
    return rates


def _budgets(sc: Scenario, spent_g: float) -> tuple[dict[str, BudgetState], dict[str, BudgetState]]:
    """(model budgets, tenant budgets) for the routing state: the scenario has at most one."""
    b = sc.budget
    if b is None:
        return {}, {}
    state = BudgetState(spent_g, b.carbon_g)
    return ({sc.request.model: state}, {}) if b.scope == "model" else ({}, {sc.request.tenant: state})

