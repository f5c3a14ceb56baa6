"""Carbon-aware autoscaling: how many replicas a pool should run, and why.

One decision function, :func:`decide`, used by the live gateway (the Ray Serve autoscaling policy in
``gateway/autoscaling.py`` calls it on every controller tick) and by the event simulator
(``provisioning: policy``), so what the simulator measures is what the gateway does.

The demand signal is the router's *intent*: the load its plan would send the pool if the pool were
fully provisioned (``RouterCore.intent``). The carbon-aware router already sends nothing to pools in
dirty regions while cleaner ones have room, so their intent falls to zero and they shrink to
``min_replicas``; clean pools' intent rises first, so they grow first. On top of the intent:

- **SLO-sized, energy-curve-consolidated.** The pool needs the fewest replicas whose Erlang-C p99
  (wait + service, with ``servers_per_replica`` servers each) fits the tightest latency budget of
  the traffic the plan sends it, for the intent plus ``headroom``. Among that count and more, the
  one with the least power ``n x idle_w + load x active_j(load / n)`` wins: fuller replicas where
  idle power or batching makes them greener (GPU pools especially), more where the curve says so.
- **Pre-warm.** With a forecast, the intent under the forecast intensity ``startup_s`` ahead is
  sized the same way; the pool starts the larger count, so a region about to become the cleanest
  has warm replicas when the router turns to it.
- **Cold start is the router's concern**: it never sends latency-bound traffic to a pool with no
  warm replica (``RouterCore.set_warm``); this module only says how many replicas to run.

Scaling delays (``upscale_delay_s``, ``downscale_delay_s``) are applied by Ray Serve's autoscaler
around the live policy; the simulator's 15-minute steps are longer than any delay.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from routing.queueing import wait_quantile_ms
from routing.topology import EnergyCurve, Pool
from wattgate.errors import BadRequest

__all__ = ["LOAD_ONLY_UTILISATION", "ScalingDecision", "ScalingSignal", "ScalingSpec", "decide", "active_j", "size_for"]

# What a load-only autoscaler aims at (Ray Serve users' usual target); reasons compare against it.
LOAD_ONLY_UTILISATION = 0.7
REASONS = ("load", "carbon", "forecast", "cold start", "consolidate", "idle")


@dataclass(frozen=True)
class ScalingSpec:
    """Per pool: replica bounds, what a replica can take, what it costs idle, and the policy's weights."""

    min_replicas: int
    max_replicas: int
    replica_capacity_rps: float
    service_ms: float
    idle_w_per_replica: float
    servers_per_replica: int = 1
    initial_replicas: int | None = None
    startup_s: float = 30.0
    upscale_delay_s: float = 0.0
    downscale_delay_s: float = 60.0
    headroom: float = 0.1  # size for intent x (1 + headroom)
    overhead_ms: float = 0.0  # latency outside the pool's queue and service (gateway, batching, jitter)

    def __post_init__(self) -> None:
        if not (0 <= self.min_replicas <= self.max_replicas and self.max_replicas >= 1):
            raise BadRequest(f"autoscaling needs 0 <= min_replicas <= max_replicas, max >= 1; got {self.min_replicas}, {self.max_replicas}")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise BadRequest(f"initial_replicas {self.initial_replicas} outside [{self.min_replicas}, {self.max_replicas}]")
        for name in ("replica_capacity_rps", "service_ms"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise BadRequest(f"autoscaling {name} must be > 0, got {value}")
        for name in ("idle_w_per_replica", "startup_s", "upscale_delay_s", "downscale_delay_s", "headroom", "overhead_ms"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise BadRequest(f"autoscaling {name} must be >= 0, got {value}")
        if self.servers_per_replica < 1:
            raise BadRequest(f"servers_per_replica must be >= 1, got {self.servers_per_replica}")

    @classmethod
    def from_pool(cls, pool: Pool, variant: str | None = None, **overrides: Any) -> "ScalingSpec":
        """From a topology pool's ``autoscaling:`` block (KeyError-free: BadRequest if it has none)."""
        if pool.autoscaling is None:
            raise BadRequest(f"pool {pool.name} has no autoscaling block")
        a = {**pool.autoscaling, **overrides}
        n_max = int(a.get("max_replicas", 1))
        rc = float(a.get("replica_capacity_rps") or pool.capacity_rps / n_max)
        idle = a.get("idle_w_per_replica")
        if idle is None:
            curve = pool.curve_for(variant)
            idle = (curve.idle_w or 0.0) / n_max
        return cls(
            min_replicas=int(a.get("min_replicas", 0)), max_replicas=n_max, initial_replicas=a.get("initial_replicas"),
            replica_capacity_rps=rc, service_ms=pool.service_ms, idle_w_per_replica=float(idle),
            servers_per_replica=max(1, round(rc * pool.service_ms / 1000.0)), startup_s=float(a.get("startup_s", 30.0)),
            upscale_delay_s=float(a.get("upscale_delay_s", 0.0)), downscale_delay_s=float(a.get("downscale_delay_s", 60.0)),
            headroom=float(a.get("headroom", 0.1)), overhead_ms=float(a.get("overhead_ms", 0.0)),
        )

    @property
    def initial(self) -> int:
        return self.min_replicas if self.initial_replicas is None else self.initial_replicas

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ScalingSignal:
    """What the policy sees of one pool: the router's intent now and under the forecast, and state."""

    intent_rps: float  # load the router's plan sends the pool (all ingress replicas)
    total_rps: float  # load the router plans in all (to tell "routed elsewhere" from "no traffic")
    budget_ms: float = math.inf  # tightest p99 budget (SLO - RTT - overhead) of that traffic
    forecast_rps: float | None = None  # intent under the intensity forecast startup_s ahead
    warm_replicas: int = 0
    current_replicas: int = 0


@dataclass(frozen=True)
class ScalingDecision:
    replicas: int
    reason: str  # one of REASONS
    detail: str

    def to_dict(self) -> dict:
        return {"replicas": self.replicas, "reason": self.reason, "detail": self.detail}


def active_j(curve: EnergyCurve, per_replica_rps: float, idle_w_per_replica: float) -> float:
    """Active J per request at a replica's arrival rate (idle is charged per replica-second instead)."""
    if curve.dynamic_j is not None:
        return curve.dynamic_j
    lo, hi = curve.points[0][0], curve.points[-1][0]
    r = min(max(per_replica_rps, lo), hi)
    return max(curve.at(r) - idle_w_per_replica / r, 0.0)


def _meets_slo(spec: ScalingSpec, load_rps: float, n: int, budget_ms: float) -> bool:
    cap = n * spec.replica_capacity_rps
    if load_rps >= cap:
        return False
    if not math.isfinite(budget_ms):
        return True
    p99 = wait_quantile_ms(0.99, load_rps, cap, spec.service_ms, n * spec.servers_per_replica) + spec.service_ms
    return p99 + spec.overhead_ms <= budget_ms


def size_for(spec: ScalingSpec, curve: EnergyCurve | None, load_rps: float, budget_ms: float) -> int:
    """Replicas for ``load_rps``: the fewest that meet the budget, then the least power from there up.

    0 for no load; ``max_replicas`` when even that many cannot meet the budget (the router spills).
    """
    if load_rps <= 0:
        return 0
    feasible = next((n for n in range(1, spec.max_replicas + 1) if _meets_slo(spec, load_rps, n, budget_ms)), None)
    if feasible is None:
        return spec.max_replicas
    if curve is None:
        return feasible

    def power_w(n: int) -> float:
        return n * spec.idle_w_per_replica + load_rps * active_j(curve, load_rps / n, spec.idle_w_per_replica)

    best = min(range(feasible, spec.max_replicas + 1), key=lambda n: (power_w(n) * (1 - 1e-9 * n), n))
    return best


def decide(spec: ScalingSpec, curve: EnergyCurve | None, signal: ScalingSignal) -> ScalingDecision:
    """How many replicas the pool should run now, and the reason in one word plus a detail."""
    grow = 1.0 + spec.headroom
    intent = max(signal.intent_rps, 0.0) if math.isfinite(signal.intent_rps) else 0.0
    n_now = size_for(spec, curve, intent * grow, signal.budget_ms)
    ahead = signal.forecast_rps
    n_ahead = size_for(spec, curve, ahead * grow, signal.budget_ms) if ahead is not None and math.isfinite(ahead) and ahead > 0 else 0
    n = min(spec.max_replicas, max(spec.min_replicas, n_now, n_ahead))
    if n_ahead > n_now and n > max(n_now, spec.min_replicas):
        return ScalingDecision(n, "forecast", f"pre-warming {n}: the router will want {ahead:.0f} rps within {spec.startup_s:g} s")
    if intent <= 0:
        if signal.total_rps > 0:
            return ScalingDecision(n, "carbon", f"router sends its {signal.total_rps:.0f} rps to cleaner pools; at minimum {n}")
        return ScalingDecision(n, "idle", f"no traffic; at minimum {n}")
    if signal.warm_replicas == 0 and n > 0:
        return ScalingDecision(n, "cold start", f"no warm replica; starting {n} for {intent:.0f} rps")
    load_only = math.ceil(intent / (LOAD_ONLY_UTILISATION * spec.replica_capacity_rps) - 1e-9)
    util = intent / (n * spec.replica_capacity_rps)
    if n < min(load_only, spec.max_replicas):
        return ScalingDecision(n, "consolidate", f"{n} replica(s) at {util:.0%} meet the SLO with less power than {load_only}")
    return ScalingDecision(n, "load", f"{intent:.0f} rps needs {n} replica(s) ({util:.0%} utilised)")
