"""Turn a routing (rates per step, client, pool, variant) into carbon, energy, p99 and SLO attainment.

Energy per request comes from each pool's curve at the pool's total arrival rate in that step, so
idle power is attributed to the traffic the pool gets (a pool without traffic is charged nothing).
A cell (step, client, pool) meets the SLO when its p99 = RTT + M/M/c queueing p99 + service is
within ``slo_p99_ms``; ``slo_attainment`` is the share of requests served in such cells, and
``p99_latency_ms`` is the 99th percentile of the request-weighted mixture of all cells' latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from energy.carbon import operational_g
from routing.queueing import wait_params, wait_tail
from routing.simulator.scenario import Prepared

__all__ = ["Outcome", "account"]


@dataclass(frozen=True)
class Outcome:
    """What one routing cost over the whole scenario (all figures modelled by the simulator)."""

    carbon_g_per_request: float
    energy_j_per_request: float
    idle_energy_j_per_request: float  # power-model curves' idle_w share; tables count as active
    p99_latency_ms: float
    slo_attainment: float
    share_by_pool: dict[str, float]
    share_by_variant: dict[str, float]
    unserved_share: float
    requests: float
    # From the pools' curves: "measured", "modelled" or "measured+modelled".
    energy_method: str

    def to_dict(self) -> dict:
        return {
            "carbon_g_per_request": self.carbon_g_per_request,
            "energy_j_per_request": self.energy_j_per_request,
            "idle_energy_j_per_request": self.idle_energy_j_per_request,
            "active_energy_j_per_request": self.energy_j_per_request - self.idle_energy_j_per_request,
            "shed_fraction": self.unserved_share,
            "p99_latency_ms": None if math.isinf(self.p99_latency_ms) else self.p99_latency_ms,
            "slo_attainment": self.slo_attainment,
            "share_by_pool": self.share_by_pool,
            "share_by_variant": self.share_by_variant,
            "unserved_share": self.unserved_share,
            "energy_method": self.energy_method,
        }


def account(prep: Prepared, rates: np.ndarray, variants: tuple[str, ...]) -> Outcome:
    """``rates[step, client, pool, variant]`` in requests per second, held for one step each."""
    topo, sc = prep.topology, prep.scenario
    n_steps, n_clients, n_pools, _ = rates.shape
    dt = prep.step_s
    load = rates.sum(axis=(1, 3))  # [step, pool]
    per_pv = rates.sum(axis=1)  # [step, pool, variant]

    energy_j = 0.0
    idle_j = 0.0
    carbon_g = 0.0
    methods = set()
    for p, pool in enumerate(topo.pools):
        for v, variant in enumerate(variants):
            served = per_pv[:, p, v]
            if not served.any():
                continue
            curve = pool.curve(variant)
            methods.add(curve.method)
            e = np.array([curve.at(load[t, p]) if served[t] > 0 else 0.0 for t in range(n_steps)])
            step_j = served * e * dt
            energy_j += step_j.sum()
            if curve.idle_w:
                idle_j += float((served * np.where(served > 0, curve.idle_w / np.maximum(load[:, p], 1e-12), 0.0) * dt).sum())
            carbon_g += operational_g(step_j, prep.intensity_g_per_kwh[:, p], pool.pue).sum()

    requests = prep.demand_rps.sum() * dt
    served_req = rates.sum() * dt

    # Per cell: fixed part (RTT + service) and the M/M/c waiting-time tail parameters of its pool.
    base = np.array([[pool.rtt_ms[c] + pool.service_ms for pool in topo.pools] for c in prep.client_regions])
    p_wait = np.empty((n_steps, n_pools))
    decay = np.empty((n_steps, n_pools))
    for t in range(n_steps):
        for p, pool in enumerate(topo.pools):
            p_wait[t, p], decay[t, p] = wait_params(load[t, p], pool.capacity_rps, pool.service_ms)
    weight = rates.sum(axis=3) * dt  # [step, client, pool]
    base_c = np.broadcast_to(base[None, :, :], weight.shape)
    pw = np.broadcast_to(p_wait[:, None, :], weight.shape)
    dc = np.broadcast_to(decay[:, None, :], weight.shape)
    used = weight > 0
    w, b, pw, dc = weight[used], base_c[used], pw[used], dc[used]
    # Cell p99 = base + ln(P(wait)/0.01)/decay when more than 1% wait, else base; inf when saturated.
    with np.errstate(divide="ignore", invalid="ignore"):
        wait99 = np.where(pw > 0.01, 1000.0 * np.log(np.maximum(pw, 1e-300) / 0.01) / dc, 0.0)
    wait99 = np.where(dc <= 0, np.inf, wait99)
    cell_p99 = b + wait99
    unserved = 1.0 - served_req / requests if requests else 0.0
    unserved = 0.0 if unserved < 1e-9 else float(unserved)  # float sums of slices, not lost traffic
    attained = float(w[cell_p99 <= sc.slo_p99_ms].sum() / w.sum()) * (1.0 - unserved) if w.size else 0.0
    p99 = _mixture_quantile(0.99, w, b, pw, dc, unserved_req=unserved * requests)

    share_pool = {pool.name: float(weight[:, :, p].sum() / served_req) if served_req else 0.0 for p, pool in enumerate(topo.pools)}
    share_var = {v: float(per_pv[:, :, i].sum() / per_pv.sum()) if served_req else 0.0 for i, v in enumerate(variants)}
    return Outcome(
        carbon_g_per_request=carbon_g / served_req if served_req else math.nan,
        energy_j_per_request=energy_j / served_req if served_req else math.nan,
        idle_energy_j_per_request=idle_j / served_req if served_req else math.nan,
        p99_latency_ms=p99,
        slo_attainment=attained,
        share_by_pool=share_pool,
        share_by_variant=share_var,
        unserved_share=unserved,
        requests=float(requests),
        energy_method="+".join(sorted(methods)) or "none",
    )


def _mixture_quantile(q, w, base, p_wait, decay, unserved_req: float) -> float:
    """Latency x with P(L > x) = 1 - q over all requests; unserved requests count as infinitely late."""
    total = w.sum() + max(unserved_req, 0.0)
    if total <= 0:
        return math.nan
    tail_target = (1.0 - q) * total

    def over(x: float) -> float:
        return float((w * wait_tail(x - base, p_wait, decay)).sum()) + max(unserved_req, 0.0)

    lo = float(base.min())
    hi = lo + 1000.0
    for _ in range(40):
        if over(hi) <= tail_target:
            break
        hi = lo + 2 * (hi - lo)
    else:
        return math.inf
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if over(mid) > tail_target:
            lo = mid
        else:
            hi = mid
    return hi
