"""Where a routed request runs: one interface, three kinds of pool.

A pool executor takes a :class:`PoolJob` (model, version, variant and the request's rows) and
returns a :class:`models.work.WorkResult` with the energy the request was charged. ``LocalPool``
runs on this process's own batchers, ``OipPool`` on any Open Inference Protocol server (Triton,
KServe, MLServer, another wattgate); pools that are Ray Serve deployments are wired in ``gateway/``,
the only room that knows Ray. A pool that fails raises :class:`wattgate.errors.DependencyError`,
and the live router (``routing/live.py``) falls back to the next best pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

import numpy as np

from energy.attribution import RequestEnergy
from energy.coefficients import HardwareProfile
from models.work import TextWorkItem, WorkItem, WorkResult
from routing.topology import Pool
from wattgate.errors import BadRequest, DependencyError


@dataclass(frozen=True)
class PoolInfo:
    """Where a request ran: what its carbon depends on."""

    name: str
    region: str
    hardware: str
    pue: float
    profile: HardwareProfile  # the coefficients its embodied carbon (and modelled energy) use


@dataclass(frozen=True)
class PoolJob:
    """One request for a pool: which model variant, and its rows."""

    model: str
    version: str
    variant: str
    item: WorkItem | TextWorkItem
    output_names: tuple[str, ...]


class PoolExecutor(Protocol):
    """Runs one request on one pool."""

    async def run(self, job: PoolJob) -> WorkResult: ...


class LocalPool:
    """A pool on this process's own runtimes: the request runs in-process, no extra hop."""

    def __init__(self, run_local: Callable[[PoolJob], Awaitable[WorkResult]]) -> None:
        self._run_local = run_local

    async def run(self, job: PoolJob) -> WorkResult:
        return await self._run_local(job)


_OIP_DATATYPES = {
    "float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32",
    "float16": "FP16", "uint8": "UINT8", "bool": "BOOL",
}


class OipPool:
    """A remote Open Inference Protocol server. Its energy cannot be metered from here, so each
    request is charged the pool's energy curve at its current load, labelled as modelled."""

    def __init__(self, url: str, energy_for: Callable[[str, int], RequestEnergy], model_name: str | None = None,
                 timeout_s: float = 10.0) -> None:
        self.url = url.removeprefix("http://")
        self.energy_for = energy_for  # (variant, rows) -> RequestEnergy
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._client = None

    async def run(self, job: PoolJob) -> WorkResult:
        import tritonclient.http.aio as tc  # aiohttp-based: loaded only when a remote pool is used

        item = job.item
        if isinstance(item, TextWorkItem):
            raise BadRequest("text models are not served through remote OIP pools")
        if self._client is None:
            self._client = tc.InferenceServerClient(self.url, conn_timeout=self.timeout_s)
        inputs = []
        for name, array in item.inputs.items():
            dt = _OIP_DATATYPES.get(str(array.dtype))
            if dt is None:
                raise BadRequest(f"cannot send dtype {array.dtype} to a remote pool")
            inp = tc.InferInput(name, list(array.shape), dt)
            inp.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
            inputs.append(inp)
        outputs = [tc.InferRequestedOutput(n, binary_data=True) for n in job.output_names]
        try:
            result = await self._client.infer(self.model_name or job.model, inputs, outputs=outputs)
        except Exception as exc:
            raise DependencyError(f"remote pool {self.url} failed: {exc}") from exc
        return WorkResult(
            outputs={n: result.as_numpy(n) for n in job.output_names},
            energy=self.energy_for(job.variant, item.rows),
            batch_rows=item.rows,
            batch_requests=1,
        )


def curve_energy(pool: Pool, load_rps: Callable[[], float]) -> Callable[[str, int], RequestEnergy]:
    """Energy of a request on a pool we cannot meter: the pool's curve at its current load (modelled)."""

    def energy(variant: str, rows: int) -> RequestEnergy:
        curve = pool.curve(variant)
        j = curve.at(max(load_rps(), 1e-3)) * rows
        return RequestEnergy(energy_j=j, active_j=j, idle_j=0.0, method=f"pool-curve-{curve.method}", measured=False,
                             batch_size=rows, work_share=1.0, reserved_s=pool.service_ms / 1000 * rows)

    return energy

