"""Pools that are Ray Serve deployments pinned to nodes by label, and the executor that reaches them."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from gateway.serve_batcher import ServeTensorBatcher
from models.work import WorkResult
from routing.pools import PoolJob
from serving.assembly import build_attributor, build_host
from wattgate.errors import DependencyError, WattgateError
from wattgate.settings import Settings


log = logging.getLogger("wattgate.pool")


@serve.deployment
class PoolWorker:
    """A pool's replicas on their own node: the same host, batchers and meter as the ingress."""

    def __init__(self, settings: Settings, pool_name: str, store_name: str | None = None, report_s: float = 1.0) -> None:
        self.pool_name = pool_name
        # Its own models and a meter for what this pool reserves; the ingress does the accounting.
        self.attributor, _ = build_attributor(settings, settings.pools[pool_name].num_cpus)
        self.host = build_host(settings, self.attributor, ServeTensorBatcher)
        self.host.load_startup()
        self.attributor.end_startup()  # loading models is start-up, never a request's
        self.node_id = ray.get_runtime_context().get_node_id()
        self._stop = threading.Event()
        if store_name is not None:  # autoscaled: post this replica's static energy for the idle metrics
            threading.Thread(target=self._report_idle, args=(store_name, report_s), daemon=True,
                             name=f"idle-{pool_name}").start()

    def _report_idle(self, store_name: str, every_s: float) -> None:
        """Every ``every_s``: the meter's static (idle-power) energy and the uptime since this replica started."""
        rid, meter = uuid.uuid4().hex[:12], self.attributor.meter
        first, t0, store = meter.read(), time.monotonic(), None
        while not self._stop.wait(every_s):
            try:
                if store is None:
                    store = ray.get_actor(store_name, namespace="wattgate")
                now = meter.read()
                store.push_replica_energy.remote(self.pool_name, rid, now.static_j - first.static_j,
                                                 time.monotonic() - t0, now.method)
            except Exception as exc:  # the control actor restarting must not stop serving
                log.debug("idle report failed: %s", exc)
                store = None

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()

    async def infer(self, job: PoolJob) -> WorkResult:
        self.attributor.request_started()
        try:
            result = await self.host.run(job)
        finally:
            self.attributor.request_finished()
        return dataclasses.replace(result, node_id=self.node_id)


class RayPool:
    """The second hop, taken only when the chosen pool lives on another node or hardware class."""

    def __init__(self, handle: DeploymentHandle, pool_name: str) -> None:
        self._handle = handle
        self.deployment_name = f"pool-{pool_name}"

    async def run(self, job: PoolJob) -> WorkResult:
        try:
            return await self._handle.infer.remote(job)
        except WattgateError:
            raise
        except Exception as exc:  # replica died, node gone, ...
            raise DependencyError(f"pool {self.deployment_name} failed: {exc}") from exc
