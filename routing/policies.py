"""Routing policies: pure functions from (request, observed state) to a pool, a variant and a reason.

Every policy scores the same candidates (:mod:`routing.candidates`): a pool that serves the
variant, with expected energy ``curve.at(load + rate)``, carbon ``energy x PUE x intensity`` and
p99 latency ``RTT + queueing + service``. Unhealthy pools are never chosen; saturated pools
(utilisation or queue past the policy's headroom) and pools that would miss the SLO fall back to the
next best. If no pool meets the SLO the lowest-latency healthy pool is chosen best-effort and
``route_reason`` says so; if no pool is healthy, :class:`wattgate.errors.Unavailable` is raised.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Callable, Protocol, runtime_checkable

from routing.candidates import (
    BudgetState,
    Candidate,
    PoolState,
    RouteDecision,
    RouteRequest,
    RoutingState,
    evaluate,
    fmt_g,
)
from wattgate.errors import BadRequest, Unavailable

__all__ = [
    "BudgetState",
    "Candidate",
    "POLICIES",
    "PoolState",
    "RouteDecision",
    "RouteRequest",
    "RoutingPolicy",
    "RoutingState",
    "make_policy",
    "policy_names",
]

WEIGHT_KEYS = ("carbon", "latency", "energy")


@runtime_checkable
class RoutingPolicy(Protocol):
    """Choose where one request (or, in the simulator, one slice of traffic) runs."""

    name: str

    def choose(self, request: RouteRequest, state: RoutingState) -> RouteDecision:
        """A pure function of its arguments: same request and state, same decision."""
        ...

    def params(self) -> dict[str, Any]:
        """The validated parameters, as ``make_policy(name, **params)`` accepts them."""
        ...


class _Ranked:
    """Shared skeleton: filter candidates, rank the feasible ones, fall back best-effort."""

    name = ""
    # The first words of route_reason; carbon-budget reports as the lowest-carbon choice it makes.
    head = ""

    def __init__(self, max_utilisation: float = 0.95, max_queue_len: int = 1000) -> None:
        self.max_utilisation = _number(self.name, "max_utilisation", max_utilisation, float)
        self.max_queue_len = _number(self.name, "max_queue_len", max_queue_len, int)
        if not 0 < self.max_utilisation <= 1:
            raise BadRequest(f"{self.name}: max_utilisation must be in (0, 1], got {max_utilisation!r}")
        if self.max_queue_len < 0:
            raise BadRequest(f"{self.name}: max_queue_len must be >= 0, got {max_queue_len!r}")

    def params(self) -> dict[str, Any]:
        return {"max_utilisation": self.max_utilisation, "max_queue_len": self.max_queue_len}

    def rank(self, feasible: list[Candidate], request: RouteRequest, state: RoutingState) -> list[Candidate]:
        raise NotImplementedError

    def why(self, best: Candidate, request: RouteRequest) -> str:
        return f"{self.head or self.name}: {best.describe()} ≤ SLO {request.slo_ms:.0f} ms"

    def requires_slo(self) -> bool:
        return True

    def choose(self, request: RouteRequest, state: RoutingState) -> RouteDecision:
        return self._decide(request, state, (request.variant,), prefix="")

    def _decide(self, request: RouteRequest, state: RoutingState, variants: tuple[str, ...], prefix: str) -> RouteDecision:
        cands = evaluate(request, state, variants, self.max_utilisation, self.max_queue_len)
        healthy = [c for c in cands if c.healthy]
        if not healthy:
            detail = ", ".join(f"{c.pool} {c.excluded}" for c in cands) or "no pool serves it"
            raise Unavailable(f"no healthy pool for {request.model} variant {'/'.join(variants)} ({detail})")
        feasible = [c for c in healthy if c.headroom_ok and (c.meets_slo or not self.requires_slo())]
        by_latency = sorted(healthy, key=lambda c: (c.latency_ms, c.utilisation, c.pool))
        if feasible:
            ranked = self.rank(feasible, request, state)
            chosen = {id(c) for c in ranked}
            rest = [c for c in by_latency if id(c) not in chosen]
            return _decision(self.name, ranked[0], ranked[1:] + rest, prefix + self.why(ranked[0], request), True)
        best = by_latency[0]
        why_not = f"meets SLO {request.slo_ms:.0f} ms within headroom" if self.requires_slo() else "has headroom"
        reason = (
            f"{self.head or self.name}: best-effort, no pool {why_not}; "
            f"lowest-latency healthy {best.pool} ({best.label}) est {_ms(best.latency_ms)}"
        )
        return _decision(self.name, best, by_latency[1:], prefix + reason, False)


def _number(policy: str, name: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise BadRequest(f"{policy}: {name} must be a{'n integer' if kind is int else ' number'}, got {value!r}")
    return kind(value)


def _ms(latency_ms: float) -> str:
    return "over capacity" if math.isinf(latency_ms) else f"{latency_ms:.0f} ms"


def _decision(policy: str, best: Candidate, alternatives: list[Candidate], reason: str, meets: bool) -> RouteDecision:
    return RouteDecision(
        pool=best.pool,
        region=best.region,
        variant=best.variant,
        policy=policy,
        route_reason=reason,
        carbon_g=best.carbon_g,
        energy_j=best.energy_j,
        latency_ms=best.latency_ms,
        meets_slo=meets and best.meets_slo,
        alternatives=tuple(alternatives),
        energy_method=best.energy_method,
    )


class LowestCarbon(_Ranked):
    """Minimise expected gCO2e per request among pools that meet the SLO with headroom."""

    name = "lowest-carbon"

    def rank(self, feasible, request, state):
        return sorted(feasible, key=lambda c: (c.carbon_g, c.latency_ms, c.pool))


class LatencyFirst(_Ranked):
    """Minimise estimated p99 latency; carbon only breaks ties."""

    name = "latency-first"

    def rank(self, feasible, request, state):
        return sorted(feasible, key=lambda c: (c.latency_ms, c.carbon_g, c.pool))

    def why(self, best, request):
        return f"{self.name}: {best.pool} ({best.label}) est {best.latency_ms:.0f} ms, {fmt_g(best.carbon_g)}CO2e/req"


class Weighted(_Ranked):
    """Minimise w_c*carbon + w_l*latency + w_e*energy, each divided by its largest feasible value."""

    name = "weighted"

    def __init__(self, weights: dict[str, float] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        raw = {"carbon": 1.0, "latency": 1.0, "energy": 0.0} if weights is None else weights
        if not isinstance(raw, dict):
            raise BadRequest(f"weighted: weights must be a mapping like {{'carbon': 1, 'latency': 0.5}}, got {raw!r}")
        unknown = set(raw) - set(WEIGHT_KEYS)
        if unknown:
            raise BadRequest(f"weighted: unknown weight(s) {sorted(unknown)}; use {list(WEIGHT_KEYS)}")
        try:
            vals = {k: float(raw.get(k, 0.0)) for k in WEIGHT_KEYS}
        except (TypeError, ValueError):
            raise BadRequest(f"weighted: weights must be numbers, got {raw!r}") from None
        if any(not math.isfinite(v) or v < 0 for v in vals.values()):
            raise BadRequest(f"weighted: weights must be finite and >= 0, got {raw!r}")
        total = sum(vals.values())
        if total <= 0:
            raise BadRequest("weighted: at least one weight must be > 0")
        self.weights = {k: v / total for k, v in vals.items()}

    def params(self):
        return {**super().params(), "weights": dict(self.weights)}

    def rank(self, feasible, request, state):
        scale = {
            "carbon": max(c.carbon_g for c in feasible) or 1.0,
            "latency": max(c.latency_ms for c in feasible) or 1.0,
            "energy": max(c.energy_j for c in feasible) or 1.0,
        }

        def score(c: Candidate) -> float:
            w = self.weights
            return (
                w["carbon"] * c.carbon_g / scale["carbon"]
                + w["latency"] * c.latency_ms / scale["latency"]
                + w["energy"] * c.energy_j / scale["energy"]
            )

        return sorted(feasible, key=lambda c: (score(c), c.pool))

    def why(self, best, request):
        w = ", ".join(f"{k}={v:.2f}" for k, v in self.weights.items() if v)
        return f"{self.name} ({w}): {best.describe()} ≤ SLO {request.slo_ms:.0f} ms"


class RoundRobin(_Ranked):
    """The baseline: rotate over healthy pools with headroom, blind to carbon and the SLO.

    Purity: the rotation position is ``state.request_seq``, a counter the caller advances once per
    decision, so the policy itself holds no mutable state.
    """

    name = "round-robin"

    def requires_slo(self) -> bool:
        return False

    def rank(self, feasible, request, state):
        ordered = sorted(feasible, key=lambda c: c.pool)
        k = state.request_seq % len(ordered)
        return ordered[k:] + ordered[:k]

    def why(self, best, request):
        return f"{self.name}: {best.pool} ({best.label}) in turn, est {_ms(best.latency_ms)}"


class CarbonBudget(LowestCarbon):
    """Lowest-carbon, but once a model's or tenant's carbon budget is nearly spent, serve the
    cheapest variant the model card allows (Clover-style mixed-quality serving)."""

    name = "carbon-budget"
    head = "lowest-carbon"

    def __init__(self, threshold: float = 0.9, **kw: Any) -> None:
        super().__init__(**kw)
        threshold = _number(self.name, "threshold", threshold, float)
        if not 0 < threshold <= 1:
            raise BadRequest(f"carbon-budget: threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold

    def params(self):
        return {**super().params(), "threshold": self.threshold}

    def choose(self, request, state):
        budgets = [
            (f"model {request.model}", state.model_budgets.get(request.model)),
            (f"tenant {request.tenant}", state.tenant_budgets.get(request.tenant)),
        ]
        tight = [(who, b) for who, b in budgets if b is not None and b.fraction >= self.threshold]
        if not tight:
            spent = ", ".join(f"{who} {b.fraction:.0%}" for who, b in budgets if b is not None)
            spent = f"{spent} of budget spent" if spent else "no budget set"
            return self._decide(request, state, (request.variant,), prefix=f"{self.name}: {spent}; ")
        who, b = max(tight, key=lambda wb: wb[1].fraction)
        note = f"{self.name}: {who} {b.fraction:.0%} of {fmt_g(b.budget_g)} spent"
        if len(request.allowed_variants) < 2:
            return self._decide(request, state, (request.variant,), prefix=f"{note}, card allows no cheaper variant; ")
        decision = self._decide(request, state, request.allowed_variants, prefix="")
        switched = f" → {decision.variant}" if decision.variant != request.variant else f", {decision.variant} still cheapest"
        return _replace_reason(decision, f"{note}{switched}; {decision.route_reason}")


def _replace_reason(d: RouteDecision, reason: str) -> RouteDecision:
    return replace(d, route_reason=reason)


POLICIES: dict[str, Callable[..., RoutingPolicy]] = {
    LowestCarbon.name: LowestCarbon,
    LatencyFirst.name: LatencyFirst,
    Weighted.name: Weighted,
    RoundRobin.name: RoundRobin,
    CarbonBudget.name: CarbonBudget,
}


def policy_names() -> list[str]:
    return list(POLICIES)


def make_policy(name: str, **params: Any) -> RoutingPolicy:
    """The named policy with validated params; unknown names or params raise BadRequest."""
    try:
        factory = POLICIES[name]
    except (KeyError, TypeError):
        raise BadRequest(f"unknown routing policy {name!r}; known: {policy_names()}") from None
    try:
        return factory(**params)
    except TypeError as exc:
        raise BadRequest(f"{name}: bad parameters {sorted(params)}: {exc}") from None
