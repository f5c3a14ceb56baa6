"""The live router: asks the active routing policy for a pool and variant, then runs the request there.

Policies are pure (``routing/policies.py``); this module feeds them what this process observes —
each pool's grid intensity, recent load, requests in flight and health — and runs the decision on
the pool's executor (``routing/pools.py``). A pool that fails is marked down for a while and the
request falls back to the next best pool, inside :meth:`GreenRouter.execute`.

    route(card, variant, local_variants, ClientContext) -> Route
    execute(Route, PoolJob) -> Execution   (Execution.route: the pool that actually served)
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping, Protocol

from energy.coefficients import HardwareProfile
from models.card import ModelCard
from models.work import WorkResult
from routing.control import RoutingControl
from routing.intensity.snapshot import IntensitySnapshot
from routing.policies import BudgetState, PoolState, RouteRequest, RoutingState
from routing.pools import PoolExecutor, PoolInfo, PoolJob
from routing.topology import Topology
from wattgate.errors import DependencyError, Unavailable

log = logging.getLogger("wattgate.routing")


@dataclass(frozen=True)
class ClientContext:
    """What the client said about itself; None: the router's defaults."""

    client_region: str | None = None
    slo_ms: float | None = None
    tenant: str | None = None


@dataclass(frozen=True)
class Route:
    """Where a request goes and why. ``request`` is kept so a failed pool can fall back."""

    pool: PoolInfo
    variant: str
    route_reason: str | None = None
    request: RouteRequest | None = None


@dataclass(frozen=True)
class Execution:
    """A request's result and the route that actually served it (another pool after a fallback)."""

    result: WorkResult
    route: Route


class Router(Protocol):
    def route(self, card: ModelCard, requested_variant: str | None, local_variants: frozenset[str],
              context: ClientContext) -> Route: ...

    async def execute(self, route: Route, job: PoolJob) -> Execution: ...

    def observe_carbon(self, model: str, carbon_g: float) -> None: ...


class SinglePoolRouter:
    """No topology: every request runs on this process's own pool."""

    def __init__(self, pool: PoolInfo, executor: PoolExecutor) -> None:
        self.pool = pool
        self._executor = executor

    def route(self, card, requested_variant, local_variants, context) -> Route:
        variant, _ = card.variant(requested_variant)
        if variant not in local_variants:
            raise Unavailable(f"variant {variant!r} of {card.name!r} is not loaded on this gateway")
        return Route(self.pool, variant)

    async def execute(self, route: Route, job: PoolJob) -> Execution:
        return Execution(await self._executor.run(job), route)

    def observe_carbon(self, model: str, carbon_g: float) -> None:
        return None


@dataclass
class PoolLoad:
    """Arrival rate (EWMA over ~``tau_s``) and requests in flight, as this process sees them."""

    tau_s: float = 5.0
    rate_rps: float = 0.0
    last_s: float = field(default_factory=time.monotonic)
    in_flight: int = 0
    failures: int = 0
    down_until_s: float = 0.0
    # (time, SLO - RTT) of recent requests routed here: more load must keep the pool within the
    # tightest of them, or traffic already here starts missing its SLO.
    budgets: deque = field(default_factory=deque)

    def add_budget(self, now: float, budget_ms: float) -> None:
        # A monotonic queue (budgets increasing front to back): the front is the window's minimum,
        # so reading it costs O(1) instead of a scan per request.
        while self.budgets and self.budgets[-1][1] >= budget_ms:
            self.budgets.pop()
        self.budgets.append((now, budget_ms))

    def tightest_budget_ms(self, now: float) -> float:
        while self.budgets and now - self.budgets[0][0] > self.tau_s:
            self.budgets.popleft()
        return self.budgets[0][1] if self.budgets else math.inf

    def arrive(self, n: float, now: float) -> None:
        dt = max(now - self.last_s, 1e-6)
        decay = math.exp(-dt / self.tau_s)
        self.rate_rps = self.rate_rps * decay + n / self.tau_s
        self.last_s = now

    def current_rps(self, now: float) -> float:
        return self.rate_rps * math.exp(-max(now - self.last_s, 0.0) / self.tau_s)


class BudgetTracker:
    """Carbon spent per model in the current period, for the carbon-budget policy."""

    def __init__(self, budgets_g: Mapping[str, float], period_s: float) -> None:
        self.budgets_g = dict(budgets_g)
        self.period_s = period_s
        self._start = time.monotonic()
        self.spent_g: dict[str, float] = {}

    def add(self, model: str, carbon_g: float) -> None:
        now = time.monotonic()
        if now - self._start >= self.period_s:
            self._start, self.spent_g = now, {}
        self.spent_g[model] = self.spent_g.get(model, 0.0) + carbon_g

    def states(self) -> dict[str, BudgetState]:
        return {m: BudgetState(self.spent_g.get(m, 0.0), b) for m, b in self.budgets_g.items()}


