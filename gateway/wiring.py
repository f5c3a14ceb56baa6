"""Builds a replica's parts from settings: the one place that picks implementations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.accounting import GatewayAccounting, IntensitySnapshot, PoolInfo, combine_energy
from gateway.admin import AdminApi
from gateway.batcher import VariantBatcher
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
    router: Any
    sync: Any = None

    def start_background(self) -> None:
        self.intensity.start()
        if self.sync is not None:
            self.sync.start()

    def close(self) -> None:
        for state in self.host.models.values():
            self.host._close(state)
        self.accounting.close()


def _meter(settings: Settings, vcpus: float):
    from energy.attribution import EnergyAttributor
    from energy.meters.factory import meter_from_settings

    es = settings.energy
    # The CPU-time model charges idle power for what the replica reserved: its num_cpus.
    overrides = {} if "vcpus_reserved" in es.model_fields_set else {"vcpus_reserved": vcpus}
    return EnergyAttributor(meter_from_settings(es, **overrides)), overrides.get("vcpus_reserved", es.vcpus_reserved)


def _host(settings: Settings, charge) -> ModelHost:
    registry = ModelRegistry(settings.models.repository)

    def make_batcher(**kw):
        return VariantBatcher(charge=charge, **kw)

    def make_text_batcher(runtime, max_batch_size, max_pad_fraction, executor, max_concurrent_batches):
        from gateway.text_batcher import LengthGroupedBatcher

        return LengthGroupedBatcher(runtime, charge, combine_energy, max_batch_size, max_pad_fraction, executor,
                                    max_concurrent_batches)

    return ModelHost(registry, settings.models, make_batcher, make_text_batcher, hardware=settings.server.hardware)


def build_pool_worker(settings: Settings, num_cpus: float = 0.5):
    """A remote pool replica: its own models and meter; the ingress does the accounting."""
    attributor, _ = _meter(settings, num_cpus)
    host = _host(settings, attributor.charge_batch)
    host.load_startup()
    attributor.write_off()
    return host, attributor


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


def _ledger(settings: Settings):
    from energy.ledger import EnergyLedger

    es = settings.energy
    if not es.ledger_enabled:
        return None
    return EnergyLedger(settings.ledger_file(), flush_interval_s=es.ledger_flush_interval_s, flush_size=es.ledger_flush_size, max_pending=es.ledger_max_pending)


def _router(settings: Settings, intensity_provider, pool_handles: dict[str, Any], metrics: MetricsRegistry):
    """GreenRouter over the topology file, or a single local pool when there is none."""
    from energy.coefficients import DEFAULT_PROFILE_FOR_CLASS, get_profile

    profiles = {cls: get_profile(name) for cls, name in DEFAULT_PROFILE_FOR_CLASS.items()}
    profiles[settings.server.hardware] = get_profile(settings.energy.hardware_profile)
    path = settings.routing.topology_file
    if not path.is_file():
        log.info("routing: no topology at %s; one local pool in %s", path, settings.server.region)
        pool = PoolInfo("local", settings.server.region, settings.server.hardware, settings.energy.pue, profiles[settings.server.hardware])
        intensity = IntensitySnapshot(intensity_provider, [pool.region])
        return LocalRouter(pool), intensity, None
    from gateway.green import BudgetTracker, GreenRouter
    from gateway.router import LocalExecutor
    from gateway.remote import HandleExecutor, OipExecutor
    from routing.control import RoutingControl
    from routing.topology import load_topology

    topology = load_topology(path)
    executors: dict[str, Any] = {}
    for pool in topology.pools:
        spec = settings.pools.get(pool.name)
        if spec is None or spec.kind == "local":
            executors[pool.name] = LocalExecutor()
        elif spec.kind == "ray":
            executors[pool.name] = HandleExecutor(pool_handles[pool.name], pool.name)
        else:
            executors[pool.name] = OipExecutor(spec.url, _curve_energy(pool, lambda p=pool.name: router._load[p]), spec.model_name)
    rs = settings.routing
    control = RoutingControl(rs.policy, rs.params, history_len=rs.history_len)
    intensity = IntensitySnapshot(intensity_provider, sorted({p.region for p in topology.pools}))
    router = GreenRouter(
        topology, control, intensity, executors, profiles, rs.slo_ms, rs.default_client_region,
        BudgetTracker(settings.budgets.models_g, settings.budgets.period_s),
    )
    log.info("routing: %s over pools %s", rs.policy, [p.name for p in topology.pools])
    return router, intensity, control


def _curve_energy(pool, load_of):
    """Energy of a request on a pool we cannot meter: the pool's curve at its current load (modelled)."""
    import time

    from energy.attribution import RequestEnergy

    def energy(variant: str, rows: int) -> RequestEnergy:
        curve = pool.curve(variant)
        j = curve.at(max(load_of().current_rps(time.monotonic()), 1e-3)) * rows
        return RequestEnergy(energy_j=j, active_j=j, idle_j=0.0, method=f"pool-curve-{curve.method}", measured=False,
                             batch_size=rows, work_share=1.0, reserved_s=pool.service_ms / 1000 * rows)

    return energy


