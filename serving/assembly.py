"""Builds a data plane from settings: the one place that picks each implementation.

``gateway/wiring.py`` calls this with Ray Serve's batch queue and the executors of pools that are
Serve deployments; tests call it with the plain-asyncio batcher and no Ray at all.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping

from cache import PredictionCacheService, RecentEnergy, describe, make_cache
from energy.attribution import EnergyAttributor
from energy.coefficients import DEFAULT_PROFILE_FOR_CLASS, HardwareProfile, get_profile
from energy.ledger import EnergyLedger
from energy.meters.factory import meter_from_settings
from energy.metrics import EnergyMetrics
from models.registry import ModelRegistry
from models.runtime import Runtime
from routing.control import RoutingControl
from routing.intensity.factory import make_provider
from routing.intensity.base import CarbonIntensityProvider
from routing.intensity.snapshot import IntensitySnapshot
from routing.live import BudgetTracker, GreenRouter, Router, SinglePoolRouter
from routing.pools import LocalPool, OipPool, PoolExecutor, PoolInfo, curve_energy
from routing.topology import load_topology
from serving.accounting import AccountingSink, AvoidedEnergy, CarbonAccountant, RequestAccountant
from serving.batching import Batcher, Charge, TensorBatcher
from serving.dataplane import DataPlane
from serving.host import ModelHost
from serving.sinks import BudgetSink, LedgerSink, MetricsSink
from serving.text_batcher import LengthGroupedBatcher
from wattgate.errors import BadRequest
from wattgate.metrics import MetricsRegistry
from wattgate.settings import Settings

log = logging.getLogger("wattgate.assembly")

# (runtime, charge, max_batch_size, batch_wait_timeout_s, executor) -> a tensor-model batch queue
MakeBatcher = Callable[[Runtime, Charge, int, float, ThreadPoolExecutor | None], Batcher]


@dataclass
class DataPlaneParts:
    settings: Settings
    host: ModelHost
    dataplane: DataPlane
    metrics: MetricsRegistry
    metrics_sink: MetricsSink
    ledger_sink: LedgerSink | None
    cache: PredictionCacheService | None
    provider: CarbonIntensityProvider
    intensity: IntensitySnapshot
    router: Router
    control: RoutingControl | None

    def start_background(self) -> None:
        self.intensity.start()

    def snapshot(self) -> dict:
        """This process's metrics, the attributor's books refreshed."""
        self.metrics_sink.refresh()
        return self.metrics.snapshot()

    def close(self) -> None:
        self.host.close()
        self.metrics_sink.close()
        if self.ledger_sink is not None:
            self.ledger_sink.close()


def build_attributor(settings: Settings, vcpus: float) -> tuple[EnergyAttributor, float]:
    """The process's meter, charging idle power for what it reserved (its num_cpus) unless set."""
    es = settings.energy
    overrides = {} if "vcpus_reserved" in es.model_fields_set else {"vcpus_reserved": vcpus}
    return EnergyAttributor(meter_from_settings(es, **overrides)), overrides.get("vcpus_reserved", es.vcpus_reserved)


def build_host(settings: Settings, charge: Charge, make_batcher: MakeBatcher = TensorBatcher) -> ModelHost:
    def make_text_batcher(runtime, max_batch_size, max_pad_fraction, executor, max_concurrent_batches):
        return LengthGroupedBatcher(runtime, charge, max_batch_size, max_pad_fraction, executor, max_concurrent_batches)

    def make_tensor_batcher(runtime, max_batch_size, batch_wait_timeout_s, executor):
        return make_batcher(runtime, charge, max_batch_size, batch_wait_timeout_s, executor)

    registry = ModelRegistry(settings.models.repository)
    return ModelHost(registry, settings.models, make_tensor_batcher, make_text_batcher, hardware=settings.server.hardware)


def _profiles(settings: Settings) -> dict[str, HardwareProfile]:
    profiles = {cls: get_profile(name) for cls, name in DEFAULT_PROFILE_FOR_CLASS.items()}
    profiles[settings.server.hardware] = get_profile(settings.energy.hardware_profile)
    return profiles


