"""Scenario files: validated schema, the topology they imply, replayed traces and the arrival process.

A scenario (paths in ``traces`` are relative to the scenario file)::

    name: week-eu
    start: 2020-02-17T00:00:00Z
    duration_h: 168
    step_min: 15                 # time step of the fluid model
    slices_per_client: 20        # each client's traffic per step is routed in this many slices
    slo_p99_ms: 50
    traces: {DE: ../../../shared/data/grid/DE_2020H1.csv, FR: ..., GB: ...}
    workload: {mean_rps: 1000, diurnal_amplitude: 0.5, peak_hour_utc: 13, noise: 0.05, seed: 7}
    clients:
      - {region: DE, share: 0.5, rtt_ms: {DE: 3, FR: 12, GB: 16}}
    pools:
      - {name: fr-x86, region: FR, hardware: x86, capacity_rps: 700, service_ms: 8, pue: 1.2,
         energy_j_per_request: {idle_w: 3, dynamic_j: 0.015, source: "..."}}
    policies: [round-robin, lowest-carbon, {name: weighted, params: {weights: {carbon: 1, latency: 1}}}]
    # optional: request (model/variant/allowed_variants/tenant), budget, outages, intensity_lag_min
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from routing.intensity.traces import Trace, load_trace
from routing.policies import make_policy
from routing.topology import Pool, Topology, curve_from_spec, validation_message
from wattgate.errors import BadRequest
from wattgate.yamlfile import read_yaml

__all__ = ["Scenario", "Prepared", "load_scenario", "prepare"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Workload(_Strict):
    mean_rps: float = Field(gt=0)
    diurnal_amplitude: float = Field(0.0, ge=0, lt=1)
    peak_hour_utc: float = Field(13.0, ge=0, lt=24)
    # Sigma of a mean-one lognormal factor drawn per step (demand the forecast did not see).
    noise: float = Field(0.05, ge=0, le=1)
    seed: int = 0


class Client(_Strict):
    region: str
    share: float = Field(gt=0, le=1)
    rtt_ms: dict[str, float]


class ScenarioPool(_Strict):
    name: str
    region: str
    hardware: Literal["x86", "arm", "gpu", "tpu"]
    capacity_rps: float = Field(gt=0)
    service_ms: float = Field(gt=0)
    pue: float = Field(1.0, ge=1, le=3)
    energy_j_per_request: Any = None
    energy_by_variant: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_energy(self) -> "ScenarioPool":
        if (self.energy_j_per_request is None) == (self.energy_by_variant is None):
            raise ValueError(f"pool {self.name}: give exactly one of energy_j_per_request or energy_by_variant")
        return self


class PolicySpec(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None

    @property
    def key(self) -> str:
        return self.label or self.name


class RequestSpec(_Strict):
    model: str = "model"
    variant: str = "default"
    allowed_variants: list[str] = Field(default_factory=list)
    tenant: str = "default"


class BudgetSpec(_Strict):
    scope: Literal["model", "tenant"] = "tenant"
    carbon_g: float = Field(gt=0)
    period_h: float = Field(24.0, gt=0)


class Outage(_Strict):
    pool: str
    start_h: float = Field(ge=0)
    end_h: float = Field(gt=0)


class Scenario(_Strict):
    name: str = "scenario"
    start: datetime
    duration_h: float = Field(gt=0, le=24 * 366)
    step_min: float = Field(15.0, gt=0, le=24 * 60)
    slices_per_client: int = Field(20, ge=1, le=1000)
    slo_p99_ms: float = Field(gt=0)
    intensity_lag_min: float = Field(0.0, ge=0)
    traces: dict[str, str]
    workload: Workload
    clients: list[Client] = Field(min_length=1)
    pools: list[ScenarioPool] = Field(min_length=1)
    policies: list[PolicySpec] = Field(min_length=1)
    request: RequestSpec = RequestSpec()
    budget: BudgetSpec | None = None
    outages: list[Outage] = Field(default_factory=list)

    @field_validator("start")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)

    @field_validator("policies", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        return [{"name": p} if isinstance(p, str) else p for p in v] if isinstance(v, list) else v

    @model_validator(mode="after")
    def _consistent(self) -> "Scenario":
        total = sum(c.share for c in self.clients)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"client shares must sum to 1, got {total:.6f}")
        regions = {p.region for p in self.pools}
        missing = sorted(regions - set(self.traces))
        if missing:
            raise ValueError(f"no trace for pool region(s) {missing}")
        for c in self.clients:
            lacking = sorted(regions - set(c.rtt_ms))
            if lacking:
                raise ValueError(f"client {c.region}: no rtt_ms to region(s) {lacking}")
        keys = [p.key for p in self.policies]
        if len(set(keys)) != len(keys) or "oracle" in keys:
            raise ValueError(f"policy labels must be unique and not 'oracle', got {keys}")
        names = {p.name for p in self.pools}
        for o in self.outages:
            if o.pool not in names:
                raise ValueError(f"outage names unknown pool {o.pool!r}")
        for p in self.policies:
            make_policy(p.name, **p.params)
        return self


@dataclass(frozen=True)
class Prepared:
    """A scenario turned into arrays: one row per time step."""

    scenario: Scenario
    topology: Topology
    times: tuple[datetime, ...]
    step_s: float
    demand_rps: np.ndarray  # [step, client]
    intensity_g_per_kwh: np.ndarray  # [step, pool] actual, for accounting and the oracle
    observed_g_per_kwh: np.ndarray  # [step, pool] what a live provider reports (lagged)
    healthy: np.ndarray  # [step, pool] bool
    trace_sources: dict[str, str]

    @property
    def client_regions(self) -> tuple[str, ...]:
        return tuple(c.region for c in self.scenario.clients)


def load_scenario(path: str | Path) -> tuple[Scenario, Path]:
    path = Path(path)
    data = read_yaml(path, "scenario")
    try:
        return Scenario.model_validate(data), path.resolve().parent
    except ValidationError as exc:
        raise BadRequest(f"invalid scenario {path}: {validation_message(exc)}") from exc


def build_topology(sc: Scenario) -> Topology:
    """Scenario pools as a routing topology; RTTs come from the client table."""
    pools = []
    for p in sc.pools:
        where = f"pool {p.name}"
        energy = (
            {sc.request.variant: curve_from_spec(p.energy_j_per_request, where)}
            if p.energy_by_variant is None
            else {v: curve_from_spec(s, f"{where} variant {v}") for v, s in p.energy_by_variant.items()}
        )
        rtt = {c.region: c.rtt_ms[p.region] for c in sc.clients}
        pools.append(Pool(p.name, p.region, p.hardware, energy, p.capacity_rps, p.service_ms, rtt, p.pue))
    if not any(p.serves(sc.request.variant) for p in pools):
        raise BadRequest(f"no pool serves the requested variant {sc.request.variant!r}")
    return Topology(tuple(pools), tuple(c.region for c in sc.clients))


def prepare(sc: Scenario, base_dir: Path, traces: dict[str, Trace] | None = None) -> Prepared:
    """Load traces (relative to ``base_dir``) and draw the arrival process from the seed."""
    topo = build_topology(sc)
    step_s = sc.step_min * 60.0
    n = max(1, int(math.ceil(sc.duration_h * 3600.0 / step_s - 1e-9)))
    times = tuple(sc.start + timedelta(seconds=i * step_s) for i in range(n))
    end = sc.start + timedelta(hours=sc.duration_h)
    loaded: dict[str, Trace] = dict(traces or {})
    for region, rel in sc.traces.items():
        if region in loaded:
            continue
        path = Path(rel) if Path(rel).is_absolute() else base_dir / rel
        if not path.exists():
            raise BadRequest(f"trace for {region} not found at {path}")
        loaded[region] = load_trace(path, region=region)
    lag = timedelta(minutes=sc.intensity_lag_min)
    for region in {p.region for p in topo.pools}:
        tr = loaded[region]
        if tr.start > sc.start - lag or tr.end < end - timedelta(hours=2):
            raise BadRequest(
                f"trace {region} covers {tr.start:%Y-%m-%d %H:%M} to {tr.end:%Y-%m-%d %H:%M} UTC; "
                f"the scenario needs {sc.start - lag:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
            )
    epoch = np.array([t.timestamp() for t in times])
    actual = np.stack([loaded[p.region].at_epoch_s(epoch) for p in topo.pools], axis=1)
    observed = np.stack([loaded[p.region].at_epoch_s(epoch - lag.total_seconds()) for p in topo.pools], axis=1)

    w = sc.workload
    rng = np.random.default_rng(w.seed)
    hours = (epoch % 86400.0) / 3600.0
    diurnal = 1.0 + w.diurnal_amplitude * np.cos(2 * np.pi * (hours - w.peak_hour_utc) / 24.0)
    noise = np.exp(rng.normal(-0.5 * w.noise**2, w.noise, size=n)) if w.noise > 0 else np.ones(n)
    total = w.mean_rps * diurnal * noise
    shares = np.array([c.share for c in sc.clients])
    demand = total[:, None] * shares[None, :]

    healthy = np.ones((n, len(topo.pools)), dtype=bool)
    offsets_h = (epoch - sc.start.timestamp()) / 3600.0
    for o in sc.outages:
        j = topo.names.index(o.pool)
        healthy[(offsets_h >= o.start_h) & (offsets_h < o.end_h), j] = False
    return Prepared(
        sc, topo, times, step_s, demand, actual, observed, healthy, {r: t.source for r, t in loaded.items()}
    )
