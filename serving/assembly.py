"""Builds a data plane from settings: the one place that picks each implementation.

``gateway/wiring.py`` calls this with Ray Serve's batch queue and the executors of pools that are
Serve deployments; tests call it with the plain-asyncio batcher and no Ray at all.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable, Mapping

from cache import AvoidedEnergy, PredictionCacheService, describe, make_cache
from energy.attribution import EnergyAttributor
from energy.coefficients import DEFAULT_PROFILE_FOR_CLASS, HardwareProfile, get_profile
from energy.ledger import EnergyLedger
from energy.meters.factory import meter_from_settings
from energy.metrics import EnergyMetrics
from models.registry import ModelRegistry
from routing.control import RoutingControl
from routing.exclusions import VariantExclusions
from routing.intensity.factory import make_provider
from routing.intensity.base import CarbonIntensityProvider
from routing.intensity.snapshot import IntensitySnapshot
from routing.live import BudgetTracker, GreenRouter, Router, SinglePoolRouter
from routing.pools import OipPool, PoolExecutor, PoolIdleAccount, PoolInfo, pool_idle_w, remote_energy
from routing.topology import load_topology
from serving.accounting import (
    AccountingSink,
    BatchedSink,
    BudgetSink,
    CarbonAccountant,
    LedgerSink,
    MetricsSink,
    Placement,
    RequestAccountant,
)
from serving.anomaly_sink import AnomalySink
from serving.batching import BatchEnergy, TensorBatcher
from serving.dataplane import DataPlane
from serving.host import ModelHost
from serving.ops_metrics import StateGauges, TrafficSink
from serving.tenant_sink import TenantSink
from serving.quality_guard import QualityGuard, ReferenceRunner
from serving.text_batcher import LengthGroupedBatcher
from tenants.audit import AuditLog
from tenants.budgets import TenantBudgets
from tenants.gate import TenantGate, build_gate
from tenants.keys import KeyStore, make_key_store
from wattgate.errors import BadRequest
from wattgate.metrics import MetricsRegistry
from wattgate.settings import Settings

log = logging.getLogger("wattgate.assembly")


@dataclass
class DataPlaneParts:
    settings: Settings
    host: ModelHost
    dataplane: DataPlane
    attributor: EnergyAttributor
    metrics: MetricsRegistry
    metrics_sink: MetricsSink
    ledger_sink: LedgerSink | None
    cache: PredictionCacheService | None
    provider: CarbonIntensityProvider
    intensity: IntensitySnapshot
    router: Router
    control: RoutingControl | None
    state_gauges: StateGauges | None = None
    anomaly_sink: AnomalySink | None = None
    keys: KeyStore | None = None
    gate: TenantGate | None = None
    audit: AuditLog | None = None
    tenant_sink: TenantSink | None = None
    guard: QualityGuard | None = None
    exclusions: VariantExclusions | None = None

    def start_background(self) -> None:
        self.intensity.start()

    def mark_ready(self) -> float:
        """The replica serves from now on: what was metered until now (model load, warm-up, the
        framework's start) is start-up energy, booked once, never charged to a request."""
        startup_j = self.attributor.end_startup()
        if startup_j > 0 and self.ledger_sink is not None:
            reading = self.attributor.meter.read()
            self.ledger_sink.ledger.record_account("startup", startup_j, reading.method, reading.measured)
        return startup_j

    def snapshot(self) -> dict:
        """This process's metrics, the attributor's books refreshed."""
        self.dataplane.accountant.flush()  # the batched sinks' pending requests
        self.metrics_sink.refresh()
        for part in (self.state_gauges, self.anomaly_sink, self.tenant_sink, self.guard):
            if part is not None:
                part.refresh()
        return self.metrics.snapshot()

    def close(self) -> None:
        if self.guard is not None:
            self.guard.close()
        self.host.close()
        self.dataplane.accountant.flush()
        self.metrics_sink.close()
        if self.anomaly_sink is not None:
            self.anomaly_sink.close()
        if self.ledger_sink is not None:
            self.ledger_sink.close()


def build_attributor(settings: Settings, vcpus: float) -> tuple[EnergyAttributor, float]:
    """The process's meter, charging idle power for what it reserved (its num_cpus) unless set."""
    es = settings.energy
    overrides = {} if "vcpus_reserved" in es.model_fields_set else {"vcpus_reserved": vcpus}
    return EnergyAttributor(meter_from_settings(es, **overrides)), overrides.get("vcpus_reserved", es.vcpus_reserved)


def build_host(settings: Settings, energy: BatchEnergy) -> ModelHost:
    def make_text_batcher(runtime, max_batch_size, max_pad_fraction, executor, max_concurrent_batches):
        return LengthGroupedBatcher(runtime, energy, max_batch_size, max_pad_fraction, executor, max_concurrent_batches)

    def make_tensor_batcher(runtime, max_batch_size, batch_wait_timeout_s, executor):
        return TensorBatcher(runtime, energy, max_batch_size, batch_wait_timeout_s, executor)

    registry = ModelRegistry(settings.models.repository)
    return ModelHost(registry, settings.models, make_tensor_batcher, make_text_batcher, hardware=settings.server.hardware)


def _profiles(settings: Settings) -> dict[str, HardwareProfile]:
    profiles = {cls: get_profile(name) for cls, name in DEFAULT_PROFILE_FOR_CLASS.items()}
    profiles[settings.server.hardware] = get_profile(settings.energy.hardware_profile)
    return profiles


def build_router(
    settings: Settings, provider: CarbonIntensityProvider, local: PoolExecutor, remote: Mapping[str, PoolExecutor],
    exclusions: VariantExclusions | None = None,
) -> tuple[Router, IntensitySnapshot, RoutingControl | None, dict[str, Placement]]:
    """A GreenRouter over the topology file, or one local pool when there is none; and where each
    pool's energy is really spent (a logical pool run in this process emulates its class)."""
    profiles = _profiles(settings)
    s = settings.server
    local_profile = profiles[s.hardware]

    def on_this_machine(pool: PoolInfo) -> Placement:
        emulates = pool.hardware if pool.hardware != s.hardware else None
        return Placement(dataclasses.replace(pool, profile=local_profile), s.hardware, emulates, local_profile.name)

    path = settings.routing.topology_file
    if not path.is_file():
        log.info("routing: no topology at %s; one local pool in %s", path, s.region)
        pool = PoolInfo("local", s.region, s.hardware, settings.energy.pue, local_profile)
        return (SinglePoolRouter(pool, local, exclusions), IntensitySnapshot(provider, [pool.region]), None,
                {pool.name: on_this_machine(pool)})
    topology = load_topology(path)
    executors: dict[str, PoolExecutor] = {}
    for pool in topology.pools:
        spec = settings.pools.get(pool.name)
        if spec is None or spec.kind == "local":
            executors[pool.name] = local
        elif spec.kind == "oip":
            # This ingress replica's share of the pool's idle power: the replicas' shares add up to one bill.
            account = PoolIdleAccount(pool_idle_w(pool), 1.0 / s.ingress_replicas)
            executors[pool.name] = OipPool(spec.url, remote_energy(pool, account), spec.model_name, protocol=spec.protocol)
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
        ingress_replicas=s.ingress_replicas,  # each replica sees ~1/N of the traffic and bounds its share
        deferrable_share=settings.jobs.max_pool_share,  # jobs: spare capacity, at most this share of a pool
        exclusions=exclusions,
    )
    log.info("routing: %s over pools %s", rs.policy, [p.name for p in topology.pools])
    placements = {
        name: on_this_machine(pool) if executors[name] is local else Placement(pool, pool.hardware, None, pool.profile.name)
        for name, pool in router.pools.items()
    }
    return router, intensity, control, placements


