"""Pools that are Ray Serve deployments pinned to nodes by label, and the executor that reaches them."""

from __future__ import annotations

import dataclasses

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

from gateway.serve_batcher import ServeTensorBatcher
from models.work import WorkResult
from routing.pools import PoolJob
from serving.assembly import build_attributor, build_host
from wattgate.errors import DependencyError, WattgateError
from wattgate.settings import Settings


@serve.deployment
class PoolWorker:
    """A pool's replicas on their own node: the same host, batchers and meter as the ingress."""

    def __init__(self, settings: Settings, pool_name: str) -> None:
        self.pool_name = pool_name
        # Its own models and a meter for what this pool reserves; the ingress does the accounting.
        self.attributor, _ = build_attributor(settings, settings.pools[pool_name].num_cpus)
        self.host = build_host(settings, self.attributor, ServeTensorBatcher)
        self.host.load_startup()
        self.attributor.end_startup()  # loading models is start-up, never a request's
        self.node_id = ray.get_runtime_context().get_node_id()

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