def build_gateway(settings: Settings, pool_handles: dict[str, Any] | None = None, with_sync: bool = True) -> GatewayParts:
    from energy.coefficients import DEFAULT_PROFILE_FOR_CLASS, get_profile
    from energy.metrics import EnergyMetrics
    from routing.intensity.factory import make_provider

    metrics = MetricsRegistry()
    attributor, vcpus = _meter(settings, settings.server.ingress_num_cpus)
    cache, recent, record_avoided = _cache_parts(settings, metrics)
    provider = make_provider(settings.intensity, metrics=metrics)
    router, intensity, control = _router(settings, provider, pool_handles or {}, metrics)
    accounting = GatewayAccounting(
        attributor, EnergyMetrics(metrics, window_s=settings.energy.metrics_window_s), _ledger(settings), intensity,
        cache_profile=get_profile(DEFAULT_PROFILE_FOR_CLASS[settings.server.hardware]),
        units_reserved=vcpus, recent_energy=recent, record_avoided=record_avoided,
        on_carbon=getattr(router, "observe_carbon", None),
    )
    host = _host(settings, accounting.charge)
    host.load_startup()
    # Loading models is start-up work, not any request's: write it off before the first batch.
    attributor.write_off()
    dataplane = DataPlane(settings, host, router, accounting, cache=cache)
    from gateway.admin_routing import routing_routes

    def snapshot() -> dict:
        accounting.refresh_metrics()
        return metrics.snapshot()

    sync = _replica_sync(settings, control, host, snapshot) if with_sync else None
    admin = AdminApi(
        host.registry, host,
        broadcast=sync.publish_model if sync else None,
        extra_routes=routing_routes(control, provider, intensity.refresh, sync.publish_routing if sync else None),
    )

    async def metrics_text() -> str:
        from energy.metrics import recompute_joules_per_1k
        from wattgate.metrics import merge

        if sync is None:
            return render(snapshot())
        try:  # the whole gateway's totals: every ingress replica's latest snapshot
            return render(recompute_joules_per_1k(merge(await sync.gateway_snapshots())))
        except Exception as exc:
            log.warning("metrics from other replicas unavailable (%s); this replica only", exc)
            return render(snapshot())

    api = HttpApi(dataplane, admin, metrics_text)
    return GatewayParts(settings, host.registry, host, dataplane, api, metrics, accounting, cache, intensity, router, sync)


def _replica_sync(settings: Settings, control, host: ModelHost, snapshot):
    from gateway.control import ReplicaSync

    def apply_model(name: str, action: str) -> None:
        host.load(name) if action == "load" else host.unload(name)

    return ReplicaSync(f"wattgate-control-{settings.fingerprint()}", control, apply_model, snapshot)
