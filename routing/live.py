"""The live router: places each request with the pure decision core, then runs it on the chosen pool.

Decisions live in :mod:`routing.split` (:class:`RouterCore`): per-class traffic splits planned by the
active policy with load accounting, spread per request by smooth weighted round-robin, in-flight
bounded per pool. The simulator calls the same core. This module feeds it the clock and runs the
decision on the pool's executor (``routing/pools.py``). A pool that fails is marked down for a while
and the request falls back to the next best pool, inside :meth:`GreenRouter.execute`; when every pool
is at its in-flight bound, :class:`wattgate.errors.Overloaded` (503, ``retry_after_s``) is raised.

    route(card, variant, local_variants, ClientContext) -> Route
    execute(Route, PoolJob) -> Execution   (Execution.route: the pool that actually served)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

from energy.coefficients import HardwareProfile
from models.card import ModelCard
from models.work import WorkResult
from routing.control import RoutingControl
from routing.exclusions import VariantExclusions
from routing.intensity.snapshot import IntensitySnapshot
from routing.policies import RouteRequest
from routing.pools import PoolExecutor, PoolInfo, PoolJob
from routing.observed import BudgetTracker, PoolLoad
from routing.split import RouterCore, SplitEntry
from routing.topology import Topology
from wattgate.errors import DependencyError, Unavailable

__all__ = [
    "BudgetTracker", "ClientContext", "Execution", "GreenRouter", "PoolLoad", "Route", "Router", "SinglePoolRouter",
]

log = logging.getLogger("wattgate.routing")


@dataclass(frozen=True)
class ClientContext:
    """What the client said about itself; None: the router's defaults."""

    client_region: str | None = None
    slo_ms: float | None = None
    tenant: str | None = None
    deferrable: bool = False  # a job's request: spare capacity only, within the per-pool share (split.py)


@dataclass(frozen=True)
class Route:
    """Where a request goes and why. ``request`` is kept so a failed pool can fall back."""

    pool: PoolInfo
    variant: str
    route_reason: str | None = None
    request: RouteRequest | None = None
    deferrable: bool = False


@dataclass(frozen=True)
class Execution:
    """A request's result and the route that actually served it (another pool after a fallback)."""

    result: WorkResult
    route: Route


class Router(Protocol):
    def route(self, card: ModelCard, requested_variant: str | None, local_variants: frozenset[str],
              context: ClientContext) -> Route: ...

    async def execute(self, route: Route, job: PoolJob) -> Execution: ...

    def observe_carbon(self, model: str, carbon_g: float, tenant: str | None = None) -> None: ...

    def pool_health(self) -> dict[str, bool]: ...

    def budget_use(self) -> dict[tuple[str, str], float]: ...

    def regions(self, variant: str) -> list[str]: ...


class SinglePoolRouter:
    """No topology: every request runs on this process's own pool."""

    def __init__(self, pool: PoolInfo, executor: PoolExecutor, exclusions: VariantExclusions | None = None) -> None:
        self.pool = pool
        self._executor = executor
        self.exclusions = exclusions

    def route(self, card, requested_variant, local_variants, context) -> Route:
        variant, _ = card.variant(requested_variant)
        variant, reason = _unexcluded(self.exclusions, card.name, variant)
        if variant not in local_variants:
            raise Unavailable(f"variant {variant!r} of {card.name!r} is not loaded on this gateway")
        return Route(self.pool, variant, reason)

    async def execute(self, route: Route, job: PoolJob) -> Execution:
        return Execution(await self._executor.run(job), route)

    def observe_carbon(self, model: str, carbon_g: float, tenant: str | None = None) -> None:
        return None

    def pool_health(self) -> dict[str, bool]:
        return {self.pool.name: True}

    def budget_use(self) -> dict[tuple[str, str], float]:
        return {}

    def regions(self, variant: str) -> list[str]:
        return [self.pool.region]


