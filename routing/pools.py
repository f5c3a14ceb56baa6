"""Where a routed request runs: one interface, three kinds of pool.

A pool executor takes a :class:`PoolJob` (model, version, variant and the request's rows) and
returns a :class:`models.work.WorkResult` with the energy the request was charged. The local pool
is the data plane's own model host (``serving/host.py``: no extra hop); ``OipPool`` runs on any Open
Inference Protocol server (Triton, KServe, MLServer, another wattgate); pools that are Ray Serve
deployments are wired in ``gateway/``, the only room that knows Ray. A pool that fails raises :class:`wattgate.errors.DependencyError`,
and the live router (``routing/live.py``) falls back to the next best pool.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from energy.attribution import RequestEnergy
from energy.coefficients import HardwareProfile
from models.work import TextWorkItem, WorkItem, WorkResult
from routing.topology import EnergyCurve, Pool
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


_OIP_DATATYPES = {
    "float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32",
    "float16": "FP16", "uint8": "UINT8", "bool": "BOOL",
}


class OipPool:
    """A remote Open Inference Protocol server, over HTTP or gRPC (``protocol``). Its energy cannot be
    metered from here, so each request is charged from the pool's energy curve (``remote_energy``),
    labelled as modelled."""

    def __init__(self, url: str, energy_for: Callable[[str, int], RequestEnergy], model_name: str | None = None,
                 timeout_s: float = 10.0, protocol: str = "http") -> None:
        if protocol not in ("http", "grpc"):
            raise ValueError(f"protocol must be http or grpc, not {protocol!r}")
        self.url = url.removeprefix("http://")
        self.energy_for = energy_for  # (variant, rows) -> RequestEnergy
        self.model_name = model_name
        self.timeout_s = timeout_s
        self.protocol = protocol
        self._client = None

    def _tritonclient(self):
        # aiohttp- or grpc.aio-based: loaded only when a remote pool of that protocol is used.
        if self.protocol == "grpc":
            import tritonclient.grpc.aio as tc
        else:
            import tritonclient.http.aio as tc
        return tc

    async def run(self, job: PoolJob) -> WorkResult:
        item = job.item
        if isinstance(item, TextWorkItem):
            raise BadRequest("text models are not served through remote OIP pools")
        tc, grpc = self._tritonclient(), self.protocol == "grpc"
        if self._client is None:
            self._client = tc.InferenceServerClient(self.url) if grpc else tc.InferenceServerClient(self.url, conn_timeout=self.timeout_s)
        inputs = []
        for name, array in item.inputs.items():
            dt = _OIP_DATATYPES.get(str(array.dtype))
            if dt is None:
                raise BadRequest(f"cannot send dtype {array.dtype} to a remote pool")
            inp = tc.InferInput(name, list(array.shape), dt)
            # gRPC always sends raw_input_contents; HTTP needs the binary tensor extension asked for.
            inp.set_data_from_numpy(np.ascontiguousarray(array), **({} if grpc else {"binary_data": True}))
            inputs.append(inp)
        outputs = [tc.InferRequestedOutput(n) if grpc else tc.InferRequestedOutput(n, binary_data=True) for n in job.output_names]
        try:
            if grpc:
                result = await self._client.infer(self.model_name or job.model, inputs, outputs=outputs, client_timeout=self.timeout_s)
            else:
                result = await self._client.infer(self.model_name or job.model, inputs, outputs=outputs)
        except Exception as exc:
            raise DependencyError(f"remote pool {self.url} ({self.protocol}) failed: {exc}") from exc
        return WorkResult(
            outputs={n: result.as_numpy(n) for n in job.output_names},
            energy=self.energy_for(job.variant, item.rows),
            batch_rows=item.rows,
            batch_requests=1,
        )


def idle_and_dynamic(curve: EnergyCurve) -> tuple[float, float]:
    """(idle W, dynamic J per inference) behind a pool's energy curve.

    A power model states both. A measured table is read as idle power shared by the traffic plus a
    dynamic floor: the floor is its lowest J per inference, the idle power what the lowest-rate
    point spends above that floor (the H200 points give 8,700/s x (16.6 - 2.8) mJ = 120 W, the idle
    power NVML measured). A constant has no idle part.
    """
    if curve.dynamic_j is not None:
        return float(curve.idle_w), float(curve.dynamic_j)
    floor_j = min(j for _, j in curve.points)
    r0, j0 = curve.points[0]
    return r0 * (j0 - floor_j), floor_j


class PoolIdleAccount:
    """A remote pool's idle power, billed once across the gateway: each of the gateway's N ingress
    replicas accrues its 1/N share by time and charges it to its next request on that pool, so the
    shares add up to the pool's idle power whatever the load, and nothing is billed N times."""

    def __init__(self, idle_w: float, share: float, clock: Callable[[], float] = time.monotonic) -> None:
        if idle_w < 0 or not 0 < share <= 1:
            raise ValueError("idle_w must be >= 0 and share in (0, 1]")
        self.idle_w = idle_w
        self.share = share
        self._clock = clock
        self._last_s = clock()
        self._lock = threading.Lock()

    def take(self) -> tuple[float, float]:
        """(idle J accrued since the last charge, the seconds it covers)."""
        with self._lock:
            now = self._clock()
            period_s, self._last_s = max(0.0, now - self._last_s), now
        return self.idle_w * self.share * period_s, period_s


def remote_energy(pool: Pool, account: PoolIdleAccount) -> Callable[[str, int], RequestEnergy]:
    """Energy of a request on a pool we cannot meter (modelled from its curve): its own dynamic energy,
    plus this replica's share of the pool's idle power since the previous request."""

    def energy(variant: str, rows: int) -> RequestEnergy:
        curve = pool.curve(variant)
        active_j = idle_and_dynamic(curve)[1] * rows
        idle_j, _ = account.take()
        return RequestEnergy(energy_j=active_j + idle_j, active_j=active_j, idle_j=idle_j,
                             method=f"pool-curve-{curve.method}", measured=False, batch_size=rows, work_share=1.0,
                             reserved_s=pool.service_ms / 1000 * rows)

    return energy


def pool_idle_w(pool: Pool) -> float:
    """The pool's idle power: the largest any of its curves implies (they describe one machine)."""
    return max(idle_and_dynamic(pool.curve(v))[0] for v in pool.variants) if pool.variants else 0.0
