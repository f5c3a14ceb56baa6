"""Scenario files: validated schema, the topology they imply, replayed traces and the arrival process.

A scenario (paths in ``traces`` and ``samples`` are relative to the scenario file)::

    name: week-eu
    start: 2020-02-17T00:00:00Z
    duration_h: 168
    step_min: 15                 # demand and intensity are held for one step
    simulation: events           # or fluid (the old rate model, M/M/c formula latency)
    provisioning: load-autoscaled  # or always-on, or policy (carbon-aware: routing/autoscale.py)
    slo_p99_ms: 50
    slo_target: 0.99             # attainment a policy needs to be compared with the oracle
    traces: {DE: ../../../shared/data/grid/DE_2020H1.csv, FR: ..., GB: ...}
    workload: {mean_rps: 1000, diurnal_amplitude: 0.5, peak_hour_utc: 13, noise: 0.05, seed: 7}
    # optional in workload: deferrable {share: 0.3, deadline_h: 12}: every policy also runs as LABEL+shift
    clients:
      - {region: DE, share: 0.5, rtt_ms: {DE: 3, FR: 12, GB: 16}}
    pools:
      - {name: fr-x86, region: FR, hardware: x86, service_ms: 8, pue: 1.2,
         replicas: {min: 1, max: 4, initial: 1}, replica_capacity_rps: 500, startup_s: 30,
         idle_w_per_replica: 2.96, service: {dist: lognormal, mean_ms: 8, p99_ms: 16}, batch_delay_ms: 0,
         energy_j_per_request: {idle_w: 11.84, dynamic_j: 0.015, source: "..."}}
    policies: [round-robin, lowest-carbon, {name: weighted, params: {weights: {carbon: 1, latency: 1}}}]
    # optional: request (model/variant/allowed_variants/tenant), budget, outages, intensity_lag_min,
    # gateway {ingress_replicas, decision_cadence_ms, overhead_ms, rtt_jitter_ms},
    # arrivals {process: poisson | mmpp, burst_factor, burst_fraction, mean_burst_s},
    # events {window_s, warmup_s, sample_every}, autoscaling {target_utilisation}

Pool defaults, from the older keys: one replica (``capacity_rps``), ``idle_w_per_replica`` the
preferred variant's curve ``idle_w / replicas.max`` (0 for tables), service exponential with mean
``service_ms`` (what the policies' M/M/c model assumes), no batching delay, no startup time.
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
from routing.simulator.provisioning import PoolModel, check_mode
from routing.simulator.service import ServiceTime
from routing.topology import ANY_VARIANT, Pool, Topology, curve_from_spec, validation_message
from wattgate.errors import BadRequest
from wattgate.yamlfile import read_yaml

__all__ = ["Scenario", "Prepared", "load_scenario", "prepare"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Deferrable(_Strict):
    """A share of the requests has no one waiting: it may run up to ``deadline_h`` after it arrives
    (``routing/simulator/deferral.py``), on at most ``max_utilisation`` of the pools' capacity."""

    share: float = Field(gt=0, le=1)
    deadline_h: float = Field(gt=0, le=168)
    max_utilisation: float = Field(0.7, gt=0, le=1)


class Workload(_Strict):
    mean_rps: float = Field(gt=0)
    diurnal_amplitude: float = Field(0.0, ge=0, lt=1)
    peak_hour_utc: float = Field(13.0, ge=0, lt=24)
    # Sigma of a mean-one lognormal factor drawn per step (demand the forecast did not see).
    noise: float = Field(0.05, ge=0, le=1)
    seed: int = 0
    deferrable: Deferrable | None = None


class Client(_Strict):
    region: str
    share: float = Field(gt=0, le=1)
    rtt_ms: dict[str, float]


class ServiceSpec(_Strict):
    dist: Literal["lognormal", "exponential", "deterministic", "empirical"]
    mean_ms: float | None = Field(None, gt=0)
    p99_ms: float | None = Field(None, gt=0)
    samples: str | None = None
    source: str | None = None


class Replicas(_Strict):
    min: int = Field(1, ge=0)
    max: int = Field(1, ge=1)
    initial: int | None = None

    @model_validator(mode="after")
    def _ordered(self) -> "Replicas":
        if self.min > self.max or not (self.initial is None or self.min <= self.initial <= self.max):
            raise ValueError(f"replicas need min <= initial <= max, got {self.min}, {self.initial}, {self.max}")
        return self


