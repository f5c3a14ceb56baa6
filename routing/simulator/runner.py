"""Run a scenario: every policy and the baselines through the event simulator (or the fluid model), plus the oracle.

The baseline every cut is measured against (``vs_baseline``) is round-robin with load autoscaling;
round-robin always-on runs beside it. A plain ``round-robin`` in the scenario's list is replaced by
these two. ``vs_oracle`` is a number only when the comparison is fair (:func:`bound.fairness`).

With ``workload.deferrable``, every run also runs as ``LABEL+shift``: the deferrable share of the
demand moved to low-carbon hours (``deferral.py``). Its ``vs_baseline`` is the combined (where +
when) cut against round-robin at arrival; ``shift_vs_arrival`` compares the carbon per deferrable
request with the same policy's run at arrival.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from routing.intensity.traces import Trace
from routing.policies import make_policy
from routing.simulator.bound import Bound, fairness, solve_bound
from routing.simulator.deferral import shift_demand
from routing.simulator.events import APPROXIMATION, EventOutcome, effective_demand, run_events, sampled_steps
from routing.simulator.fluid import FluidResult, simulate_fluid
from routing.simulator.scenario import Prepared, Scenario, load_scenario, prepare
from wattgate.errors import BadRequest

__all__ = ["ALWAYS_ON", "BASELINE", "EventResult", "PolicyRun", "simulate"]

BASELINE = "round-robin/autoscaled"
SHIFT = "+shift"
ALWAYS_ON = "round-robin/always-on"
ENERGY = (
    "idle power charged per provisioned replica-second, active energy per request from each pool's curve, "
    "carbon = energy x PUE x replayed grid intensity"
)


@dataclass(frozen=True)
class PolicyRun:
    label: str
    policy: str
    params: dict[str, Any]
    outcome: EventOutcome


@dataclass(frozen=True)
class EventResult:
    scenario: str
    meta: dict[str, Any]
    method: str
    runs: dict[str, PolicyRun]
    oracles: dict[str, Bound]  # per provisioning mode
    slo_target: float
    preferred_variant: str

    simulation = "events"
    baseline = BASELINE

    @property
    def policies(self) -> dict[str, EventOutcome]:
        return {label: run.outcome for label, run in self.runs.items()}

    def vs_baseline(self, label: str, baseline: str = BASELINE) -> float | None:
        """Relative carbon change against the baseline (-0.3 = 30 % less), if it ran."""
        if baseline not in self.runs:
            return None
        return self.runs[label].outcome.carbon_g_per_request / self.runs[baseline].outcome.carbon_g_per_request - 1.0

    def oracle_for(self, label: str) -> Bound:
        return self.oracles[self.runs[label].outcome.provisioning]

    def shift_vs_arrival(self, label: str) -> float | None:
        """For a ``LABEL+shift`` run: carbon per deferrable request against LABEL's run at arrival."""
        if not label.endswith(SHIFT) or label[: -len(SHIFT)] not in self.runs:
            return None
        shifted = self.runs[label].outcome.deferrable_carbon_g_per_request
        at_arrival = self.runs[label[: -len(SHIFT)]].outcome.deferrable_carbon_g_per_request
        return shifted / at_arrival - 1.0 if shifted is not None and at_arrival else None

    def oracle_reason(self, label: str) -> str:
        if label.endswith(SHIFT):
            return "shifted demand: the oracle bounds routing of the demand at arrival, not when it runs"
        return fairness(self.runs[label].outcome, self.oracle_for(label), self.preferred_variant, self.slo_target)

    def vs_oracle(self, label: str) -> float | None:
        """Relative excess carbon over the oracle's bound, or None when the comparison is not fair."""
        if self.oracle_reason(label):
            return None
        return self.runs[label].outcome.carbon_g_per_request / self.oracle_for(label).carbon_g_per_request - 1.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"scenario": self.scenario, "simulation": "events", **self.meta, "method": self.method,
                               "baseline": BASELINE, "policies": {}}
        for label, run in self.runs.items():
            entry = run.outcome.to_dict()
            entry["params"] = {"policy": run.policy, **run.params}
            reason = self.oracle_reason(label)
            entry["vs_baseline"] = self.vs_baseline(label)
            if label.endswith(SHIFT):
                entry["shift_vs_arrival"] = self.shift_vs_arrival(label)
            entry["vs_oracle"] = "n/a" if reason else self.vs_oracle(label)
            entry["oracle_comparable"] = not reason
            if reason:
                entry["oracle_not_comparable"] = reason
            out["policies"][label] = entry
        out["oracle"] = {mode: b.to_dict() for mode, b in self.oracles.items()}
        return out


def simulate(path: str | Path | None = None, *, scenario: Scenario | None = None, base_dir: Path | None = None,
             traces: dict[str, Trace] | None = None, seed: int | None = None,
             only: list[str] | None = None) -> EventResult | FluidResult:
    """Run a scenario file (or a validated ``scenario`` with its ``base_dir``); ``seed`` defaults to the workload's.

    ``only``: run just these labels (the baseline always runs, so ``vs_baseline`` stays defined).
    """
    if scenario is None:
        if path is None:
            raise ValueError("simulate needs a scenario path or a Scenario")
        scenario, base_dir = load_scenario(path)
    if seed is not None:
        scenario = scenario.model_copy(update={"workload": scenario.workload.model_copy(update={"seed": seed})})
    prep = prepare(scenario, base_dir or Path.cwd(), traces)
    if scenario.simulation == "fluid":
        if scenario.workload.deferrable is not None:
            raise BadRequest("workload.deferrable needs simulation: events")
        return simulate_fluid(prep)
    return simulate_events(prep, scenario.workload.seed, only)


