"""The green router: asks the active routing policy for a pool and variant, then runs the request there.

Policies are pure (``routing/policies.py``); this module feeds them what the replica observes — each
pool's grid intensity, recent load, requests in flight and health — and executes the decision on a
pool executor: in-process for logical pools on this node, a Ray ``DeploymentHandle`` for pools pinned
to other nodes, or an Open Inference Protocol client for remote servers.
"""

from __future__ import annotations

import itertools
from collections import deque
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.accounting import IntensitySnapshot, PoolInfo
from gateway.batcher import TextWorkItem, WorkItem, WorkResult
from gateway.host import LoadedVersion
from models.card import ModelCard
from routing.control import RoutingControl
from routing.policies import BudgetState, PoolState, RouteRequest, RoutingState
from routing.topology import Topology
from wattgate.errors import DependencyError

log = logging.getLogger("wattgate.green")


class PoolExecutor(Protocol):
    """Runs one request on one pool."""

    async def run(self, loaded: LoadedVersion, variant: str, item: WorkItem | TextWorkItem) -> WorkResult: ...


@dataclass
class _PoolLoad:
    """Arrival rate (EWMA over ~``tau_s``) and requests in flight, as this replica sees them."""

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

    def __init__(self, budgets_g: dict[str, float], period_s: float) -> None:
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
        executors: dict[str, PoolExecutor],
        profiles: dict[str, Any],
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
        self.executors = executors
        self.profiles = profiles
        self.slo_ms = slo_ms
        self.default_client_region = default_client_region
        self.budgets = budgets or BudgetTracker({}, 3600)
        self._load = {p.name: _PoolLoad() for p in topology.pools}
        self._seq = itertools.count()
        self._decisions: dict = {}
        self.decision_ttl_s = decision_ttl_s

    def _state(self, now: float) -> RoutingState:
        pools = {}
        for p in self.topology.pools:
            g, _, stale = self.intensity.get(p.region)
            load = self._load[p.name]
            pools[p.name] = PoolState(
                intensity_g_per_kwh=g,
                healthy=now >= load.down_until_s,
                load_rps=load.current_rps(now),
                queue_len=load.in_flight,
                intensity_stale=stale,
                tightest_budget_ms=load.tightest_budget_ms(now),
            )
        return RoutingState(self.topology, pools, model_budgets=self.budgets.states(), request_seq=next(self._seq))

    def route(self, card: ModelCard, loaded: LoadedVersion, requested_variant: str | None, rows: int, context: dict | None = None):
        context = context or {}
        variant, _ = card.variant(requested_variant)
        # An explicitly requested variant is honoured; otherwise the card's fallbacks are allowed.
        allowed = (variant,) if requested_variant else (variant, *card.fallback_variants)
        request = RouteRequest(
            model=card.name,
            variant=variant,
            client_region=context.get("client_region") or self.default_client_region,
            slo_ms=float(context.get("slo_ms") or self.slo_ms),
            tenant=context.get("tenant") or "default",
            allowed_variants=tuple(v for v in allowed if v in loaded.batchers or v == variant),
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
        return decision.variant, self._info(decision, request, now)

    def _healthy(self, pool: str, now: float) -> bool:
        return now >= self._load[pool].down_until_s

    def _info(self, decision, request: RouteRequest, now: float, note: str = "") -> PoolInfo:
        pool = self.topology.pool(decision.pool)
        rtt = pool.rtt_ms.get(request.client_region)
        if rtt is not None:
            self._load[pool.name].add_budget(now, request.slo_ms - rtt)
        return PoolInfo(
            name=pool.name,
            region=pool.region,
            hardware=pool.hardware,
            pue=pool.pue,
            profile=self.profiles[pool.hardware],
            route_reason=decision.route_reason + note,
            request=request,
        )

    async def execute(self, pool: PoolInfo, loaded: LoadedVersion, variant: str, item, fallback_depth: int = 0) -> WorkResult:
        load = self._load[pool.name]
        now = time.monotonic()
        load.arrive(1.0, now)
        load.in_flight += 1
        try:
            result = await self.executors[pool.name].run(loaded, variant, item)
        except DependencyError as exc:
            # A pool that fails is skipped for a while, and this request falls back to the next best.
            load.failures += 1
            load.down_until_s = time.monotonic() + min(30.0, 2.0 ** min(load.failures, 5))
            if pool.request is None or fallback_depth >= 2:
                raise
            log.warning("pool %s failed (%s); falling back", pool.name, exc)
            now = time.monotonic()
            decision = self.control.policy.choose(pool.request, self._state(now))
            if decision.pool == pool.name:
                raise
            other = self._info(decision, pool.request, now, note=f" (fallback: {pool.name} failed)")
            result = await self.execute(other, loaded, decision.variant, item, fallback_depth + 1)
            result.served_by = result.served_by or other
            return result
        finally:
            load.in_flight -= 1
        load.failures = 0
        return result

    def observe_carbon(self, model: str, carbon_g: float) -> None:
        self.budgets.add(model, carbon_g)
