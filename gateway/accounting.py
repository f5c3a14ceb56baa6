"""Turns each served request into energy, carbon, metrics and a ledger record (and response parameters).

The replica's meter is read by its attributor after every batch; a cache hit is charged its own small
CPU cost instead. Intensity is read from a snapshot that a background task keeps fresh, so a slow
or dead provider never sits on the request path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any, Sequence

from energy.attribution import EnergyAttributor, RequestEnergy, cache_hit_energy
from energy.carbon import sci_for_request
from energy.coefficients import HardwareProfile
from energy.ledger import EnergyLedger, LedgerRecord
from energy.metrics import EnergyMetrics

log = logging.getLogger("wattgate.accounting")


@dataclass(frozen=True)
class PoolInfo:
    """Where a request ran: what its carbon depends on."""

    name: str
    region: str
    hardware: str
    pue: float
    profile: HardwareProfile
    route_reason: str | None = None
    request: Any = None  # the routing request, kept so a failed pool can fall back


def combine_energy(parts: Sequence[RequestEnergy]) -> RequestEnergy:
    """One request made of several charged pieces (e.g. one per sentence) pays their sum."""
    if len(parts) == 1:
        return parts[0]
    return dataclasses.replace(
        parts[0],
        energy_j=sum(p.energy_j for p in parts),
        active_j=sum(p.active_j for p in parts),
        idle_j=sum(p.idle_j for p in parts),
        reserved_s=sum(p.reserved_s for p in parts),
        work_share=sum(p.work_share for p in parts),
        batch_size=max(p.batch_size for p in parts),
    )


class IntensitySnapshot:
    """The latest reading per region, refreshed off the request path."""

    def __init__(self, provider: Any, regions: Sequence[str], refresh_s: float = 1.0) -> None:
        self.provider = provider
        self.regions = list(regions)
        self.refresh_s = refresh_s
        self.readings: dict[str, Any] = {}
        self.generation = 0  # bumps when any region's value changes: cached routing decisions expire
        self.refresh()  # first values at start-up (cached/static/replay: fast)
        self._task: asyncio.Task | None = None

    def refresh(self) -> None:
        for region in self.regions:
            self._read(region)

    def _read(self, region: str) -> None:
        try:
            reading = self.provider.current(region)
            old = self.readings.get(region)
            if old is None or old.intensity_g_per_kwh != reading.intensity_g_per_kwh or old.stale != reading.stale:
                self.generation += 1
            self.readings[region] = reading
        except Exception as exc:  # a provider must never break serving; keep the last reading
            log.warning("intensity for %s unavailable: %s", region, exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for region in self.regions:
                await loop.run_in_executor(None, self._read, region)
            await asyncio.sleep(self.refresh_s)

    def get(self, region: str) -> tuple[float, str, bool]:
        reading = self.readings.get(region)
        if reading is None:
            self._read(region)
            reading = self.readings.get(region)
        if reading is None:
            return 0.0, "unavailable", True
        return reading.intensity_g_per_kwh, f"{reading.source}/{reading.kind}", bool(reading.stale)


class GatewayAccounting:
    def __init__(
        self,
        attributor: EnergyAttributor,
        metrics: EnergyMetrics,
        ledger: EnergyLedger | None,
        intensity: IntensitySnapshot,
        cache_profile: HardwareProfile,
        units_reserved: float,
        recent_energy: Any = None,
        record_avoided: Any = None,
        on_carbon: Any = None,
    ) -> None:
        self.attributor = attributor
        self.metrics = metrics
        self.ledger = ledger
        self.intensity = intensity
        self.cache_profile = cache_profile
        self.units_reserved = units_reserved
        self.recent = recent_energy
        self.record_avoided = record_avoided
        self.on_carbon = on_carbon  # feeds the router's carbon budgets

    def charge(self, work_units: Sequence[float]) -> list[RequestEnergy]:
        return self.attributor.charge_batch(work_units)

    def account(self, *, card, executed, cache_status, latency_ms, request_id, rows, cache_cost) -> dict[str, Any]:
        pool: PoolInfo = executed.pool
        result = executed.result
        if result is not None:
            energy: RequestEnergy = result.energy
            batch_size = result.batch_rows
            if self.recent is not None:
                self.recent.observe(card.name, executed.variant, energy.energy_j)
        else:  # a hit, or a follower of an identical in-flight request: it never ran the model
            energy = cache_hit_energy(getattr(cache_cost, "cache_cpu_s", 0.0), self.cache_profile)
            batch_size = 0
        intensity, source, stale = self.intensity.get(pool.region)
        carbon = sci_for_request(
            energy.energy_j, intensity, pool.pue, energy.reserved_s, pool.profile,
            units_reserved=self.units_reserved, intensity_source=source,
        )
        if result is None and self.record_avoided is not None and self.recent is not None:
            est = self.recent.estimate(card.name, executed.variant)
            if est is not None:
                avoided_j = max(0.0, est.energy_j - energy.energy_j)
                avoided_g = avoided_j / 3.6e6 * intensity * pool.pue
                self.record_avoided(card.name, avoided_j, avoided_g)
        record = LedgerRecord(
            time_s=time.time(), request_id=request_id, model=card.name, version=card.version,
            variant=executed.variant, region=pool.region, hardware=pool.hardware, pool=pool.name,
            batch_size=batch_size, latency_ms=latency_ms, energy_j=energy.energy_j,
            energy_method=energy.method, energy_measured=energy.measured,
            intensity_g_per_kwh=intensity, carbon_g=carbon.carbon_g, operational_g=carbon.operational_g,
            embodied_g=carbon.embodied_g, cache=cache_status, route_reason=pool.route_reason,
        )
        self.metrics.observe(record)
        if self.on_carbon is not None:
            self.on_carbon(card.name, carbon.carbon_g)
        if self.ledger is not None:
            self.ledger.append(record)
        return {
            "energy_j": energy.energy_j,
            "energy_method": energy.method,
            "energy_measured": energy.measured,
            "energy_active_j": energy.active_j,
            "energy_idle_j": energy.idle_j,
            "carbon_g": carbon.carbon_g,
            "operational_g": carbon.operational_g,
            "embodied_g": carbon.embodied_g,
            "intensity_g_per_kwh": intensity,
            "intensity_source": source,
            "intensity_stale": stale,
            "pue": pool.pue,
            "region": pool.region,
            "hardware": pool.hardware,
            "pool": pool.name,
            "variant": executed.variant,
            "cache": cache_status,
            "batch_size": batch_size,
            "route_reason": pool.route_reason,
            **({"node_id": result.node_id} if result is not None and result.node_id else {}),
        }

    def refresh_metrics(self) -> None:
        self.metrics.observe_attribution(self.attributor.totals())
        self.metrics.refresh()

    def close(self) -> None:
        self.metrics.observe_attribution(self.attributor.totals())
        if self.ledger is not None:
            self.ledger.close()
