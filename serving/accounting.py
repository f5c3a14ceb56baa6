"""A served request's books: its energy, its carbon, the energy a cache hit avoided, then the sinks.

Each piece is small and typed: :meth:`RequestAccountant.energy` (a computed request's share of its
batch; a hit or coalesced follower is charged through the same attributor, so it pays its own run
and its share of idle power, and nothing is counted twice), :class:`CarbonAccountant` (SCI carbon
from the pool's region, PUE and hardware; unknown when the region has no intensity reading),
``cache.avoided.AvoidedEnergy`` (what a hit saved: active energy only), and sinks (the ledger, the
metrics, the carbon budgets) that each take the finished :class:`AccountedRequest`.

Sinks whose books only a scrape reads (Prometheus families, the anomaly detector) are
:class:`BatchedSink`s: the accountant hands them requests in groups of up to ``FLUSH_EVERY`` (and
whatever is pending at each scrape, :meth:`RequestAccountant.flush`), so they pay their label work
once per group, not once per request. Sinks that decide the next request (the ledger's queue, the
carbon budgets) stay per request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from cache.avoided import AvoidedEnergy
from energy.attribution import EnergyAttributor, RequestEnergy
from energy.carbon import CarbonBreakdown, embodied_g, operational_g, sci_for_request
from energy.ledger import EnergyLedger, LedgerRecord
from energy.metrics import EnergyMetrics
from models.card import ModelCard
from routing.intensity.snapshot import IntensitySnapshot, IntensityView
from routing.live import Execution, Route
from routing.pools import PoolInfo

FLUSH_EVERY = 256  # batched sinks see at most this many requests late between scrapes


@dataclass(frozen=True)
class ServedRequest:
    """What the data plane knows once a request is answered. ``execution`` is None when the
    request ran no model (a cache hit, or a follower of an identical request in flight)."""

    card: ModelCard
    route: Route
    execution: Execution | None
    cache_status: str
    latency_ms: float
    request_id: str
    rows: int
    tenant: str | None = None  # the authenticated tenant; None when unknown (auth off, no trusted proxy)


@dataclass(frozen=True)
class Placement:
    """Where the energy was spent, honestly: ``hardware`` is what it was measured or modelled on;
    a logical pool that stands in for another class on this machine says so in ``emulates``."""

    pool: PoolInfo
    hardware: str
    emulates: str | None
    energy_profile: str  # the coefficients behind modelled energy and embodied carbon


@dataclass(frozen=True)
class AccountedRequest:
    """A request's final figures: the ledger record plus what only the response carries."""

    record: LedgerRecord
    energy: RequestEnergy
    carbon: CarbonBreakdown | None  # None: no intensity reading for the region
    intensity: IntensityView
    placement: Placement
    signal_type: str
    node_id: str | None = None
    rows: int = 1  # the request's own rows (inferences)
    slo_ms: float | None = None  # the latency SLO the router placed it under; None: the router's default
    batch_lead: bool = True  # the first request of the batch it ran in (or it ran no model): per-batch books count it

    def parameters(self) -> dict[str, Any]:
        """The OIP response's ``parameters``: every figure with its unit and how it was obtained."""
        r, e, c = self.record, self.energy, self.carbon
        params = {
            "request_id": r.request_id,
            "energy_j": e.energy_j,
            "energy_method": e.method,
            "energy_measured": e.measured,
            "energy_active_j": e.active_j,
            "energy_idle_j": e.idle_j,
            "carbon_g": r.carbon_g,
            "carbon_known": c is not None,
            "operational_g": r.operational_g,
            "embodied_g": r.embodied_g,
            "intensity_g_per_kwh": r.intensity_g_per_kwh,
            "intensity_source": self.intensity.source,
            "intensity_signal": self.intensity.signal,
            "intensity_signal_type": self.signal_type,
            "intensity_stale": self.intensity.stale,
            "pue": self.placement.pool.pue,
            "region": r.region,
            "hardware": r.hardware,
            "energy_profile": self.placement.energy_profile,
            "pool": r.pool,
            "variant": r.variant,
            "cache": r.cache,
            "batch_size": r.batch_size,
            "route_reason": r.route_reason,
        }
        if self.placement.emulates:
            params["emulates"] = self.placement.emulates
        if self.node_id:
            params["node_id"] = self.node_id
        return params


class AccountingSink(Protocol):
    def record(self, accounted: AccountedRequest) -> None: ...


class BatchedSink(Protocol):
    def record_many(self, batch: Sequence[AccountedRequest]) -> None: ...


class CarbonAccountant:
    """SCI carbon of a request's energy on the pool that served it, at the region's current intensity."""

    def __init__(self, intensity: IntensitySnapshot, units_reserved: float) -> None:
        self.intensity = intensity
        self.units_reserved = units_reserved

    def carbon(self, energy: RequestEnergy, placement: Placement) -> tuple[CarbonBreakdown | None, float, IntensityView]:
        """(SCI breakdown or None when the intensity is unknown, embodied g, the intensity used)."""
        pool = placement.pool
        view = self.intensity.get(pool.region)
        profile = pool.profile
        if not view.known:
            return None, embodied_g(energy.reserved_s, profile, self.units_reserved), view
        carbon = sci_for_request(
            energy.energy_j, view.g_per_kwh, pool.pue, energy.reserved_s, profile,
            units_reserved=self.units_reserved, intensity_source=view.source,
        )
        return carbon, carbon.embodied_g, view


