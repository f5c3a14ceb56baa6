"""The live router's decisions: per-class traffic splits with load accounting, on a clock it is given.

The gateway (:class:`routing.live.GreenRouter`) and the simulator (``routing/simulator/events.py``)
both place every request through :meth:`RouterCore.pick`, so what the simulator measures is what the
gateway does. The core never reads a clock: every method takes ``now`` (seconds, any origin).

How a request is placed:

1. Requests fall into *classes*: the :class:`RouteRequest` (model, variant, client region, SLO,
   tenant, allowed variants). Each class's arrival rate is an EWMA over ``tau_s``, multiplied by
   ``ingress_replicas``: one ingress replica sees about 1/N of the traffic.
2. A *plan* splits every class over (pool, variant) pairs. The classes' rates are cut into
   ``slices_per_class`` slices, interleaved, and each slice is placed by the active policy on a
   state whose load already holds the slices placed before it (water-filling, as in the fluid
   simulator): so a pool gets what its capacity and the SLO allow as the policy sees them, and the
   rest spills to the next best pool. The plan is redone when the policy, the intensity generation
   or a pool's health changes, and otherwise at most once per ``cadence_s``, only if a class's rate
   moved by more than ``replan_change`` or a pool's backlog changed.
3. Per request, smooth weighted round-robin over the class's split spreads the requests exactly in
   the planned proportions, even within one cadence (no herding on one reused decision). A pool at
   its in-flight bound is skipped; the request spills to the policy's next choice with room. When
   every healthy pool is at its bound, :class:`wattgate.errors.Overloaded` (503) carries a
   ``retry_after_s`` for the gateway's shedding.

The in-flight bound of a pool is Little's law at capacity within the SLO: ``servers x slo_ms /
service_ms`` requests (end to end, RTT included), divided among the ingress replicas.

Deferrable requests (jobs, ``pick(..., deferrable=True)``) use spare capacity only: a pool takes one
while it is below its bound *and* its deferrable requests in flight are below ``deferrable_share`` of
the bound, so latency-bound traffic always keeps the rest. With no such pool they get
``Overloaded`` (the job runner waits and retries; it is not a shed request).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping

from routing.candidates import PoolState, RouteDecision, RouteRequest, RoutingState
from routing.control import RoutingControl
from routing.observed import BudgetTracker, IntensitySource, PoolLoad
from routing.topology import Topology
from wattgate.errors import BadRequest, Overloaded, Unavailable

__all__ = ["RouterCore", "SplitEntry"]

# A class's rate never enters a plan below this (a policy needs rate_rps > 0).
MIN_RATE_RPS = 1e-3
# Classes unseen for this many tau_s are dropped from plans; at most MAX_CLASSES are kept.
CLASS_IDLE_TAUS = 12.0
MAX_CLASSES = 1024
# A slice that spills to another pool than the class's previous slice is placed in this many parts.
REFINE = 4


@dataclass(frozen=True)
class SplitEntry:
    """One (pool, variant) of a class's split: its planned share and the policy's decision for it."""

    pool: str
    variant: str
    weight: float
    reason: str
    decision: RouteDecision


@dataclass(frozen=True)
class _Fill:
    shares: list[dict[tuple[str, str], list]]  # per class: (pool, variant) -> [share, decision]
    errors: list[Unavailable | None]
    spills: list[list]
    loads: dict[str, float]
    tight: dict[str, float]


@dataclass
class _Class:
    request: RouteRequest
    tau_s: float
    rate: float = 0.0  # EWMA of this replica's arrivals, requests per second
    last_s: float = 0.0
    planned_rps: float = 0.0  # the (scaled) rate the current plan was made for
    entries: list[SplitEntry] = field(default_factory=list)
    current: list[float] = field(default_factory=list)  # smooth weighted round-robin state
    spill: list[tuple[str, str, RouteDecision]] = field(default_factory=list)
    error: Unavailable | None = None

    def arrive(self, now: float) -> None:
        dt = now - self.last_s
        if dt > 0:
            self.rate *= math.exp(-dt / self.tau_s)
            self.last_s = now
        self.rate += 1.0 / self.tau_s

    def rate_at(self, now: float) -> float:
        return self.rate * math.exp(-max(now - self.last_s, 0.0) / self.tau_s)


class RouterCore:
    """Pure decision logic of the live router; see the module docstring."""

    def __init__(
        self,
        topology: Topology,
        control: RoutingControl,
        intensity: IntensitySource,
        slo_ms: float,
        budgets: BudgetTracker | None = None,
        *,
        cadence_s: float = 0.1,
        ingress_replicas: int = 1,
        slices_per_class: int = 12,
        replan_change: float = 0.1,
        tau_s: float = 5.0,
        max_in_flight: Mapping[str, int] | None = None,
        deferrable_share: float = 0.25,
    ) -> None:
        if ingress_replicas < 1 or slices_per_class < 1 or cadence_s < 0 or tau_s <= 0:
            raise BadRequest("router core needs ingress_replicas >= 1, slices_per_class >= 1, cadence_s >= 0, tau_s > 0")
        self.topology = topology
        self.control = control
        self.intensity = intensity
        self.slo_ms = float(slo_ms)
        self.budgets = budgets or BudgetTracker({}, 3600.0)
        self.cadence_s = cadence_s
        self.ingress_replicas = ingress_replicas
        self.slices_per_class = slices_per_class
        self.replan_change = replan_change
        self.tau_s = tau_s
        self.load = {p.name: PoolLoad(tau_s=tau_s) for p in topology.pools}
        # In flight with no queue: the requests in service and in transit (Little: load x time).
        self._transit_s = {p.name: (p.service_ms + sum(p.rtt_ms.values()) / max(1, len(p.rtt_ms))) / 1000.0
                           for p in topology.pools}
        self._servers = {p.name: p.servers for p in topology.pools}
        bounds = dict(max_in_flight or {})
        self.max_in_flight = {
            p.name: int(bounds.get(p.name) or max(1, math.ceil(p.servers * self.slo_ms / p.service_ms / ingress_replicas)))
            for p in topology.pools
        }
        self._base_bound = dict(self.max_in_flight)  # per ingress replica, the pool fully provisioned
        self.deferrable_share = deferrable_share
        self.deferrable_in_flight = {p.name: 0 for p in topology.pools}
        self._warm: dict[str, tuple[int, int] | None] = {p.name: None for p in topology.pools}  # (warm, max)
        self._others: dict[str, int | None] = {p.name: None for p in topology.pools}
        self._cold: set[str] = set()
        self._intent: dict[str, float] = {}
        self._tight: dict[str, float] = {}
        self._classes: dict[RouteRequest, _Class] = {}
        self._hard_key: tuple = ()
        # Health as the plan saw it changes when a pool is marked down, or when the earliest mark expires.
        self._health_epoch = 0
        self._recover_at = math.inf
        self._soft_key: tuple = ()
        self._planned_at = -math.inf
        self._checked_at = -math.inf
        self.plans = 0  # how many plans were made (observability, tests)

    # -- what the gateway reports back ------------------------------------------------------------
    def set_warm(self, pool: str, warm: int | None, max_replicas: int = 1) -> None:
        """Warm (running) replicas of an autoscaled pool, of ``max_replicas``; None: not autoscaled.

        The pool's in-flight bound scales with its warm replicas; with none it is *cold* and takes no
        request: its planned share goes to the best warm pool (the reason says so) while the
        autoscaler, reading :meth:`intent`, starts it.
        """
        self._warm[pool] = None if warm is None else (max(0, int(warm)), max(1, int(max_replicas)))
        self._update_bound(pool)

    def set_others_in_flight(self, pool: str, in_flight: int | None) -> None:
        """Requests the other ingress replicas have in flight at ``pool`` (shared through the gateway's
        control actor); this replica may then use the room they leave, not only its 1/N share."""
        self._others[pool] = None if in_flight is None else max(0, int(in_flight))
        self._update_bound(pool)

    def _update_bound(self, pool: str) -> None:
        base, warm = self._base_bound[pool], self._warm[pool]
        bound = base if warm is None else math.ceil(base * min(warm[0], warm[1]) / warm[1])
        others = self._others[pool]
        if others is not None and bound > 0:
            bound = max(bound, bound * self.ingress_replicas - others)
        self.max_in_flight[pool] = bound
        (self._cold.add if bound == 0 else self._cold.discard)(pool)

    def is_cold(self, pool: str) -> bool:
        return pool in self._cold

    def deferrable_bound(self, pool: str) -> int:
        """Deferrable requests the pool may hold: its share of the bound, at least one (else a job never runs)."""
        return max(1, math.floor(self.deferrable_share * self.max_in_flight[pool])) if self.max_in_flight[pool] else 0

    def has_room(self, pool: str, deferrable: bool = False) -> bool:
        if deferrable and self.deferrable_in_flight[pool] >= self.deferrable_bound(pool):
            return False
        return self.load[pool].in_flight < self.max_in_flight[pool]

    def begin(self, pool: str, now: float, deferrable: bool = False) -> None:
        load = self.load[pool]
        load.arrive(1.0, now)
        load.in_flight += 1
        if deferrable:
            self.deferrable_in_flight[pool] += 1

    def finish(self, pool: str, deferrable: bool = False) -> None:
        self.load[pool].in_flight -= 1
        if deferrable:
            self.deferrable_in_flight[pool] -= 1

    def failed(self, pool: str, now: float) -> None:
        """A pool that fails is skipped for a while (1, 2, 4, ... up to 30 s)."""
        load = self.load[pool]
        load.failures += 1
        self._set_down(pool, now + min(30.0, 2.0 ** min(load.failures, 5)))

    def succeeded(self, pool: str) -> None:
        self.load[pool].failures = 0

    def mark_down(self, pool: str, until_s: float) -> None:
        self._set_down(pool, until_s)

    def _set_down(self, pool: str, until_s: float) -> None:
        if self.load[pool].down_until_s != until_s:
            self.load[pool].down_until_s = until_s
            self._health_epoch += 1
            self._recover_at = min(self._recover_at, until_s)

    def healthy(self, pool: str, now: float) -> bool:
        return now >= self.load[pool].down_until_s

    def warm_start(self, request: RouteRequest, rate_rps: float, now: float) -> None:
        """Set a class's observed rate as if this replica had seen ``rate_rps`` steadily (simulator windows)."""
        cls = self._class(request, now)
        cls.rate, cls.last_s = rate_rps, now
        self._hard_key = ()  # replan on the next pick

    # -- decisions ----------------------------------------------------------------------------------
    def pick(self, request: RouteRequest, now: float, exclude: frozenset[str] | set[str] = frozenset(),
             *, arrival: bool = True, deferrable: bool = False) -> SplitEntry:
        """Where this request goes; Unavailable if no pool is healthy, Overloaded if all are full.

        ``arrival=False`` places a request again (fallback) without counting it twice in its class's rate;
        ``deferrable``: spare capacity only (see the module docstring).
        """
        cls = self._classes.get(request)
        if cls is None:
            cls = self._class(request, now)
            self._hard_key = ()
        if arrival:
            cls.arrive(now)
        if self._hard_key != self._hard(now):
            self._plan(now)
        elif now - self._checked_at >= self.cadence_s:
            self._checked_at = now
            if self._soft_key != self._soft(now) or self._rates_moved(now):
                self._plan(now)
        if not cls.entries:
            raise cls.error or Unavailable(f"no pool for {request.model}")
        return self._choose(cls, now, exclude, deferrable)

    def warm_pools(self, now: float) -> None:
        """Set each pool's observed rate to what the plan sends it, as after a steady run (simulator windows)."""
        for name, rps in self.planned_load_rps(now).items():
            load = self.load[name]
            load.rate_rps, load.last_s = rps / self.ingress_replicas, now

    def planned_load_rps(self, now: float) -> dict[str, float]:
        """Total load (all ingress replicas) the current plan sends to each pool."""
        return {name: rps for name, (rps, _) in self.intent(now).items()}

    def _class(self, request: RouteRequest, now: float) -> _Class:
        if len(self._classes) >= MAX_CLASSES:
            oldest = min(self._classes.values(), key=lambda c: c.last_s)
            del self._classes[oldest.request]
        cls = self._classes[request] = _Class(request, self.tau_s, last_s=now)
        return cls

    def _hard(self, now: float) -> tuple:
        if now >= self._recover_at:  # a pool's down time ran out: health changed
            self._health_epoch += 1
            later = [lo.down_until_s for lo in self.load.values() if lo.down_until_s > now]
            self._recover_at = min(later, default=math.inf)
        return (self.control.version, self.intensity.generation, self._health_epoch)

    def _backlog(self, pool: str, now: float) -> int:
        """Requests queued at the pool: in flight beyond those in service or transit, for all replicas."""
        load = self.load[pool]
        waiting = load.in_flight - load.current_rps(now) * self._transit_s[pool]
        return max(0, int(waiting * self.ingress_replicas))

    def _soft(self, now: float) -> tuple:
        # Backlog in eighths of the pool's in-flight bound: it sees congestion that matters for the
        # SLO, and is coarse enough that Poisson noise in the in-flight count does not flap it.
        n = self.ingress_replicas
        return tuple(8 * self._backlog(name, now) // (self._base_bound[name] * n) for name in self.topology.names)

    def _rates_moved(self, now: float) -> bool:
        n = self.ingress_replicas
        for cls in self._classes.values():
            rate = cls.rate_at(now) * n
            if abs(rate - cls.planned_rps) > self.replan_change * max(cls.planned_rps, MIN_RATE_RPS):
                return True
        return False

    def _plan(self, now: float) -> None:
        """Water-fill every active class's rate over the pools with the active policy."""
        self.plans += 1
        self._hard_key, self._soft_key = self._hard(now), self._soft(now)
        self._planned_at = self._checked_at = now
        idle_s = CLASS_IDLE_TAUS * self.tau_s
        for req in [r for r, c in self._classes.items() if now - c.last_s > idle_s]:
            del self._classes[req]
        classes = list(self._classes.values())
        for cls in classes:
            cls.planned_rps = max(cls.rate_at(now) * self.ingress_replicas, MIN_RATE_RPS)
        fill = self._fill(classes, now, self.intensity)
        self._intent, self._tight = fill.loads, fill.tight
        for ci, cls in enumerate(classes):
            cls.error, cls.spill = fill.errors[ci], fill.spills[ci]
            placed = sorted(fill.shares[ci].items(), key=lambda kv: (-kv[1][0], kv[0]))
            total = sum(n for _, (n, _) in placed)
            split = ", ".join(f"{pool} {n / total:.0%}" for (pool, _), (n, _) in placed) if len(placed) > 1 else ""
            cls.entries = [
                SplitEntry(pool, variant, n / total, d.route_reason + (f"; split {split}" if split else ""), d)
                for (pool, variant), (n, d) in placed
            ]
            cls.current = [0.0] * len(cls.entries)

    def _fill(self, classes: list[_Class], now: float, intensity: IntensitySource) -> _Fill:
        """The water-filling of ``classes`` (at their ``planned_rps``) over the pools, seen through ``intensity``.

        Pools are planned at their full capacity, warm or not: the result is the router's intent.
        """
        policy = self.control.policy
        topo = self.topology
        observed = {}
        for p in topo.pools:
            view = intensity.get(p.region)
            # NaN: no reading; policies then never prefer this pool for its carbon.
            g = view.g_per_kwh if view.known else math.nan
            observed[p.name] = (g, now >= self.load[p.name].down_until_s, self._backlog(p.name, now), view.stale)
        loads = {name: 0.0 for name in topo.names}
        tight = {name: math.inf for name in topo.names}
        model_b, tenant_b = self.budgets.states(), self.budgets.tenant_states()
        k = self.slices_per_class
        shares: list[dict[tuple[str, str], list]] = [{} for _ in classes]
        errors: list[Unavailable | None] = [None] * len(classes)
        spills: list[list] = [[] for _ in classes]

        def choose(req: RouteRequest, seq: int) -> RouteDecision:
            pools = {
                name: PoolState(g, ok, loads[name], queue_len=backlog, intensity_stale=stale, tightest_budget_ms=tight[name])
                for name, (g, ok, backlog, stale) in observed.items()
            }
            return policy.choose(req, RoutingState(topo, pools, model_b, tenant_b, request_seq=seq))

        def commit(ci: int, req: RouteRequest, d: RouteDecision, share: float) -> None:
            loads[d.pool] += req.rate_rps
            rtt = topo.pool(d.pool).rtt_ms.get(req.client_region, math.inf)
            tight[d.pool] = min(tight[d.pool], req.slo_ms - rtt)
            shares[ci].setdefault((d.pool, d.variant), [0.0, d])[0] += share

        slices, subs, last = [], [], [None] * len(classes)
        for cls in classes:
            slices.append(dataclasses.replace(cls.request, rate_rps=cls.planned_rps / k))
            subs.append(dataclasses.replace(cls.request, rate_rps=cls.planned_rps / (k * REFINE)))
        for j in range(k):
            for ci, cls in enumerate(classes):
                # Round-robin rotates on request_seq: j + ci spreads every class over all pools.
                try:
                    d = choose(slices[ci], j + ci)
                    if last[ci] is not None and d.pool != last[ci]:
                        # Where a class spills to another pool, place the slice in finer parts:
                        # the pool before may still take some of it.
                        for _ in range(REFINE):
                            d = choose(subs[ci], j + ci)
                            commit(ci, subs[ci], d, 1.0 / (k * REFINE))
                    else:
                        commit(ci, slices[ci], d, 1.0 / k)
                except Unavailable as exc:
                    errors[ci] = exc
                    continue
                last[ci] = d.pool
                if not spills[ci]:
                    spills[ci] = [(d.pool, d.variant, d)] + [(c.pool, c.variant, d) for c in d.alternatives if c.healthy]
        return _Fill(shares, errors, spills, loads, tight)

    # -- what the autoscaler reads ------------------------------------------------------------------
    def intent(self, now: float) -> dict[str, tuple[float, float]]:
        """Per pool, ``(rps, budget_ms)``: the load the current plan sends it (all ingress replicas,
        the pool assumed fully provisioned) and the tightest SLO budget (SLO - RTT) of that traffic."""
        if self._hard_key != self._hard(now):
            self._plan(now)
        return {name: (self._intent.get(name, 0.0), self._tight.get(name, math.inf)) for name in self.topology.names}

    def intent_under(self, intensity: IntensitySource, now: float) -> dict[str, float]:
        """The load per pool the plan would send if intensities were ``intensity`` (e.g. a forecast)."""
        classes = [c for c in self._classes.values() if now - c.last_s <= CLASS_IDLE_TAUS * self.tau_s]
        if not classes:
            return {name: 0.0 for name in self.topology.names}
        return self._fill(classes, now, intensity).loads

    def _choose(self, cls: _Class, now: float, exclude, deferrable: bool = False) -> SplitEntry:
        """Smooth weighted round-robin over the split, skipping pools that are down, excluded, cold or full."""
        entries, current = cls.entries, cls.current
        best, total = -1, 0.0
        cold = None
        for i, e in enumerate(entries):
            load = self.load[e.pool]
            if (load.in_flight >= self.max_in_flight[e.pool] or now < load.down_until_s or e.pool in exclude
                    or (deferrable and not self.has_room(e.pool, True))):
                if e.pool in self._cold:
                    cold = e.pool
                continue
            current[i] += e.weight
            total += e.weight
            if best < 0 or current[i] > current[best]:
                best = i
        if best >= 0:
            current[best] -= total
            chosen = entries[best]
            if cold is not None:
                return dataclasses.replace(chosen, reason=f"{chosen.reason}; {cold} cold (no warm replica): served by {chosen.pool}")
            return chosen
        return self._spill(cls, now, exclude, deferrable)

    def _spill(self, cls: _Class, now: float, exclude, deferrable: bool = False) -> SplitEntry:
        full = []
        for pool, variant, d in cls.spill:
            if pool in exclude or now < self.load[pool].down_until_s:
                continue
            if self.has_room(pool, deferrable):
                why = ", ".join(full) or "planned pools unavailable"
                return SplitEntry(pool, variant, 0.0, f"{d.route_reason}; spill to {pool}: {why}", d)
            full.append(f"{pool} cold (no warm replica)" if pool in self._cold else
                        f"{pool} at its deferrable share" if deferrable and self.has_room(pool) else
                        f"{pool} at in-flight bound {self.max_in_flight[pool]}")
        if not full:
            raise Unavailable(f"no healthy pool with room for {cls.request.model} (excluded: {sorted(exclude)})")
        candidates = [(p, v, d) for p, v, d in cls.spill if p not in exclude and now >= self.load[p].down_until_s]
        if not deferrable and candidates and all(p in self._cold for p, _, _ in candidates):
            # No pool is warm at all (a gateway starting, or every pool scaled to zero): waiting for the
            # best one to start beats refusing the request. Said in the reason.
            pool, variant, d = candidates[0]
            return SplitEntry(pool, variant, 0.0, f"{d.route_reason}; every pool cold: waiting for {pool} to start", d)
        # Requests drain at the pools' capacity; the first slot frees in about this long.
        excess = min(
            ((self.load[p].in_flight - self.max_in_flight[p] + 1) / self.topology.pool(p).capacity_rps * self.ingress_replicas
             for p, _, _ in cls.spill if p not in exclude and p not in self._cold),
            default=1.0,  # only cold pools: one is starting
        )
        raise Overloaded(f"every pool is past capacity: {'; '.join(full)}", retry_after_s=excess)