def build_data_plane(
    settings: Settings,
    remote_pools: Mapping[str, PoolExecutor] | None = None,
) -> DataPlaneParts:
    metrics = MetricsRegistry()
    attributor, vcpus = build_attributor(settings, settings.server.ingress_num_cpus)
    cache = PredictionCacheService(make_cache(settings.cache), settings.cache, metrics) if settings.cache.enabled else None
    avoided = AvoidedEnergy() if cache is not None else None
    log.info("prediction cache: %s", describe(settings.cache))
    host = build_host(settings, attributor)
    provider = make_provider(settings.intensity, metrics=metrics)
    qs = settings.quality_guard
    exclusions = VariantExclusions() if qs.enabled else None
    router, intensity, control, placements = build_router(settings, provider, host, remote_pools or {}, exclusions)
    metrics_sink = MetricsSink(EnergyMetrics(metrics, window_s=settings.energy.metrics_window_s), attributor)
    es = settings.energy
    ledger_sink = LedgerSink(EnergyLedger(
        settings.ledger_file(), flush_interval_s=es.ledger_flush_interval_s, flush_size=es.ledger_flush_size,
        max_pending=es.ledger_max_pending,
    )) if es.ledger_enabled else None
    anomaly_sink = AnomalySink.from_settings(es.anomaly, metrics) if es.anomaly.enabled else None
    auth = settings.auth
    keys = make_key_store(auth, settings.server.state_dir)
    budgets = TenantBudgets(auth.budgets, ledger_sink.ledger.tenant_carbon_g if ledger_sink is not None else None,
                            alert=budget_alert(auth.budgets.webhook_url, metrics))
    tenant_sink = TenantSink(metrics, budgets, keys.tenants, auth.max_tenant_labels)
    # Per request: what the next request is judged by (budgets) and the ledger's queue. Batched: the
    # books only a scrape reads (serving/accounting.py, "Sinks").
    sinks: list[AccountingSink] = [BudgetSink(router.observe_carbon), tenant_sink]
    if ledger_sink is not None:
        sinks.append(ledger_sink)
    batched: list[BatchedSink] = [metrics_sink, TrafficSink(metrics, settings.routing.slo_ms, tenant_sink.label), tenant_sink]
    if anomaly_sink is not None:
        batched.append(anomaly_sink)
    accountant = RequestAccountant(
        attributor, CarbonAccountant(intensity, vcpus), lambda pool: placements[pool.name], avoided,
        cache.record_avoided if cache is not None else None, sinks, settings.intensity.signal_type, batched,
    )
    host.load_startup()  # start-up energy until mark_ready(): never a request's
    if avoided is not None:
        _profiled_active_energy(host, avoided, attributor)
    guard = _quality_guard(settings, host, router, metrics, exclusions, ledger_sink, accountant, placements) if qs.enabled else None
    dataplane = DataPlane(settings, host, router, accountant, cache=cache, metrics=metrics, budgets=budgets, guard=guard)
    state_gauges = StateGauges(metrics, intensity, router.pool_health, router.budget_use)
    return DataPlaneParts(settings, host, dataplane, attributor, metrics, metrics_sink, ledger_sink, cache, provider,
                          intensity, router, control, state_gauges, anomaly_sink, keys, build_gate(auth, keys, metrics),
                          AuditLog(settings.state_path(auth.audit_file)), tenant_sink, guard, exclusions)


