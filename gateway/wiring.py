"""Builds an ingress replica: the data plane (serving/assembly.py) on Ray Serve's batch queue, pools
that are Serve deployments, the admin API, the HTTP routes, the gRPC service and the sync between
ingress replicas."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from energy.metrics import recompute_joules_per_1k
from gateway.admin import AdminApi
from gateway.admin_routing import autoscaling_routes, quality_routes, routing_routes
from gateway.admin_tenants import key_routes
from gateway.auth import AdminAuth
from gateway.autoscaling import PoolBoard, control_store_name, pool_families, scaled_pools
from gateway.dashboard import Dashboard
from gateway.grpc_api import GrpcApi
from gateway.http import HttpApi
from gateway.jobs_api import deferred_response, jobs_routes
from gateway.pool_worker import RayPool
from gateway.replica_sync import ReplicaSync
from jobs.assembly import JobsParts, build_jobs
from serving.assembly import DataPlaneParts, build_data_plane
from wattgate.metrics import merge, render
from wattgate.settings import Settings

log = logging.getLogger("wattgate.wiring")


@dataclass
class GatewayParts:
    data: DataPlaneParts
    api: HttpApi
    grpc: GrpcApi
    sync: ReplicaSync | None = None
    jobs: JobsParts | None = None

    def start_background(self) -> None:
        self.data.start_background()
        if self.sync is not None:
            self.sync.start()
        if self.jobs is not None:
            self.jobs.start()

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.close()
        self.data.close()


def build_gateway(settings: Settings, pool_handles: dict[str, Any] | None = None, with_sync: bool = True) -> GatewayParts:
    remote = {name: RayPool(handle, name) for name, handle in (pool_handles or {}).items()}
    data = build_data_plane(settings, remote_pools=remote)
    host, control = data.host, data.control
    sync = None
    core = getattr(data.router, "core", None)  # a GreenRouter's RouterCore; None for one local pool
    specs = scaled_pools(core.topology, settings) if core is not None else {}
    board = None
    if core is not None and with_sync:
        shared = {name for name, ex in settings.pools.items() if ex.kind in ("ray", "oip")}
        board = PoolBoard(data.router, data.intensity, specs, shared & set(core.topology.names), data.metrics)
    if with_sync:
        def apply_model(name: str, action: str) -> None:
            host.load(name) if action == "load" else host.unload(name)

        sync = ReplicaSync(control_store_name(settings), control, apply_model, data.snapshot, pools=board,
                           exclusions=data.guard)  # quality-guard exclusions reach every ingress replica
    admin = AdminApi(
        host.registry, host,
        broadcast=sync.publish_model if sync else None,
        extra_routes=routing_routes(control, data.provider, data.intensity.refresh, sync.publish_routing if sync else None)
        + autoscaling_routes(specs, sync) + key_routes(data.keys, data.audit) + quality_routes(data.guard, data.exclusions),
    )

    async def gateway_snapshot() -> dict:
        if sync is None:
            return data.snapshot()
        # Autoscaled pools: the control actor's totals, added once (not summed over ingress replicas).
        pools = pool_families(sync.pools_view, specs) if specs else {}
        try:  # the whole gateway's totals: every ingress replica's latest snapshot
            return {**recompute_joules_per_1k(merge(await sync.gateway_snapshots())), **pools}
        except Exception as exc:
            log.warning("metrics from other replicas unavailable (%s); this replica only", exc)
            return {**data.snapshot(), **pools}

    async def metrics_text() -> str:
        return render(await gateway_snapshot())

    dashboard = Dashboard(gateway_snapshot, data.provider, data.intensity.regions, control)
    jobs = build_jobs(data)
    routes = dashboard.routes() + (jobs_routes(jobs.service, data.gate, AdminAuth(settings.server))
                                   if jobs is not None else [])
    api = HttpApi(data.dataplane, admin, metrics_text, routes, gate=data.gate, audit=data.audit,
                  defer=deferred_response(jobs.service) if jobs is not None else None)
    return GatewayParts(data, api, GrpcApi(data.dataplane, admin, gate=data.gate, audit=data.audit), sync, jobs)