def policy_runs(sc: Scenario) -> list[tuple[str, str, dict[str, Any], str]]:
    """(label, policy, params, provisioning) for the baselines and every listed policy."""
    runs = [(BASELINE, "round-robin", {}, "load-autoscaled"), (ALWAYS_ON, "round-robin", {}, "always-on")]
    for spec in sc.policies:
        if spec.name == "round-robin" and not spec.params and spec.label is None and spec.provisioning is None:
            continue  # the two baselines above
        if spec.key in (BASELINE, ALWAYS_ON):
            raise BadRequest(f"policy label {spec.key!r} is reserved for the baselines")
        runs.append((spec.key, spec.name, dict(spec.params), spec.provisioning or sc.provisioning))
    return runs


def simulate_events(prep: Prepared, seed: int, only: list[str] | None = None) -> EventResult:
    sc = prep.scenario
    wanted = policy_runs(sc)
    deferrable = sc.workload.deferrable
    preps = {label: prep for label, *_ in wanted}
    fractions: dict[str, np.ndarray | None] = {label: None for label, *_ in wanted}
    moved_share = None
    if deferrable is not None:
        steps = sampled_steps(prep)
        shift = shift_demand(
            prep.demand_rps, prep.intensity_g_per_kwh, np.array([p.pue for p in prep.topology.pools]),
            np.array([p.capacity_rps for p in prep.topology.pools]), steps, prep.step_s,
            deferrable.share, deferrable.deadline_h, deferrable.max_utilisation,
        )
        moved_share = shift.moved_share
        shifted = dataclasses.replace(prep, demand_rps=shift.demand_rps)
        at_arrival = np.full(len(prep.times), deferrable.share)
        for label, *_ in list(wanted):
            fractions[label] = at_arrival
            preps[label + SHIFT], fractions[label + SHIFT] = shifted, shift.deferrable_fraction
        wanted += [(label + SHIFT, *rest) for label, *rest in wanted]
    if only is not None:
        unknown = sorted(set(only) - {label for label, *_ in wanted})
        if unknown:
            raise BadRequest(f"no policy labelled {unknown} in scenario {sc.name}; have {[w[0] for w in wanted]}")
        wanted = [w for w in wanted if w[0] in only or w[0] == BASELINE]
    runs = {}
    for label, name, params, mode in wanted:
        policy = make_policy(name, **params)
        runs[label] = PolicyRun(label, name, policy.params(),
                                run_events(preps[label], name, params, mode, seed, fractions[label]))
    demand = effective_demand(prep, seed)
    oracles = {mode: solve_bound(prep, demand, mode) for mode in sorted({r.outcome.provisioning for r in runs.values()})}
    ev = sc.events
    sampling = f", 1 step in {ev.sample_every} simulated" if ev.sample_every > 1 else ""
    method = APPROXIMATION.format(window=ev.window_s, warmup=ev.warmup_s, sampling=sampling) + "; " + ENERGY
    meta = _meta(prep, seed)
    if deferrable is not None:
        meta["deferrable"] = {**deferrable.model_dump(), "moved_share": moved_share}
        method += ("; deferrable work shifted on a perfect forecast (the trace) to the least marginal intensity "
                   "before its deadline, each deferred request charged its step's average carbon")
    return EventResult(sc.name, meta, method, runs, oracles, sc.slo_target, sc.request.variant)


def _meta(prep: Prepared, seed: int) -> dict[str, Any]:
    sc = prep.scenario
    pools = {}
    for pool, m in zip(prep.topology.pools, prep.pool_models):
        pools[pool.name] = {
            "region": pool.region, "hardware": pool.hardware, "capacity_rps": pool.capacity_rps,
            "replicas": {"min": m.replicas_min, "max": m.replicas_max, "initial": m.replicas_initial},
            "replica_capacity_rps": m.replica_capacity_rps, "servers_per_replica": m.servers_per_replica,
            "idle_w_per_replica": m.idle_w_per_replica, "idle_source": m.idle_source, "startup_s": m.startup_s,
            "batch_delay_ms": m.batch_delay_ms, "service": {v: s.describe() for v, s in m.service.items()},
            "energy": {v: c.to_dict() for v, c in pool.energy.items()},
        }
    mean = float(prep.demand_rps.sum(axis=1).mean())
    return {
        "start": sc.start.isoformat(),
        "duration_h": sc.duration_h,
        "steps": len(prep.times),
        "step_min": sc.step_min,
        "seed": seed,
        "slo_p99_ms": sc.slo_p99_ms,
        "slo_target": sc.slo_target,
        "provisioning": sc.provisioning,
        "mean_rps": mean if math.isfinite(mean) else None,
        "requests": float(prep.demand_rps.sum() * prep.step_s),
        "traces": prep.trace_sources,
        "intensity_lag_min": sc.intensity_lag_min,
        "gateway": sc.gateway.model_dump(),
        "arrivals": sc.arrivals.model_dump(),
        "events": sc.events.model_dump(),
        "autoscaling": sc.autoscaling.model_dump(),
        "pools": pools,
    }
