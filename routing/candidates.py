"""What a policy sees and returns: the request, the observed state, scored candidates, the decision."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from energy.carbon import operational_g
from routing.topology import Pool, Topology
from wattgate.errors import BadRequest

__all__ = [
    "BudgetState", "Candidate", "PoolState", "RouteDecision", "RouteRequest", "RoutingState",
    "evaluate", "fmt_g",
]


@dataclass(frozen=True)
class RouteRequest:
    """One request to route (or, in the simulator, a slice of ``rate_rps`` requests per second).

    ``allowed_variants`` are the variants the model card lets the router serve, the preferred
    ``variant`` first, then the card's ``fallback_variants`` (cheapest first).
    """

    model: str
    variant: str
    client_region: str
    slo_ms: float = 100.0
    tenant: str = "default"
    allowed_variants: tuple[str, ...] = ()
    rate_rps: float = 1.0

    def __post_init__(self) -> None:
        if not (self.slo_ms > 0 and self.rate_rps > 0):
            raise BadRequest(f"route request needs slo_ms > 0 and rate_rps > 0, got {self.slo_ms}, {self.rate_rps}")
        allowed = tuple(dict.fromkeys((self.variant, *self.allowed_variants)))
        object.__setattr__(self, "allowed_variants", allowed)


@dataclass(frozen=True)
class PoolState:
    """What the gateway last observed about one pool."""

    intensity_g_per_kwh: float
    healthy: bool = True
    load_rps: float = 0.0
    queue_len: int = 0
    # Server-side p99 (queueing + service) over a recent window, if measured.
    recent_p99_ms: float | None = None
    intensity_stale: bool = False
    # Smallest (SLO - RTT) among the requests this pool is serving now: more load must keep the
    # pool's p99 within it, or traffic already routed here starts missing its SLO. inf: none.
    tightest_budget_ms: float = math.inf


@dataclass(frozen=True)
class BudgetState:
    """Carbon spent so far in the current budget period, and the period's budget."""

    spent_g: float
    budget_g: float

    @property
    def fraction(self) -> float:
        return math.inf if self.budget_g <= 0 else self.spent_g / self.budget_g


@dataclass(frozen=True)
class RoutingState:
    """Everything a policy may look at; policies are pure functions of (request, state).

    ``request_seq`` is the caller's decision counter (round-robin rotates on it).
    """

    topology: Topology
    pools: Mapping[str, PoolState]
    model_budgets: Mapping[str, BudgetState] = field(default_factory=dict)
    tenant_budgets: Mapping[str, BudgetState] = field(default_factory=dict)
    request_seq: int = 0


@dataclass(frozen=True)
class Candidate:
    """One (pool, variant) scored for one request; ``excluded`` says why it cannot be first choice."""

    pool: str
    region: str
    hardware: str
    variant: str
    healthy: bool
    headroom_ok: bool
    meets_slo: bool
    excluded: str
    energy_j: float
    energy_method: str
    carbon_g: float
    latency_ms: float
    intensity_g_per_kwh: float
    intensity_stale: bool
    utilisation: float

    @property
    def label(self) -> str:
        return f"{self.region}/{self.hardware}"

    def describe(self) -> str:
        stale = " (stale)" if self.intensity_stale else ""
        return (
            f"{self.pool} ({self.label}) {self.intensity_g_per_kwh:.0f} g/kWh{stale}, "
            f"{fmt_g(self.carbon_g)}CO2e/req, est {self.latency_ms:.0f} ms"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool, "region": self.region, "variant": self.variant,
            "carbon_g": self.carbon_g, "latency_ms": self.latency_ms, "excluded": self.excluded,
        }


