"""The fluid model (``simulation: fluid``): every policy as rates per step, and the SLO-capped LP oracle.

This is the pre-issue-13 model, kept for comparison: latency is the policies' own M/M/c formula,
idle power is charged only in steps where a pool carries traffic (provisioning is ignored), and a
policy places ``slices_per_client`` slices per client and step. ``wattgate simulate`` defaults to
the event simulator (``routing/simulator/events.py``), which measures instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from routing.policies import make_policy
from routing.simulator.accounting import Outcome, account
from routing.simulator.engine import replay, variants_of
from routing.simulator.oracle import solve
from routing.simulator.scenario import Prepared

__all__ = ["FluidResult", "format_fluid", "simulate_fluid"]

METHOD = (
    "simulated: fluid model per time step, M/M/c queueing formula per pool (not measured), energy from each "
    "pool's curve at its arrival rate with idle charged only while a pool carries traffic (provisioning "
    "ignored), carbon = energy x PUE x replayed grid intensity"
)
BASELINE = "round-robin"


@dataclass(frozen=True)
class FluidResult:
    scenario: str
    meta: dict[str, Any]
    policies: dict[str, Outcome]
    params: dict[str, dict[str, Any]]
    oracle: Outcome
    oracle_bound_carbon_g_per_request: float
    oracle_bound_energy_j_per_request: float
    oracle_relaxed_steps: int
    oracle_binding_steps: int

    simulation = "fluid"
    baseline = BASELINE

    def vs_oracle(self, label: str) -> float:
        """Relative excess carbon over the oracle's lower bound (0.03 = 3 % above)."""
        return self.policies[label].carbon_g_per_request / self.oracle_bound_carbon_g_per_request - 1.0

    def oracle_reason(self, label: str) -> str:
        """'' when the LP bound holds for this policy's routing, else why not."""
        o = self.policies[label]
        preferred = next(iter(o.share_by_variant))
        other = [v for v, share in o.share_by_variant.items() if v != preferred and share > 0]
        if other:
            return f"served variant(s) {other}; the oracle serves {preferred} only"
        if o.slo_attainment < 1.0:
            return f"misses the M/M/c SLO in {1 - o.slo_attainment:.2%} of requests; the bound holds only where every cell meets it"
        return ""

    def vs_baseline(self, label: str, baseline: str = BASELINE) -> float | None:
        """Relative carbon change against ``baseline`` (-0.6 = 60 % less), if it ran."""
        if baseline not in self.policies:
            return None
        return self.policies[label].carbon_g_per_request / self.policies[baseline].carbon_g_per_request - 1.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": self.scenario, "simulation": "fluid", **self.meta, "method": METHOD,
                               "baseline": BASELINE, "policies": {}}
        for label, o in self.policies.items():
            entry = o.to_dict()
            entry["params"] = self.params[label]
            reason = self.oracle_reason(label)
            entry["vs_oracle"] = "n/a" if reason else self.vs_oracle(label)
            entry["oracle_comparable"] = not reason
            if reason:
                entry["oracle_not_comparable"] = reason
            entry["vs_baseline"] = self.vs_baseline(label)
            out["policies"][label] = entry
        oracle = self.oracle.to_dict()
        oracle.update(
            {
                # The LP value: a lower bound for routings that meet the SLO everywhere.
                "carbon_g_per_request": self.oracle_bound_carbon_g_per_request,
                "energy_j_per_request": self.oracle_bound_energy_j_per_request,
                # What the oracle's routing costs when accounted like the policies (>= the bound).
                "routing_carbon_g_per_request": self.oracle.carbon_g_per_request,
                "routing_energy_j_per_request": self.oracle.energy_j_per_request,
                "relaxed_steps": self.oracle_relaxed_steps,
                "binding_steps": self.oracle_binding_steps,
            }
        )
        out["oracle"] = oracle
        return out


def simulate_fluid(prep: Prepared) -> FluidResult:
    """Every policy of the prepared scenario through the fluid model, and the SLO-capped oracle."""
    scenario = prep.scenario
    variants = variants_of(prep)
    results: dict[str, Outcome] = {}
    params: dict[str, dict[str, Any]] = {}
    for spec in scenario.policies:
        policy = make_policy(spec.name, **spec.params)
        params[spec.key] = {"policy": spec.name, **policy.params()}
        results[spec.key] = account(prep, replay(prep, policy), variants)
    sol = solve(prep, variants)
    oracle = account(prep, sol.rates, variants)
    served = prep.demand_rps.sum() * prep.step_s
    return FluidResult(
        scenario=scenario.name,
        meta=_meta(prep),
        policies=results,
        params=params,
        oracle=oracle,
        oracle_bound_carbon_g_per_request=sol.bound_carbon_g / served,
        oracle_bound_energy_j_per_request=sol.bound_energy_j / served,
        oracle_relaxed_steps=sol.relaxed_steps,
        oracle_binding_steps=sol.binding_steps,
    )


def _meta(prep: Prepared) -> dict[str, Any]:
    sc = prep.scenario
    return {
        "start": sc.start.isoformat(),
        "duration_h": sc.duration_h,
        "steps": len(prep.times),
        "step_min": sc.step_min,
        "slo_p99_ms": sc.slo_p99_ms,
        "mean_rps": float(prep.demand_rps.sum(axis=1).mean()),
        "requests": float(prep.demand_rps.sum() * prep.step_s),
        "traces": prep.trace_sources,
        "pools": {p.name: {"region": p.region, "hardware": p.hardware, "capacity_rps": p.capacity_rps} for p in prep.topology.pools},
    }


def format_fluid(result: FluidResult) -> str:
    """A readable comparison: one row per policy and one for the oracle's lower bound."""
    m = result.meta
    pools = list(m["pools"])
    head = (
        f"scenario {result.scenario}: {m['start']} for {m['duration_h']:g} h, {m['steps']} steps of "
        f"{m['step_min']:g} min, mean {m['mean_rps']:.0f} rps, SLO p99 {m['slo_p99_ms']:g} ms"
    )
    cols = ["policy", "µgCO2e/req", "mJ/req", "p99 ms", "SLO att.", "vs RR", "vs oracle"] + [f"%{p}" for p in pools]
    rows = []
    for label, o in result.policies.items():
        rr = result.vs_baseline(label)
        rows.append(
            [label, f"{o.carbon_g_per_request * 1e6:.3f}", f"{o.energy_j_per_request * 1e3:.2f}", _ms(o.p99_latency_ms),
             f"{o.slo_attainment:.4f}", "-" if rr is None else f"{rr:+.1%}",
             "n/a" if result.oracle_reason(label) else f"{result.vs_oracle(label):+.1%}"]
            + [f"{o.share_by_pool[p]:.0%}" for p in pools]
        )
    o = result.oracle
    rows.append(
        ["oracle (bound)", f"{result.oracle_bound_carbon_g_per_request * 1e6:.3f}",
         f"{result.oracle_bound_energy_j_per_request * 1e3:.2f}", _ms(o.p99_latency_ms), f"{o.slo_attainment:.4f}", "", ""]
        + [f"{o.share_by_pool[p]:.0%}" for p in pools]
    )
    widths = [max(len(str(r[i])) for r in [cols] + rows) for i in range(len(cols))]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.append(
        f"oracle: capacity/SLO binds in {result.oracle_binding_steps} of {m['steps']} steps; "
        f"SLO relaxed in {result.oracle_relaxed_steps}"
    )
    lines.append(f"({METHOD})")
    return "\n".join(lines)


def _ms(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.1f}"
