"""A served request's books: its energy, its carbon, the energy a cache hit avoided, then the sinks.

Each piece is small and typed: :func:`request_energy` (what the request was charged: its batch's
share, or a hit's own CPU cost), :class:`CarbonAccountant` (SCI carbon from the pool's region,
PUE and hardware), :class:`AvoidedEnergy` (what a hit saved), and sinks (``serving/sinks.py``:
ledger, metrics, carbon budgets) that each take the finished :class:`AccountedRequest`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from cache.avoided import RecentEnergy
from energy.attribution import RequestEnergy, cache_hit_energy
from energy.carbon import CarbonBreakdown, operational_g, sci_for_request
from energy.coefficients import HardwareProfile
from energy.ledger import LedgerRecord
from models.card import ModelCard
from routing.intensity.snapshot import IntensitySnapshot
from routing.live import Execution, Route
from routing.pools import PoolInfo


@dataclass(frozen=True)
class ServedRequest:
    """What the data plane knows once a request is answered. ``execution`` is None when the
    request ran no model (a cache hit, or a follower of an identical request in flight)."""

    card: ModelCard
    route: Route
    execution: Execution | None
    cache_status: str
    cache_cpu_s: float
    latency_ms: float
    request_id: str
    rows: int


@dataclass(frozen=True)
class AccountedRequest:
    """A request's final figures: the ledger record plus what only the response carries."""

    record: LedgerRecord
    energy: RequestEnergy
    carbon: CarbonBreakdown
    intensity_source: str
    intensity_stale: bool
    pue: float
    node_id: str | None = None

    def parameters(self) -> dict[str, Any]:
        """The OIP response's ``parameters``: every figure with its unit and how it was obtained."""
        r, e, c = self.record, self.energy, self.carbon
        params = {
            "energy_j": e.energy_j,
            "energy_method": e.method,
            "energy_measured": e.measured,
            "energy_active_j": e.active_j,
            "energy_idle_j": e.idle_j,
            "carbon_g": c.carbon_g,
            "operational_g": c.operational_g,
            "embodied_g": c.embodied_g,
            "intensity_g_per_kwh": r.intensity_g_per_kwh,
            "intensity_source": self.intensity_source,
            "intensity_stale": self.intensity_stale,
            "pue": self.pue,
            "region": r.region,
            "hardware": r.hardware,
            "pool": r.pool,
            "variant": r.variant,
            "cache": r.cache,
            "batch_size": r.batch_size,
            "route_reason": r.route_reason,
        }
        if self.node_id:
            params["node_id"] = self.node_id
        return params


class AccountingSink(Protocol):
    def record(self, accounted: AccountedRequest) -> None: ...


def request_energy(served: ServedRequest, hit_profile: HardwareProfile) -> tuple[RequestEnergy, int]:
    """What this request is charged, and the batch size it ran in (0: it ran no model)."""
    if served.execution is not None:
        result = served.execution.result
        return result.energy, result.batch_rows
    return cache_hit_energy(served.cache_cpu_s, hit_profile), 0


class CarbonAccountant:
    """SCI carbon of a request's energy on the pool that served it, at the region's current intensity."""

    def __init__(self, intensity: IntensitySnapshot, units_reserved: float) -> None:
        self.intensity = intensity
        self.units_reserved = units_reserved

    def carbon(self, energy: RequestEnergy, pool: PoolInfo) -> tuple[CarbonBreakdown, bool]:
        g_per_kwh, source, stale = self.intensity.get(pool.region)
        carbon = sci_for_request(
            energy.energy_j, g_per_kwh, pool.pue, energy.reserved_s, pool.profile,
            units_reserved=self.units_reserved, intensity_source=source,
        )
        return carbon, stale


class AvoidedEnergy:
    """What a cache hit saved: the recent metered energy of a computed request of that variant,
    less the hit's own cost. Misses feed the estimate; hits report to ``record_avoided``."""

    def __init__(self, recent: RecentEnergy, record_avoided: Callable[[str, float, float], None]) -> None:
        self.recent = recent
        self.record_avoided = record_avoided

    def observe(self, model: str, variant: str, served: bool, energy: RequestEnergy, carbon: CarbonBreakdown) -> None:
        if served:
            self.recent.observe(model, variant, energy.energy_j)
            return
        estimate = self.recent.estimate(model, variant)
        if estimate is not None:
            avoided_j = max(0.0, estimate.energy_j - energy.energy_j)
            self.record_avoided(model, avoided_j, operational_g(avoided_j, carbon.intensity_g_per_kwh, carbon.pue))


class RequestAccountant:
    def __init__(self, carbon: CarbonAccountant, hit_profile: HardwareProfile, avoided: AvoidedEnergy | None,
                 sinks: Sequence[AccountingSink]) -> None:
        self.carbon = carbon
        self.hit_profile = hit_profile
        self.avoided = avoided
        self.sinks = tuple(sinks)

    def account(self, served: ServedRequest) -> AccountedRequest:
        route = served.execution.route if served.execution is not None else served.route
        pool, card = route.pool, served.card
        energy, batch_size = request_energy(served, self.hit_profile)
        carbon, stale = self.carbon.carbon(energy, pool)
        if self.avoided is not None:
            self.avoided.observe(card.name, route.variant, served.execution is not None, energy, carbon)
        record = LedgerRecord(
            time_s=time.time(), request_id=served.request_id, model=card.name, version=card.version,
            variant=route.variant, region=pool.region, hardware=pool.hardware, pool=pool.name,
            batch_size=batch_size, latency_ms=served.latency_ms, energy_j=energy.energy_j,
            energy_method=energy.method, energy_measured=energy.measured,
            intensity_g_per_kwh=carbon.intensity_g_per_kwh, carbon_g=carbon.carbon_g,
            operational_g=carbon.operational_g, embodied_g=carbon.embodied_g, cache=served.cache_status,
            route_reason=route.route_reason,
        )
        node_id = served.execution.result.node_id if served.execution is not None else None
        accounted = AccountedRequest(record, energy, carbon, carbon.intensity_source, stale, pool.pue, node_id)
        for sink in self.sinks:
            sink.record(accounted)
        return accounted
