"""Spread: the same scenario over every week its traces cover and several seeds, summarised per policy.

``wattgate simulate SCENARIO --weeks all --seeds 5`` shifts the scenario's start by whole weeks
(every shift whose traces cover it) and runs each week with seeds ``workload.seed + 0..4`` (the
seed draws the demand noise, the arrivals and the service times). Per policy and figure it reports
the mean over runs, min, max and the 95 % confidence interval of the mean (Student t over runs;
weeks differ far more than seeds, so read it as "this policy over H1 2020", not as seed noise).
``vs_oracle`` is summarised over the runs where the comparison is fair, and says in how many it was.
"""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from routing.intensity.traces import Trace, load_trace
from routing.simulator.runner import BASELINE, EventResult, simulate
from routing.simulator.scenario import Scenario, load_scenario
from wattgate.errors import BadRequest

__all__ = ["FIGURES", "Spread", "SweepResult", "format_sweep", "sweep", "weeks_covered"]

FIGURES = ("carbon_g_per_request", "vs_baseline", "vs_oracle", "energy_j_per_request", "idle_energy_j_per_request",
           "active_energy_j_per_request", "p99_latency_ms", "slo_attainment", "shed_fraction",
           "deferrable_carbon_g_per_request", "shift_vs_arrival")


@dataclass(frozen=True)
class Spread:
    n: int
    mean: float
    min: float
    max: float
    ci95_low: float
    ci95_high: float

    @classmethod
    def of(cls, values: list[float]) -> "Spread | None":
        x = np.array([v for v in values if v is not None and math.isfinite(v)])
        if x.size == 0:
            return None
        half = float(stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan
        return cls(int(x.size), float(x.mean()), float(x.min()), float(x.max()), float(x.mean()) - half, float(x.mean()) + half)


@dataclass(frozen=True)
class SweepResult:
    scenario: str
    weeks: tuple[str, ...]
    seeds: tuple[int, ...]
    runs: int
    method: str
    spreads: dict[str, dict[str, Spread | None]]  # label -> figure -> spread
    fair_runs: dict[str, int]  # label -> runs in which vs_oracle was a fair comparison
    na_reasons: dict[str, list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "weeks": list(self.weeks), "seeds": list(self.seeds), "runs": self.runs,
            "method": self.method, "baseline": BASELINE, "interval": "95% CI of the mean over week x seed runs (t)",
            "policies": {
                label: {
                    "oracle_comparable_runs": self.fair_runs[label],
                    "oracle_not_comparable": sorted(set(self.na_reasons[label]))[:5],
                    **{f: (s.__dict__ if s else None) for f, s in figs.items()},
                }
                for label, figs in self.spreads.items()
            },
        }


def weeks_covered(sc: Scenario, traces: dict[str, Trace]) -> list[datetime]:
    """Every start shifted from the scenario's by whole weeks whose run the traces cover."""
    lag = timedelta(minutes=sc.intensity_lag_min)
    span = timedelta(hours=sc.duration_h)
    regions = {p.region for p in sc.pools}
    first = max(traces[r].start for r in regions) + lag
    last = min(traces[r].end for r in regions) + timedelta(hours=2) - span
    week = timedelta(days=7)
    k0 = math.ceil((first - sc.start) / week)
    k1 = math.floor((last - sc.start) / week)
    return [sc.start + k * week for k in range(k0, k1 + 1)]


def _traces(sc: Scenario, base_dir: Path) -> dict[str, Trace]:
    out = {}
    for region, rel in sc.traces.items():
        path = Path(rel) if Path(rel).is_absolute() else base_dir / rel
        if not path.exists():
            raise BadRequest(f"trace for {region} not found at {path}")
        out[region] = load_trace(path, region=region)
    return out


_WORKER_TRACES: dict[str, Trace] = {}


def _one(sc: Scenario, base_dir: Path, start: datetime, seed: int, only: list[str] | None) -> dict[str, Any]:
    global _WORKER_TRACES
    if not _WORKER_TRACES:
        _WORKER_TRACES = _traces(sc, base_dir)
    r = simulate(scenario=sc.model_copy(update={"start": start}), base_dir=base_dir, traces=_WORKER_TRACES,
                 seed=seed, only=only)
    if not isinstance(r, EventResult):
        raise BadRequest("--weeks/--seeds need simulation: events")
    out = {}
    for label, o in r.policies.items():
        row = {f: getattr(o, f) for f in FIGURES if hasattr(o, f)}
        row["vs_baseline"] = r.vs_baseline(label)
        row["vs_oracle"] = r.vs_oracle(label)
        row["shift_vs_arrival"] = r.shift_vs_arrival(label)
        row["reason"] = r.oracle_reason(label)
        out[label] = row
    return {"policies": out, "method": r.method}


def sweep(path: str | Path, weeks: str = "all", seeds: int = 1, only: list[str] | None = None, jobs: int = 1,
          progress=None) -> SweepResult:
    sc, base_dir = load_scenario(path)
    if sc.simulation != "events":
        raise BadRequest("--weeks/--seeds need simulation: events")
    starts = weeks_covered(sc, _traces(sc, base_dir))
    if weeks != "all":
        try:
            starts = starts[: int(weeks)]
        except ValueError:
            raise BadRequest(f"--weeks takes 'all' or a number of weeks, got {weeks!r}") from None
    if not starts or seeds < 1:
        raise BadRequest("nothing to run: no week covered by the traces, or --seeds < 1")
    seed_list = [sc.workload.seed + i for i in range(seeds)]
    tasks = [(start, seed) for start in starts for seed in seed_list]
    results = []
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            futures = [pool.submit(_one, sc, base_dir, start, seed, only) for start, seed in tasks]
            for i, f in enumerate(futures):
                results.append(f.result())
                if progress:
                    progress(i + 1, len(tasks))
    else:
        for i, (start, seed) in enumerate(tasks):
            results.append(_one(sc, base_dir, start, seed, only))
            if progress:
                progress(i + 1, len(tasks))
    labels = list(results[0]["policies"])
    spreads, fair, reasons = {}, {}, {}
    for label in labels:
        rows = [r["policies"][label] for r in results]
        spreads[label] = {f: Spread.of([row.get(f) for row in rows]) for f in FIGURES}
        fair[label] = sum(1 for row in rows if row["vs_oracle"] is not None)
        reasons[label] = [row["reason"] for row in rows if row["reason"]]
    return SweepResult(sc.name, tuple(s.date().isoformat() for s in starts), tuple(seed_list), len(results),
                       results[0]["method"], spreads, fair, reasons)


def format_sweep(r: SweepResult) -> str:
    head = (f"scenario {r.scenario}: {len(r.weeks)} weeks ({r.weeks[0]} .. {r.weeks[-1]}) x {len(r.seeds)} seeds = "
            f"{r.runs} runs; mean [95% CI of the mean] (min .. max) per policy; baseline {BASELINE}")
    scale = {"carbon_g_per_request": (1e6, "µgCO2e/req", ".3f"), "energy_j_per_request": (1e3, "mJ/req", ".2f"),
             "idle_energy_j_per_request": (1e3, "idle mJ/req", ".2f"),
             "active_energy_j_per_request": (1e3, "active mJ/req", ".2f"), "p99_latency_ms": (1, "p99 ms", ".1f"),
             "slo_attainment": (100, "SLO att. %", ".2f"), "shed_fraction": (100, "shed %", ".3f"),
             "vs_baseline": (100, "vs baseline %", "+.1f"), "vs_oracle": (100, "vs oracle %", "+.1f"),
             "deferrable_carbon_g_per_request": (1e6, "deferrable µg/req", ".3f"),
             "shift_vs_arrival": (100, "shift vs arrival %", "+.1f")}
    lines = [head]
    for label, figs in r.spreads.items():
        lines.append(f"{label}  (vs oracle fair in {r.fair_runs[label]} of {r.runs} runs)")
        for f in FIGURES:
            s = figs[f]
            k, name, fmt = scale[f]
            if s is None:
                if f not in ("deferrable_carbon_g_per_request", "shift_vs_arrival"):  # only with workload.deferrable
                    lines.append(f"  {name:<15} n/a")
                continue
            ci = "" if math.isnan(s.ci95_low) else f" [{s.ci95_low * k:{fmt}}, {s.ci95_high * k:{fmt}}]"
            lines.append(f"  {name:<15} {s.mean * k:{fmt}}{ci} ({s.min * k:{fmt}} .. {s.max * k:{fmt}})")
        for reason in sorted(set(r.na_reasons[label]))[:3]:
            lines.append(f"  vs oracle n/a: {reason}")
    lines.append(f"({r.method})")
    return "\n".join(lines)
