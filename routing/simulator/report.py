"""Render a simulation result as a table: one row per policy, then the oracle, the n/a reasons and the method."""

from __future__ import annotations

import math

from routing.simulator.fluid import FluidResult, format_fluid
from routing.simulator.runner import EventResult

__all__ = ["format_table"]


def format_table(result: EventResult | FluidResult) -> str:
    if isinstance(result, FluidResult):
        return format_fluid(result)
    m = result.meta
    pools = list(m["pools"])
    ev = m["events"]
    sampled = f", 1 in {ev['sample_every']} simulated" if ev["sample_every"] > 1 else ""
    head = (
        f"scenario {result.scenario} (event-level, seed {m['seed']}): {m['start']} for {m['duration_h']:g} h, "
        f"{m['steps']} steps of {m['step_min']:g} min{sampled}, mean {m['mean_rps']:.0f} rps, "
        f"SLO p99 {m['slo_p99_ms']:g} ms for {m['slo_target']:.0%} of requests"
    )
    cols = ["policy", "provisioning", "µgCO2e/req", "mJ/req", "idle mJ", "active mJ", "p99 ms", "SLO att.", "shed",
            "vs baseline", "vs oracle"] + [f"%{p}" for p in pools]
    rows = []
    for label, run in result.runs.items():
        o = run.outcome
        vb, vo = result.vs_baseline(label), result.vs_oracle(label)
        rows.append(
            [label, o.provisioning, f"{o.carbon_g_per_request * 1e6:.3f}", f"{o.energy_j_per_request * 1e3:.2f}",
             f"{o.idle_energy_j_per_request * 1e3:.2f}", f"{o.active_energy_j_per_request * 1e3:.2f}",
             _ms(o.p99_latency_ms), f"{o.slo_attainment:.4f}", f"{o.shed_fraction:.2%}",
             "-" if vb is None else f"{vb:+.1%}", "n/a" if vo is None else f"{vo:+.1%}"]
            + [f"{o.share_by_pool[p]:.0%}" for p in pools]
        )
    for mode, b in result.oracles.items():
        rows.append(
            [f"oracle ({'bound' if b.is_bound else 'NOT a bound'})", mode, f"{b.carbon_g_per_request * 1e6:.3f}",
             f"{b.energy_j_per_request * 1e3:.2f}", f"{b.idle_energy_j_per_request * 1e3:.2f}",
             f"{b.active_energy_j_per_request * 1e3:.2f}", "", "", "", "", ""]
            + [f"{b.share_by_pool[p]:.0%}" for p in pools]
        )
    widths = [max(len(str(r[i])) for r in [cols] + rows) for i in range(len(cols))]
    lines = [head, "  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in rows]
    for label in result.runs:
        reason = result.oracle_reason(label)
        if reason:
            lines.append(f"vs oracle n/a for {label}: {reason}")
    deferrable = m.get("deferrable")
    if deferrable is not None:
        lines.append(f"deferrable: {deferrable['share']:.0%} of requests, deadline {deferrable['deadline_h']:g} h, "
                     f"{deferrable['moved_share']:.0%} of them run later than they arrived")
        for label, run in result.runs.items():
            shifted = result.shift_vs_arrival(label)
            g = run.outcome.deferrable_carbon_g_per_request
            if g is not None:
                vs = "" if shifted is None else f" ({shifted:+.1%} vs {label[:-len('+shift')]} at arrival)"
                lines.append(f"  {label}: {g * 1e6:.3f} µgCO2e per deferrable request{vs}")
    for mode, b in result.oracles.items():
        if not b.is_bound:
            lines.append(f"oracle ({mode}) is not a bound: demand exceeds the healthy capacity in {b.infeasible_steps} step(s)")
    lines.append(f"({result.method})")
    return "\n".join(lines)


def _ms(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.1f}"
