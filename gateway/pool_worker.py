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

from models.work import WorkResult
from routing.pools import PoolJob
from serving.assembly import build_attributor, build_host
from energy.ledger import EnergyLedger
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
        self.host = build_host(settings, self.attributor)
        self.host.load_startup()
        self.attributor.end_startup()  # loading models is start-up, never a request's
        self.node_id = ray.get_runtime_context().get_node_id()
        self._stop = threading.Event()
        self._ledger = None
        if store_name is not None:  # autoscaled: post this replica's static energy for the idle metrics
            try:  # and book it in the ledger, per pool, so `ledger summary` reports idle energy per period
                self._ledger = EnergyLedger(settings.ledger_file(), background=False)
            except WattgateError as exc:
                log.warning("pool %s: idle energy not booked in the ledger: %s", pool_name, exc)
            args = (store_name, report_s, settings.energy.idle_book_interval_s)
            self._reporter = threading.Thread(target=self._report_idle, args=args, daemon=True, name=f"idle-{pool_name}")
            self._reporter.start()

    def _report_idle(self, store_name: str, every_s: float, book_every_s: float) -> None:
        """Every ``every_s``: the meter's static (idle-power) energy and the uptime since this replica
        started, to the control actor; every ``book_every_s`` (and at the end), what it added to the ledger."""
        rid, meter = uuid.uuid4().hex[:12], self.attributor.meter
        first, t0, store = meter.read(), time.monotonic(), None
        booked, booked_at = first, time.monotonic()
        while True:
            stopping = self._stop.wait(every_s)
            now = meter.read()
            try:
                if store is None:
                    store = ray.get_actor(store_name, namespace="wattgate")
                store.push_replica_energy.remote(self.pool_name, rid, now.static_j - first.static_j,
                                                 time.monotonic() - t0, now.method)
            except Exception as exc:  # the control actor restarting must not stop serving
                log.debug("idle report failed: %s", exc)
                store = None
            if self._ledger is not None and (stopping or time.monotonic() - booked_at >= book_every_s):
                try:
                    self._ledger.record_account("idle", now.static_j - booked.static_j, now.method, now.measured,
                                                pool=self.pool_name)
                    booked, booked_at = now, time.monotonic()
                except WattgateError as exc:
                    log.warning("pool %s: idle energy not booked: %s", self.pool_name, exc)
            if stopping:
                return

    def __del__(self) -> None:
        """Serve stops the replica (scale-down): book its last idle energy before the process goes."""
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()
            reporter = getattr(self, "_reporter", None)
            if reporter is not None:
                reporter.join(timeout=2.0)

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