@dataclass(frozen=True)
class RouteDecision:
    """Where to send the request, why, what it is expected to cost, and the ranked fallbacks."""

    pool: str
    region: str
    variant: str
    policy: str
    route_reason: str
    carbon_g: float
    energy_j: float
    latency_ms: float
    meets_slo: bool
    alternatives: tuple[Candidate, ...] = ()
    # How energy_j (and so carbon_g) was estimated: the pool curve's "measured" or "modelled".
    energy_method: str = "modelled"

    def fallbacks(self) -> list[str]:
        """Alternative pools in the order to try them if ``pool`` fails."""
        return list(dict.fromkeys(c.pool for c in self.alternatives if c.healthy))

    def to_parameters(self) -> dict[str, Any]:
        """For a response's OIP ``parameters``: which pool served it and why."""
        return {
            "routing_policy": self.policy,
            "pool": self.pool,
            "region": self.region,
            "variant": self.variant,
            "route_reason": self.route_reason,
            "expected_carbon_g": self.carbon_g,
            "expected_energy_j": self.energy_j,
            # An estimate from the pool's energy curve at its current load, not a meter reading.
            "expected_energy_method": f"curve-{self.energy_method}",
            "expected_latency_ms": None if math.isinf(self.latency_ms) else self.latency_ms,
        }


def fmt_g(grams: float) -> str:
    """Grams with an SI prefix and two significant digits: '0.17 µg', '1.2 mg', '3.4 g'."""
    if not math.isfinite(grams):
        return f"{grams} g"
    for scale, unit in ((1.0, "g"), (1e-3, "mg"), (1e-6, "µg"), (1e-9, "ng")):
        if abs(grams) >= scale or unit == "ng":
            value = grams / scale
            return f"{value:.0f} {unit}" if abs(value) >= 100 else f"{value:.2g} {unit}"
    return f"{grams} g"  # pragma: no cover


def evaluate(
    request: RouteRequest,
    state: RoutingState,
    variants: tuple[str, ...],
    max_utilisation: float,
    max_queue_len: int,
) -> list[Candidate]:
    """Score every (pool, variant) in the topology that serves one of ``variants``."""
    out: list[Candidate] = []
    for pool in state.topology.pools:
        obs = state.pools.get(pool.name)
        for variant in variants:
            if pool.serves(variant):
                out.append(_score(pool, variant, obs, request, max_utilisation, max_queue_len))
    return out


def _score(
    pool: Pool, variant: str, obs: PoolState | None, req: RouteRequest, max_util: float, max_queue: int
) -> Candidate:
    curve = pool.curve(variant)
    if obs is None:
        return Candidate(
            pool.name, pool.region, pool.hardware, variant, False, False, False, "no observed state",
            math.nan, curve.method, math.inf, math.inf, math.nan, True, math.nan,
        )
    load = max(obs.load_rps, 0.0) + req.rate_rps
    energy_j = curve.at(load)
    # A region without an intensity reading has unknown carbon: it ranks after every known one.
    known = not math.isnan(obs.intensity_g_per_kwh)
    grams = operational_g(energy_j, obs.intensity_g_per_kwh, pool.pue) if known else math.inf
    # The model's queueing estimate, or what was observed if that is worse; a backlog adds its drain time.
    server_ms = pool.server_p99_ms(load)
    if obs.recent_p99_ms is not None:
        server_ms = max(server_ms, obs.recent_p99_ms)
    rtt = pool.rtt_ms.get(req.client_region, math.inf)
    latency = rtt + obs.queue_len * 1000.0 / pool.capacity_rps + server_ms
    util = load / pool.capacity_rps
    headroom = util <= max_util and obs.queue_len <= max_queue
    queue_ms = obs.queue_len * 1000.0 / pool.capacity_rps
    protects = queue_ms + server_ms <= obs.tightest_budget_ms
    meets = latency <= req.slo_ms and protects
    if not obs.healthy:
        excluded = "unhealthy"
    elif util > max_util:
        excluded = f"saturated: utilisation {util:.2f} > {max_util:.2f}"
    elif obs.queue_len > max_queue:
        excluded = f"saturated: queue {obs.queue_len} > {max_queue}"
    elif latency > req.slo_ms:
        excluded = f"est {latency:.0f} ms > SLO {req.slo_ms:.0f} ms"
    elif not protects:
        excluded = f"p99 would exceed the {obs.tightest_budget_ms:.0f} ms budget of traffic already there"
    else:
        excluded = ""
    return Candidate(
        pool.name, pool.region, pool.hardware, variant, obs.healthy, headroom, meets, excluded,
        energy_j, curve.method, grams, latency, obs.intensity_g_per_kwh, obs.intensity_stale, util,
    )
