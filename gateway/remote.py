"""Pools that live outside the ingress process: Ray Serve deployments pinned by node label, and any
Open Inference Protocol server (Triton, KServe, MLServer, another wattgate) reached with tritonclient.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from ray import serve

from gateway.batcher import TextWorkItem, WorkResult
from wattgate.errors import BadRequest, DependencyError, WattgateError

log = logging.getLogger("wattgate.remote")


@serve.deployment
class PoolWorker:
    """A pool's replicas on their own node: the same host, batchers and meter as the ingress."""

    def __init__(self, settings, pool_name: str) -> None:
        import ray

        from gateway.wiring import build_pool_worker

        self.pool_name = pool_name
        self.host, self.attributor = build_pool_worker(settings)
        self.node_id = ray.get_runtime_context().get_node_id()

    async def infer(self, model: str, version: str, variant: str, item) -> WorkResult:
        loaded = self.host.resolve(model, version)
        batcher = loaded.batchers.get(variant)
        if batcher is None:
            raise BadRequest(f"pool {self.pool_name} has no variant {variant!r} of {model!r}")
        result = await batcher.infer(item)
        result.node_id = self.node_id
        return result

    def node(self) -> str:
        return self.node_id


class HandleExecutor:
    """The second hop, taken only when the chosen pool lives on another node or hardware class."""

    def __init__(self, handle: Any, pool_name: str) -> None:
        self._handle = handle
        self.deployment_name = f"pool-{pool_name}"

    async def run(self, loaded, variant, item) -> WorkResult:
        card = loaded.card
        try:
            return await self._handle.infer.remote(card.name, card.version, variant, item)
        except WattgateError:
            raise
        except Exception as exc:  # replica died, node gone, ...
            raise DependencyError(f"pool {self.deployment_name} failed: {exc}") from exc


class OipExecutor:
    """A remote Open Inference Protocol server. Its energy cannot be metered from here, so each
    request is charged the pool's energy curve at its current load, labelled as modelled."""

    def __init__(self, url: str, curve_for: Any, model_name: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url.removeprefix("http://")
        self.curve_for = curve_for  # (variant, rows) -> RequestEnergy
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._client = None

    async def run(self, loaded, variant, item) -> WorkResult:
        import tritonclient.http.aio as tc

        if isinstance(item, TextWorkItem):
            raise BadRequest("text models are not served through remote OIP pools")
        if self._client is None:
            self._client = tc.InferenceServerClient(self.url, conn_timeout=self.timeout_s)
        inputs = []
        for name, array in item.inputs.items():
            dt = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "float16": "FP16", "uint8": "UINT8", "bool": "BOOL"}.get(str(array.dtype))
            if dt is None:
                raise BadRequest(f"cannot send dtype {array.dtype} to a remote pool")
            inp = tc.InferInput(name, list(array.shape), dt)
            inp.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
            inputs.append(inp)
        names = [o.name for o in loaded.card.outputs]
        outputs = [tc.InferRequestedOutput(n, binary_data=True) for n in names]
        try:
            result = await self._client.infer(self.model_name or loaded.card.name, inputs, outputs=outputs)
        except Exception as exc:
            raise DependencyError(f"remote pool {self.url} failed: {exc}") from exc
        return WorkResult(
            outputs={n: result.as_numpy(n) for n in names},
            energy=self.curve_for(variant, item.rows),
            batch_rows=item.rows,
            batch_requests=1,
        )