class ScenarioPool(_Strict):
    name: str
    region: str
    hardware: Literal["x86", "arm", "gpu", "tpu"]
    capacity_rps: float | None = Field(None, gt=0)
    service_ms: float = Field(gt=0)
    pue: float = Field(1.0, ge=1, le=3)
    energy_j_per_request: Any = None
    energy_by_variant: dict[str, Any] | None = None
    replicas: Replicas | None = None
    replica_capacity_rps: float | None = Field(None, gt=0)
    idle_w_per_replica: float | None = Field(None, ge=0)
    startup_s: float = Field(0.0, ge=0)
    service: ServiceSpec | None = None
    service_by_variant: dict[str, ServiceSpec] = Field(default_factory=dict)
    batch_delay_ms: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _one_energy(self) -> "ScenarioPool":
        if (self.energy_j_per_request is None) == (self.energy_by_variant is None):
            raise ValueError(f"pool {self.name}: give exactly one of energy_j_per_request or energy_by_variant")
        n = self.replicas.max if self.replicas else 1
        if self.capacity_rps is None:
            if self.replica_capacity_rps is None:
                raise ValueError(f"pool {self.name}: give capacity_rps or replica_capacity_rps")
            self.capacity_rps = n * self.replica_capacity_rps
        elif self.replica_capacity_rps is None:
            self.replica_capacity_rps = self.capacity_rps / n
        elif abs(self.capacity_rps - n * self.replica_capacity_rps) > 1e-6 * self.capacity_rps:
            raise ValueError(f"pool {self.name}: capacity_rps {self.capacity_rps:g} != replicas.max x replica_capacity_rps")
        return self


class Gateway(_Strict):
    """What the live gateway is like: its replicas each route a share of the traffic on their own view."""

    ingress_replicas: int = Field(1, ge=1, le=64)
    decision_cadence_ms: float = Field(100.0, ge=0)
    overhead_ms: float = Field(0.5, ge=0)
    rtt_jitter_ms: float = Field(0.0, ge=0)  # mean of an exponential added to each request's RTT


class Arrivals(_Strict):
    """Poisson within a step, or a two-state MMPP: bursts at ``burst_factor`` x the calm rate."""

    process: Literal["poisson", "mmpp"] = "poisson"
    burst_factor: float = Field(4.0, gt=1)
    burst_fraction: float = Field(0.1, gt=0, lt=1)
    mean_burst_s: float = Field(0.5, gt=0)


class Events(_Strict):
    """The event simulator simulates ``window_s`` (after ``warmup_s``) of one step in ``sample_every``."""

    window_s: float = Field(1.0, gt=0, le=600)
    warmup_s: float = Field(0.5, ge=0, le=600)
    sample_every: int = Field(1, ge=1)


class Autoscaling(_Strict):
    target_utilisation: float = Field(0.7, gt=0, le=1)


class PolicySpec(_Strict):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = None
    provisioning: Literal["always-on", "load-autoscaled", "policy"] | None = None

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
    simulation: Literal["events", "fluid"] = "events"
    provisioning: Literal["always-on", "load-autoscaled", "policy"] = "load-autoscaled"
    slo_p99_ms: float = Field(gt=0)
    slo_target: float = Field(0.99, gt=0, le=1)
    intensity_lag_min: float = Field(0.0, ge=0)
    traces: dict[str, str]
    workload: Workload
    clients: list[Client] = Field(min_length=1)
    pools: list[ScenarioPool] = Field(min_length=1)
    policies: list[PolicySpec] = Field(min_length=1)
    request: RequestSpec = RequestSpec()
    budget: BudgetSpec | None = None
    outages: list[Outage] = Field(default_factory=list)
    gateway: Gateway = Gateway()
    arrivals: Arrivals = Arrivals()
    events: Events = Events()
    autoscaling: Autoscaling = Autoscaling()

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
        if self.simulation == "events":
            for mode in {self.provisioning, *(p.provisioning for p in self.policies if p.provisioning)}:
                check_mode(mode)
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
    pool_models: tuple[PoolModel, ...] = ()  # the event simulator's view of each pool

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
        sc, topo, times, step_s, demand, actual, observed, healthy, {r: t.source for r, t in loaded.items()},
        tuple(pool_model(sc, p, topo.pool(p.name), base_dir) for p in sc.pools),
    )


def pool_model(sc: Scenario, spec: ScenarioPool, pool: Pool, base_dir: Path) -> PoolModel:
    """Replicas, idle power and service times of one pool, with the defaults the module names."""
    where = f"pool {spec.name}"
    reps = spec.replicas or Replicas()
    curve = pool.curve_for(sc.request.variant)
    if spec.idle_w_per_replica is not None:
        idle_w, idle_source = spec.idle_w_per_replica, "scenario"
    elif curve.idle_w is not None:
        idle_w, idle_source = curve.idle_w / reps.max, f"curve idle_w / {reps.max} replica(s) ({curve.source or curve.method})"
    else:
        idle_w, idle_source = 0.0, "none given (table curve): idle not charged"
    default = spec.service or ServiceSpec(dist="exponential", mean_ms=spec.service_ms, source="default: exponential, mean service_ms")
    service = {ANY_VARIANT: ServiceTime.from_spec(default.model_dump(), base_dir, where)}
    for variant, s in spec.service_by_variant.items():
        service[variant] = ServiceTime.from_spec(s.model_dump(), base_dir, f"{where} variant {variant}")
    mean_ms = service.get(sc.request.variant, service[ANY_VARIANT]).mean_ms
    rc = spec.replica_capacity_rps
    return PoolModel(
        name=spec.name, replicas_min=reps.min, replicas_max=reps.max,
        replicas_initial=reps.min if reps.initial is None else reps.initial, replica_capacity_rps=rc,
        idle_w_per_replica=idle_w, idle_source=idle_source, startup_s=spec.startup_s,
        servers_per_replica=max(1, round(rc * mean_ms / 1000.0)), batch_delay_ms=spec.batch_delay_ms, service=service,
    )