def budget_alert(webhook_url: str | None, metrics: MetricsRegistry) -> Callable[[dict], None]:
    """A tenant crossed a budget level: a warning in the log and, when configured, a JSON POST off the request path."""
    failures = metrics.counter("wattgate_budget_webhook_failures_total", "Budget alert webhooks that failed")

    def post(alert: dict) -> None:
        import json
        import urllib.request

        try:
            req = urllib.request.Request(webhook_url, json.dumps({"kind": "carbon-budget", **alert}).encode(),
                                         {"content-type": "application/json"})
            urllib.request.urlopen(req, timeout=5).close()
        except Exception as exc:  # an alert never fails a request
            failures.inc()
            log.warning("budget webhook failed: %s", type(exc).__name__)

    def alert(doc: dict) -> None:
        log.warning("tenant %s has spent %.0f%% of its %s carbon budget", doc["tenant"], doc["level"] * 100, doc["period"])
        if webhook_url:
            import threading

            threading.Thread(target=post, args=(doc,), daemon=True, name="budget-webhook").start()

    return alert



def _quality_guard(settings: Settings, host: ModelHost, router: Router, metrics: MetricsRegistry,
                   exclusions: VariantExclusions | None, ledger_sink: LedgerSink | None, accountant: RequestAccountant,
                   placements: Mapping[str, Placement]) -> QualityGuard:
    """The guard's reference runs go where the router puts deferrable work (this replica's own pool when
    no pool has room) and are priced at the intensity of the pool that ran them."""
    local = next((p for p in placements.values() if p.emulates is None and p.pool.hardware == settings.server.hardware),
                 next(iter(placements.values())))

    def carbon_g(energy, pool: str) -> float | None:
        carbon, _, _ = accountant.carbon.carbon(energy, placements.get(pool, local))
        return carbon.carbon_g if carbon is not None else None

    def cleanest_g_per_kwh() -> float | None:  # a clean window: somewhere the guard may run is clean enough
        known = [v.g_per_kwh for v in (accountant.carbon.intensity.get(p.pool.region) for p in placements.values()) if v.known]
        return min(known, default=None)

    guard = QualityGuard(settings.quality_guard, ReferenceRunner(router, host, local.pool.name, carbon_g), metrics,
                         exclusions, ledger_sink.ledger if ledger_sink is not None else None,
                         (accountant.request_started, accountant.request_finished), cleanest_g_per_kwh)
    guard.check_models(host)  # a missing reference variant is a clear error at load, not a silent no-op
    return guard


def _profiled_active_energy(host: ModelHost, avoided: AvoidedEnergy, attributor: EnergyAttributor) -> None:
    """Until enough misses are metered, a hit's avoided energy is the variant's profiled active
    energy: its CPU-seconds per inference at batch 1 on this hardware x the profile's dynamic watts."""
    meter_profile = getattr(attributor.meter, "profile", None)
    if meter_profile is None or meter_profile.dynamic_power_w is None:
        return
    for state in host.models.values():
        for loaded in state.versions.values():
            for variant in loaded.variants:
                _, vcard = loaded.card.variant(variant)
                row = (((vcard.energy_profile or {}).get(host.hardware) or {}).get("batches") or {}).get("1") or {}
                cpu_s = row.get("cpu_s_per_inference")
                if isinstance(cpu_s, (int, float)) and cpu_s >= 0:
                    avoided.set_profile(loaded.card.name, variant, cpu_s * meter_profile.dynamic_power_w)
