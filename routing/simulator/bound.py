"""The oracle of the event simulator: a lower bound on the carbon of every fair routing, and when it is not.

Per simulated step, with perfect knowledge of the real intensities, the oracle routes the step's
demand over the pools at least carbon, under the same provisioning mode, the same capacity
(``replicas.max x replica_capacity_rps``, healthy pools only) and the preferred variant only:

- always-on: idle is ``replicas.max x idle_w_per_replica``, whatever the routing;
- load-autoscaled: idle is at least ``idle_w_per_replica x max(min, load / replica_capacity_rps)``
  (the autoscaler's replica count without its headroom and rounding);
- each request costs at least the least active J per request of its pool's curve.

Each pool's cost is then convex and piecewise linear in its load, so filling the cheapest marginal
segments first is the exact optimum (no client constraint binds: every client may use every pool).
It is a **bound** for every routing that (1) serves every request, (2) keeps every pool within its
provisioned capacity in every step, and (3) uses the preferred variant only, because each such
routing pays at least these costs. The SLO is not a constraint of the bound: an SLO met by 99 % of
measured requests implies no per-pool load limit, so adding one would make the "bound" beatable.
A comparison is *fair* when (1)-(3) hold and the policy also meets the SLO target; otherwise
``vs_oracle`` is "n/a" with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from energy.carbon import operational_g
from routing.simulator.events import EventOutcome, sampled_steps
from routing.simulator.provisioning import active_j_floor
from routing.simulator.scenario import Prepared

__all__ = ["Bound", "fairness", "solve_bound"]


@dataclass(frozen=True)
class Bound:
    provisioning: str
    carbon_g_per_request: float
    energy_j_per_request: float
    idle_energy_j_per_request: float
    active_energy_j_per_request: float
    share_by_pool: dict[str, float]
    infeasible_steps: int  # demand above the healthy pools' capacity: no routing serves it all

    @property
    def is_bound(self) -> bool:
        return self.infeasible_steps == 0

    def to_dict(self) -> dict:
        return {**self.__dict__, "is_bound": self.is_bound}


def solve_bound(prep: Prepared, demand_rps: np.ndarray, provisioning: str) -> Bound:
    """``demand_rps[step, client]``: what the windows represent (see ``events.effective_demand``)."""
    topo, models = prep.topology, prep.pool_models
    variant = prep.scenario.request.variant
    j_floor = np.array([
        active_j_floor(pool.curve(variant), m.idle_w_per_replica) if pool.serves(variant) else np.inf
        for pool, m in zip(topo.pools, models)
    ])
    idle_w = np.array([m.idle_w_per_replica for m in models])
    rc = np.array([m.replica_capacity_rps for m in models])
    r_min = np.array([m.replicas_min for m in models])
    r_max = np.array([m.replicas_max for m in models])
    pue = np.array([p.pue for p in topo.pools])
    serves = np.isfinite(j_floor)
    carbon = idle_total = active_total = requests = 0.0
    by_pool = np.zeros(len(models))
    infeasible = 0
    for t, rep_s in sampled_steps(prep):
        g = operational_g(1.0, prep.intensity_g_per_kwh[t], pue)  # g per J, per pool
        cap = np.where(prep.healthy[t] & serves, r_max * rc, 0.0)
        # Segments (g per rps, room in rps, pool, idle W per rps): cheapest first is optimal (convex costs).
        n = len(models)
        if provisioning == "always-on":
            base_w = idle_w * r_max
            segments = [(j_floor[p] * g[p], cap[p], p, 0.0) for p in range(n)]
        else:
            base_w = idle_w * r_min
            # Up to min replicas' capacity only the active energy; beyond it each rps adds idle_w / rc.
            first = np.minimum(cap, r_min * rc)
            segments = [(j_floor[p] * g[p], first[p], p, 0.0) for p in range(n)]
            segments += [((j_floor[p] + idle_w[p] / rc[p]) * g[p], cap[p] - first[p], p, idle_w[p] / rc[p]) for p in range(n)]
        left = float(demand_rps[t].sum())
        for cost, room, p, idle_per_rps in sorted(s for s in segments if s[1] > 0 and np.isfinite(s[0])):
            take = min(room, left)
            if take <= 0:
                break
            carbon += take * (j_floor[p] + idle_per_rps) * g[p] * rep_s
            active_total += take * j_floor[p] * rep_s
            idle_total += take * idle_per_rps * rep_s
            by_pool[p] += take * rep_s
            left -= take
        if left > 1e-9 * max(1.0, float(demand_rps[t].sum())):
            infeasible += 1
        carbon += float(base_w @ g) * rep_s
        idle_total += float(base_w.sum()) * rep_s
        requests += float(demand_rps[t].sum()) * rep_s
    served = by_pool.sum()
    return Bound(
        provisioning=provisioning,
        carbon_g_per_request=carbon / requests if requests else float("nan"),
        energy_j_per_request=(idle_total + active_total) / requests if requests else float("nan"),
        idle_energy_j_per_request=idle_total / requests if requests else float("nan"),
        active_energy_j_per_request=active_total / requests if requests else float("nan"),
        share_by_pool={name: float(by_pool[i] / served) if served else 0.0 for i, name in enumerate(topo.names)},
        infeasible_steps=infeasible,
    )


def fairness(outcome: EventOutcome, bound: Bound, preferred_variant: str, slo_target: float) -> str:
    """'' when the policy may be compared with the bound, else why not."""
    if not bound.is_bound:
        return f"demand exceeds the healthy capacity in {bound.infeasible_steps} step(s): no routing serves it all"
    if outcome.provisioning != bound.provisioning:
        return f"provisioned {outcome.provisioning}, the oracle {bound.provisioning}"
    other = [v for v, share in outcome.share_by_variant.items() if v != preferred_variant and share > 0]
    if other:
        return f"served variant(s) {other}; the oracle serves {preferred_variant} only"
    if outcome.shed_fraction > 0:
        return f"shed {outcome.shed_fraction:.2%} of requests; the oracle serves all"
    if outcome.past_capacity_steps:
        return f"a pool got more than its provisioned capacity in {outcome.past_capacity_steps} step(s)"
    if outcome.slo_attainment < slo_target:
        return f"SLO attainment {outcome.slo_attainment:.2%} < target {slo_target:.0%}"
    return ""