def build_router(
    settings: Settings, provider: CarbonIntensityProvider, local: LocalPool, remote: Mapping[str, PoolExecutor],
) -> tuple[Router, IntensitySnapshot, RoutingControl | None]:
    """A GreenRouter over the topology file, or one local pool when there is none."""
    profiles = _profiles(settings)
    path = settings.routing.topology_file
    if not path.is_file():
        s = settings.server
        log.info("routing: no topology at %s; one local pool in %s", path, s.region)
        pool = PoolInfo("local", s.region, s.hardware, settings.energy.pue, profiles[s.hardware])
        return SinglePoolRouter(pool, local), IntensitySnapshot(provider, [pool.region]), None
    topology = load_topology(path)
    router: GreenRouter | None = None  # OIP pools read its load lazily, once it exists
    executors: dict[str, PoolExecutor] = {}
    for pool in topology.pools:
        spec = settings.pools.get(pool.name)
        if spec is None or spec.kind == "local":
            executors[pool.name] = local
        elif spec.kind == "oip":
            load_rps = lambda name=pool.name: router.load[name].current_rps(time.monotonic())  # noqa: E731
            executors[pool.name] = OipPool(spec.url, curve_energy(pool, load_rps), spec.model_name)
        elif pool.name in remote:
            executors[pool.name] = remote[pool.name]
        else:
            raise BadRequest(f"pool {pool.name!r} is kind {spec.kind!r}; this data plane was given no executor for it")
    rs = settings.routing
    control = RoutingControl(rs.policy, rs.params, history_len=rs.history_len)
    intensity = IntensitySnapshot(provider, sorted({p.region for p in topology.pools}))
    router = GreenRouter(
        topology, control, intensity, executors, profiles, rs.slo_ms, rs.default_client_region,
        BudgetTracker(settings.budgets.models_g, settings.budgets.period_s),
    )
    log.info("routing: %s over pools %s", rs.policy, [p.name for p in topology.pools])
    return router, intensity, control


def build_data_plane(
    settings: Settings,
    make_batcher: MakeBatcher = TensorBatcher,
    remote_pools: Mapping[str, PoolExecutor] | None = None,
) -> DataPlaneParts:
    metrics = MetricsRegistry()
    attributor, vcpus = build_attributor(settings, settings.server.ingress_num_cpus)
    cache = avoided = None
    if settings.cache.enabled:
        cache = PredictionCacheService(make_cache(settings.cache), settings.cache, metrics)
        avoided = AvoidedEnergy(RecentEnergy(), cache.record_avoided)
    log.info("prediction cache: %s", describe(settings.cache))
    host = build_host(settings, attributor.charge_batch, make_batcher)
    provider = make_provider(settings.intensity, metrics=metrics)
    router, intensity, control = build_router(settings, provider, LocalPool(host.run), remote_pools or {})
    metrics_sink = MetricsSink(EnergyMetrics(metrics, window_s=settings.energy.metrics_window_s), attributor)
    es = settings.energy
    ledger_sink = LedgerSink(EnergyLedger(
        settings.ledger_file(), flush_interval_s=es.ledger_flush_interval_s, flush_size=es.ledger_flush_size,
        max_pending=es.ledger_max_pending,
    )) if es.ledger_enabled else None
    sinks: list[AccountingSink] = [metrics_sink, BudgetSink(router.observe_carbon)]
    if ledger_sink is not None:
        sinks.append(ledger_sink)
    hit_profile = get_profile(DEFAULT_PROFILE_FOR_CLASS[settings.server.hardware])
    accountant = RequestAccountant(CarbonAccountant(intensity, vcpus), hit_profile, avoided, sinks)
    host.load_startup()
    # Loading models is start-up work, not any request's: write it off before the first batch.
    attributor.write_off()
    dataplane = DataPlane(settings, host, router, accountant, cache=cache)
    return DataPlaneParts(settings, host, dataplane, metrics, metrics_sink, ledger_sink, cache, provider, intensity,
                          router, control)