class GreenRouter:
    def __init__(
        self,
        topology: Topology,
        control: RoutingControl,
        intensity: IntensitySnapshot,
        executors: Mapping[str, PoolExecutor],
        profiles: Mapping[str, HardwareProfile],
        slo_ms: float,
        default_client_region: str,
        budgets: BudgetTracker | None = None,
        decision_ttl_s: float = 0.1,
    ) -> None:
        missing = [p.name for p in topology.pools if p.name not in executors]
        if missing:
            raise ValueError(f"no executor for pools {missing}")
        self.topology = topology
        self.control = control
        self.intensity = intensity
        self.executors = dict(executors)
        self.slo_ms = slo_ms
        self.default_client_region = default_client_region
        self.budgets = budgets or BudgetTracker({}, 3600)
        self.pools = {p.name: PoolInfo(p.name, p.region, p.hardware, p.pue, profiles[p.hardware]) for p in topology.pools}
        self.load = {p.name: PoolLoad() for p in topology.pools}
        self._seq = itertools.count()
        self._decisions: dict = {}
        self.decision_ttl_s = decision_ttl_s

    def _state(self, now: float) -> RoutingState:
        pools = {}
        for p in self.topology.pools:
            view = self.intensity.get(p.region)
            load = self.load[p.name]
            pools[p.name] = PoolState(
                # NaN: no reading; policies then never prefer this pool for its carbon.
                intensity_g_per_kwh=view.g_per_kwh if view.known else math.nan,
                healthy=now >= load.down_until_s,
                load_rps=load.current_rps(now),
                queue_len=load.in_flight,
                intensity_stale=view.stale,
                tightest_budget_ms=load.tightest_budget_ms(now),
            )
        return RoutingState(self.topology, pools, model_budgets=self.budgets.states(), request_seq=next(self._seq))

    def route(self, card: ModelCard, requested_variant: str | None, local_variants: frozenset[str],
              context: ClientContext) -> Route:
        variant, _ = card.variant(requested_variant)
        # An explicitly requested variant is honoured; otherwise the card's fallbacks are allowed.
        allowed = (variant,) if requested_variant else (variant, *card.fallback_variants)
        request = RouteRequest(
            model=card.name,
            variant=variant,
            client_region=context.client_region or self.default_client_region,
            slo_ms=float(context.slo_ms or self.slo_ms),
            tenant=context.tenant or "default",
            allowed_variants=tuple(v for v in allowed if v in local_variants or v == variant),
        )
        now = time.monotonic()
        policy = self.control.policy
        # Observed state moves on a scale of seconds (load is an EWMA over ~5 s, intensity over
        # minutes), so a decision is reused for up to decision_ttl_s instead of scoring every pool
        # for every request. Round-robin rotates per request and is never reused.
        key = (request, self.control.version, self.intensity.generation)
        cached = self._decisions.get(key) if policy.name != "round-robin" else None
        if cached is not None and now - cached[0] < self.decision_ttl_s and self._healthy(cached[1].pool, now):
            decision = cached[1]
        else:
            decision = policy.choose(request, self._state(now))
            if len(self._decisions) > 1024:
                self._decisions.clear()
            self._decisions[key] = (now, decision)
        return self._route(decision, request, now)

    def _healthy(self, pool: str, now: float) -> bool:
        return now >= self.load[pool].down_until_s

    def _route(self, decision, request: RouteRequest, now: float, note: str = "") -> Route:
        pool = self.topology.pool(decision.pool)
        rtt = pool.rtt_ms.get(request.client_region)
        if rtt is not None:
            self.load[pool.name].add_budget(now, request.slo_ms - rtt)
        return Route(self.pools[pool.name], decision.variant, decision.route_reason + note, request)

    async def execute(self, route: Route, job: PoolJob, fallback_depth: int = 0) -> Execution:
        load = self.load[route.pool.name]
        load.arrive(1.0, time.monotonic())
        load.in_flight += 1
        try:
            result = await self.executors[route.pool.name].run(job)
        except DependencyError as exc:
            # A pool that fails is skipped for a while, and this request falls back to the next best.
            load.failures += 1
            load.down_until_s = time.monotonic() + min(30.0, 2.0 ** min(load.failures, 5))
            if route.request is None or fallback_depth >= 2:
                raise
            log.warning("pool %s failed (%s); falling back", route.pool.name, exc)
            now = time.monotonic()
            decision = self.control.policy.choose(route.request, self._state(now))
            if decision.pool == route.pool.name:
                raise
            other = self._route(decision, route.request, now, note=f" (fallback: {route.pool.name} failed)")
            return await self.execute(other, dataclasses.replace(job, variant=other.variant), fallback_depth + 1)
        finally:
            load.in_flight -= 1
        load.failures = 0
        return Execution(result, route)

    def observe_carbon(self, model: str, carbon_g: float) -> None:
        self.budgets.add(model, carbon_g)
