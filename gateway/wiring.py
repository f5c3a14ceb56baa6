"""Builds an ingress replica: the data plane (serving/assembly.py) on Ray Serve's batch queue, pools
that are Serve deployments, the admin API, the HTTP routes, the gRPC service and the sync between
ingress replicas."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from energy.metrics import recompute_joules_per_1k
from gateway.admin import AdminApi
from gateway.admin_routing import routing_routes
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
    if with_sync:
        def apply_model(name: str, action: str) -> None:
            host.load(name) if action == "load" else host.unload(name)

        sync = ReplicaSync(f"wattgate-control-{settings.fingerprint()}", control, apply_model, data.snapshot)
    admin = AdminApi(
        host.registry, host,
        broadcast=sync.publish_model if sync else None,
        extra_routes=routing_routes(control, data.provider, data.intensity.refresh, sync.publish_routing if sync else None),
    )

    async def metrics_text() -> str:
        if sync is None:
            return render(data.snapshot())
        try:  # the whole gateway's totals: every ingress replica's latest snapshot
            return render(recompute_joules_per_1k(merge(await sync.gateway_snapshots())))
        except Exception as exc:
            log.warning("metrics from other replicas unavailable (%s); this replica only", exc)
            return render(data.snapshot())

    return GatewayParts(data, HttpApi(data.dataplane, admin, metrics_text), GrpcApi(data.dataplane, admin), sync)