class RequestAccountant:
    def __init__(self, attributor: EnergyAttributor, carbon: CarbonAccountant, placements: Callable[[PoolInfo], Placement],
                 avoided: AvoidedEnergy | None, record_avoided: Callable[..., None] | None,
                 sinks: Sequence[AccountingSink], signal_type: str, batched: Sequence[BatchedSink] = ()) -> None:
        self.attributor = attributor
        self.carbon = carbon
        self.placements = placements
        self.avoided = avoided
        self.record_avoided = record_avoided
        self.sinks = tuple(sinks)
        self.batched = tuple(batched)
        self.signal_type = signal_type
        self._pending: list[AccountedRequest] = []
        self._pending_lock = threading.Lock()  # a scrape may flush from another thread

    def request_started(self) -> None:
        """The process's dynamic energy is request work while any request is in hand (else idle)."""
        self.attributor.request_started()

    def request_finished(self) -> None:
        self.attributor.request_finished()

    def energy(self, served: ServedRequest) -> tuple[RequestEnergy, int]:
        """What this request is charged, and the batch size it ran in (0: it ran no model)."""
        if served.execution is not None:
            result = served.execution.result
            return result.energy, result.batch_rows
        # A hit is served by this replica: it pays its own run and its share of idle power, from the
        # same meter and books as every batch, so no joule is counted twice or left out.
        (energy,) = self.attributor.charge_batch([max(served.rows, 1)])
        return energy, 0

    def account(self, served: ServedRequest) -> AccountedRequest:
        route = served.execution.route if served.execution is not None else served.route
        card = served.card
        placement = self.placements(route.pool)
        energy, batch_size = self.energy(served)
        carbon, embodied, view = self.carbon.carbon(energy, placement)
        if self.avoided is not None:
            self._avoided(served, route.variant, energy, view, placement.pool.pue)
        record = LedgerRecord(
            time_s=time.time(), request_id=served.request_id, model=card.name, version=card.version,
            variant=route.variant, region=placement.pool.region, hardware=placement.hardware, pool=placement.pool.name,
            batch_size=batch_size, latency_ms=served.latency_ms, energy_j=energy.energy_j,
            energy_method=energy.method, energy_measured=energy.measured,
            intensity_g_per_kwh=view.g_per_kwh, carbon_g=carbon.carbon_g if carbon else None,
            operational_g=carbon.operational_g if carbon else None, embodied_g=embodied, cache=served.cache_status,
            route_reason=route.route_reason, active_j=energy.active_j, idle_j=energy.idle_j,
            intensity_source=view.source, tenant=served.tenant,
        )
        node_id = served.execution.result.node_id if served.execution is not None else None
        slo_ms = route.request.slo_ms if route.request is not None else None
        lead = served.execution.result.batch_lead if served.execution is not None else True
        accounted = AccountedRequest(record, energy, carbon, view, placement, self.signal_type, node_id,
                                     max(served.rows, 1), slo_ms, lead)
        for sink in self.sinks:
            sink.record(accounted)
        if self.batched:
            with self._pending_lock:
                self._pending.append(accounted)
                full = len(self._pending) >= FLUSH_EVERY
            if full:
                self.flush()
        return accounted

    def flush(self) -> None:
        """Hand the batched sinks what is pending (called every ``FLUSH_EVERY`` requests and before each scrape)."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        if pending:
            for sink in self.batched:
                sink.record_many(pending)

    def _avoided(self, served: ServedRequest, variant: str, energy: RequestEnergy, view: IntensityView, pue: float) -> None:
        model, rows = served.card.name, max(served.rows, 1)
        if served.execution is not None:
            self.avoided.observe_miss(model, variant, energy.active_j, rows)
            return
        got = self.avoided.on_hit(model, variant, rows, energy.active_j)
        if got is not None and self.record_avoided is not None:
            avoided_j, method = got
            avoided_g = operational_g(avoided_j, view.g_per_kwh, pue) if view.known else 0.0
            self.record_avoided(model, avoided_j, avoided_g, method=method)


class LedgerSink:
    """Appends each request to the SQLite ledger (written off the request path)."""

    def __init__(self, ledger: EnergyLedger) -> None:
        self.ledger = ledger

    def record(self, accounted: AccountedRequest) -> None:
        self.ledger.append(accounted.record)

    def close(self) -> None:
        self.ledger.close()


class MetricsSink:
    """Energy and carbon counters per request (a batched sink), and the attributor's books at each scrape."""

    def __init__(self, metrics: EnergyMetrics, attributor: EnergyAttributor) -> None:
        self.metrics = metrics
        self.attributor = attributor

    def record_many(self, batch: Sequence[AccountedRequest]) -> None:
        self.metrics.observe_many(a.record for a in batch)

    def refresh(self) -> None:
        self.metrics.observe_attribution(self.attributor.totals())
        self.metrics.refresh()

    def close(self) -> None:
        self.metrics.observe_attribution(self.attributor.totals())


class BudgetSink:
    """Feeds each request's carbon to the carbon budgets the router enforces."""

    def __init__(self, observe_carbon: Callable[[str, float, str | None], None]) -> None:
        self.observe_carbon = observe_carbon

    def record(self, accounted: AccountedRequest) -> None:
        if accounted.record.carbon_g is not None:
            self.observe_carbon(accounted.record.model, accounted.record.carbon_g, accounted.record.tenant)