class GreenRouter:
    """Routes over a topology with the active policy; ``decision_ttl_s`` is the decision cadence.

    ``clock`` (default ``time.monotonic``) is the only time source; ``ingress_replicas`` says how many
    ingress replicas share the traffic, so this one's observations are scaled to the whole.
    """

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
        *,
        ingress_replicas: int = 1,
        max_in_flight: Mapping[str, int] | None = None,
        deferrable_share: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        exclusions: VariantExclusions | None = None,
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
        self.clock = clock
        self.exclusions = exclusions
        self.core = RouterCore(
            topology, control, intensity, slo_ms, budgets, cadence_s=decision_ttl_s,
            ingress_replicas=ingress_replicas, max_in_flight=max_in_flight, deferrable_share=deferrable_share,
        )
        self.budgets = self.core.budgets
        self.pools = {p.name: PoolInfo(p.name, p.region, p.hardware, p.pue, profiles[p.hardware]) for p in topology.pools}

    @property
    def load(self) -> dict[str, PoolLoad]:
        """Per pool: EWMA arrival rate (``current_rps(now)``), in flight, failures."""
        return self.core.load

    def route(self, card: ModelCard, requested_variant: str | None, local_variants: frozenset[str],
              context: ClientContext) -> Route:
        variant, _ = card.variant(requested_variant)
        # An explicitly requested variant is honoured; otherwise the card's fallbacks are allowed.
        # Variants the quality guard excluded are candidates for no one: their stand-in serves instead.
        allowed = (variant,) if requested_variant else (variant, *card.fallback_variants)
        variant, note = _unexcluded(self.exclusions, card.name, variant)
        if self.exclusions is not None:
            allowed = tuple(v for v in allowed if not self.exclusions.is_excluded(card.name, v)) or (variant,)
        request = RouteRequest(
            model=card.name,
            variant=variant,
            client_region=context.client_region or self.default_client_region,
            slo_ms=float(context.slo_ms or self.slo_ms),
            tenant=context.tenant or "default",
            allowed_variants=tuple(v for v in allowed if v in local_variants or v == variant),
        )
        entry = self.core.pick(request, self.clock(), deferrable=context.deferrable)
        return self._route(entry, request, f" ({note})" if note else "", deferrable=context.deferrable)

    def _route(self, entry: SplitEntry, request: RouteRequest, note: str = "", deferrable: bool = False) -> Route:
        return Route(self.pools[entry.pool], entry.variant, entry.reason + note, request, deferrable)

    def regions(self, variant: str) -> list[str]:
        """Regions of the pools that serve ``variant``: where a deferred job may run."""
        return sorted({p.region for p in self.topology.pools if p.serves(variant)})

    async def execute(self, route: Route, job: PoolJob, fallback_depth: int = 0) -> Execution:
        name, deferrable = route.pool.name, route.deferrable
        # A cold pool is chosen only when every pool is cold (the request waits for it to start): never re-placed.
        if not self.core.has_room(name, deferrable) and not self.core.is_cold(name) and route.request is not None:
            # Filled up between route() and now (e.g. while the cache was asked): place it again.
            other = self._route(self.core.pick(route.request, self.clock(), exclude={name}, arrival=False,
                                               deferrable=deferrable), route.request,
                                note=f" (re-placed: {name} at its in-flight bound)", deferrable=deferrable)
            return await self.execute(other, dataclasses.replace(job, variant=other.variant), fallback_depth)
        self.core.begin(name, self.clock(), deferrable)
        try:
            result = await self.executors[name].run(job)
        except DependencyError as exc:
            # A pool that fails is skipped for a while, and this request falls back to the next best.
            self.core.failed(name, self.clock())
            if route.request is None or fallback_depth >= 2:
                raise
            log.warning("pool %s failed (%s); falling back", name, exc)
            try:
                entry = self.core.pick(route.request, self.clock(), exclude={name}, arrival=False, deferrable=deferrable)
            except Unavailable:
                raise exc from None
            other = self._route(entry, route.request, note=f" (fallback: {name} failed)", deferrable=deferrable)
            return await self.execute(other, dataclasses.replace(job, variant=other.variant), fallback_depth + 1)
        finally:
            self.core.finish(name, deferrable)
        self.core.succeeded(name)
        return Execution(result, route)

    def observe_carbon(self, model: str, carbon_g: float, tenant: str | None = None) -> None:
        self.core.budgets.add(model, carbon_g, self.clock(), tenant)

    def pool_health(self) -> dict[str, bool]:
        """Per pool: False while it is marked down after a failure."""
        now = self.clock()
        return {name: self.core.healthy(name, now) for name in self.pools}

    def budget_use(self) -> dict[tuple[str, str], float]:
        """(scope "model" | "tenant", name) -> carbon spent this period over the budget."""
        use = {("model", m): s.fraction for m, s in self.budgets.states().items()}
        use.update({("tenant", t): s.fraction for t, s in self.budgets.tenant_states().items()})
        return use


def _unexcluded(exclusions: VariantExclusions | None, model: str, variant: str) -> tuple[str, str | None]:
    """``variant``, or its stand-in while the quality guard has it excluded, and a route reason saying so."""
    if exclusions is None:
        return variant, None
    served, entry = exclusions.substitute(model, variant)
    if entry is None:
        return variant, None
    return served, f"{variant} excluded by the quality guard, served by {served}"
