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
from gateway.autoscaling import PoolBoard, control_store_name, pool_metrics, render_samples, scaled_pools
from gateway.dashboard import Dashboard
from gateway.grpc_api import GrpcApi
from gateway.http import HttpApi
from gateway.pool_worker import RayPool
from gateway.replica_sync import ReplicaSync
from gateway.serve_batcher import ServeTensorBatcher
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

    def start_background(self) -> None:
        self.data.start_background()
        if self.sync is not None:
            self.sync.start()

    def close(self) -> None:
        self.data.close()


def build_gateway(settings: Settings, pool_handles: dict[str, Any] | None = None, with_sync: bool = True) -> GatewayParts:
    remote = {name: RayPool(handle, name) for name, handle in (pool_handles or {}).items()}
    data = build_data_plane(settings, ServeTensorBatcher, remote)
    host, control = data.host, data.control
    sync = None
    core = getattr(data.router, "core", None)  # a GreenRouter's RouterCore; None for one local pool
    specs = scaled_pools(core.topology, settings) if core is not None else {}
    board = None
    if core is not None and with_sync:
        shared = {name for name, ex in settings.pools.items() if ex.kind in ("ray", "oip")}
        board = PoolBoard(data.router, data.intensity, specs, shared & set(core.topology.names))
    if with_sync:
        def apply_model(name: str, action: str) -> None:
            host.load(name) if action == "load" else host.unload(name)

        sync = ReplicaSync(control_store_name(settings), control, apply_model, data.snapshot, pools=board)
    admin = AdminApi(
        host.registry, host,
        broadcast=sync.publish_model if sync else None,
        extra_routes=routing_routes(control, data.provider, data.intensity.refresh, sync.publish_routing if sync else None)
        + autoscaling_routes(specs, sync) + quality_routes(data.guard, data.exclusions),
    )

    async def gateway_snapshot() -> dict:
        if sync is None:
            return data.snapshot()
        try:  # the whole gateway's totals: every ingress replica's latest snapshot
            return recompute_joules_per_1k(merge(await sync.gateway_snapshots()))
        except Exception as exc:
            log.warning("metrics from other replicas unavailable (%s); this replica only", exc)
            return data.snapshot()

    async def metrics_text() -> str:
        # Autoscaled pools: the control actor's totals, once (not summed over ingress replicas).
        pools = render_samples(pool_metrics(sync.pools_view, specs)) if specs and sync is not None else ""
        return render(await gateway_snapshot()) + pools

    dashboard = Dashboard(gateway_snapshot, data.provider, data.intensity.regions, control)
    return GatewayParts(data, HttpApi(data.dataplane, admin, metrics_text, dashboard.routes()), GrpcApi(data.dataplane, admin), sync)
