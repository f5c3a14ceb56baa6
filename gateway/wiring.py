"""Builds a replica's parts from settings: the one place that picks implementations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.accounting import GatewayAccounting, IntensitySnapshot, PoolInfo, combine_energy
from gateway.admin import AdminApi
from gateway.batcher import BucketedBatcher, VariantBatcher
from gateway.dataplane import DataPlane
from gateway.host import ModelHost
from gateway.http import HttpApi
from gateway.router import LocalRouter
from models.registry import ModelRegistry
from wattgate.metrics import MetricsRegistry, render
from wattgate.settings import Settings

log = logging.getLogger("wattgate.wiring")


@dataclass
class GatewayParts:
    settings: Settings
    registry: ModelRegistry
    host: ModelHost
    dataplane: DataPlane
    api: HttpApi
    metrics: MetricsRegistry
    accounting: GatewayAccounting
    cache: Any
    intensity: IntensitySnapshot

    def start_background(self) -> None:
        self.intensity.start()

    def close(self) -> None:
        for state in self.host.models.values():
            self.host._close(state)
        self.accounting.close()


def _energy_parts(settings: Settings, metrics: MetricsRegistry):
    from energy.attribution import EnergyAttributor
    from energy.ledger import EnergyLedger
    from energy.meters.factory import meter_from_settings
    from energy.metrics import EnergyMetrics

    es = settings.energy
    overrides = {}
    if "vcpus_reserved" not in es.model_fields_set:
        # The CPU-time model charges idle power for what the replica reserved: its num_cpus.
        overrides["vcpus_reserved"] = settings.server.ingress_num_cpus
    meter = meter_from_settings(es, **overrides)
    attributor = EnergyAttributor(meter)
    energy_metrics = EnergyMetrics(metrics, window_s=es.metrics_window_s)
    ledger = None
    if es.ledger_enabled:
        ledger = EnergyLedger(
            settings.server.state_dir / es.ledger_path if not es.ledger_path.is_absolute() else es.ledger_path,
            flush_interval_s=es.ledger_flush_interval_s,
            flush_size=es.ledger_flush_size,
            max_pending=es.ledger_max_pending,
        )
    return attributor, energy_metrics, ledger, overrides.get("vcpus_reserved", es.vcpus_reserved)


def _cache_parts(settings: Settings, metrics: MetricsRegistry):
    if not settings.cache.enabled:
        log.info("prediction cache: off")
        return None, None, None
    from cache.avoided import RecentEnergy
    from cache.base import describe, make_cache
    from cache.service import PredictionCacheService

    service = PredictionCacheService(make_cache(settings.cache), settings.cache, metrics)
    log.info("prediction cache: %s", describe(settings.cache))
    return service, RecentEnergy(), service.record_avoided


def build_gateway(settings: Settings) -> GatewayParts:
    from energy.coefficients import DEFAULT_PROFILE_FOR_CLASS, get_profile
    from routing.intensity.factory import make_provider

    registry = ModelRegistry(settings.models.repository)
    metrics = MetricsRegistry()
    attributor, energy_metrics, ledger, vcpus = _energy_parts(settings, metrics)
    cache, recent, record_avoided = _cache_parts(settings, metrics)
    provider = make_provider(settings.intensity, metrics=metrics)
    hardware = settings.server.hardware
    pool = PoolInfo(
        name="local",
        region=settings.server.region,
        hardware=hardware,
        pue=settings.energy.pue,
        profile=get_profile(settings.energy.hardware_profile),
    )
    intensity = IntensitySnapshot(provider, [pool.region])
    accounting = GatewayAccounting(
        attributor, energy_metrics, ledger, intensity,
        cache_profile=get_profile(DEFAULT_PROFILE_FOR_CLASS[hardware]),
        units_reserved=vcpus, recent_energy=recent, record_avoided=record_avoided,
    )

    def make_batcher(**kw):
        return VariantBatcher(charge=accounting.charge, **kw)

    def make_text_batcher(pre, make):
        return BucketedBatcher(pre, make, combine_energy)

    host = ModelHost(registry, settings.models, make_batcher, make_text_batcher, hardware=hardware)
    host.load_startup()
    # Loading models is start-up work, not any request's: write it off before the first batch.
    attributor.write_off()
    dataplane = DataPlane(settings, host, LocalRouter(pool), accounting, cache=cache)
    admin = AdminApi(registry, host)

    async def metrics_text() -> str:
        accounting.refresh_metrics()
        return render(metrics.snapshot())

    api = HttpApi(dataplane, admin, metrics_text)
    return GatewayParts(settings, registry, host, dataplane, api, metrics, accounting, cache, intensity)
