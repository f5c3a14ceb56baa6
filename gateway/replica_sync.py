"""Keeps a gateway's ingress replicas in step: admin changes and /metrics go through one Ray actor.

A replica that takes an admin change (routing policy, model load/unload) applies it at once and
publishes it; the others pick it up within ``poll_s``. Each replica also publishes its metrics
snapshot, so ``/metrics`` on any replica shows the whole gateway's totals.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Callable

import ray

log = logging.getLogger("wattgate.control")


@ray.remote(num_cpus=0)
class ControlStore:
    def __init__(self) -> None:
        self.version = 0
        self.routing: dict | None = None
        self.models: dict[str, tuple[int, str]] = {}  # name -> (version, "load" | "unload")
        self.snapshots: dict[str, tuple[float, dict]] = {}

    def publish_routing(self, state: dict) -> int:
        self.version += 1
        self.routing = state
        return self.version

    def publish_model(self, name: str, action: str) -> int:
        self.version += 1
        self.models[name] = (self.version, action)
        return self.version

    def state(self) -> tuple[int, dict | None, dict]:
        return self.version, self.routing, self.models

    def push_metrics(self, replica: str, snapshot: dict) -> None:
        self.snapshots[replica] = (time.time(), snapshot)

    def metrics(self, max_age_s: float = 30.0) -> dict[str, dict]:
        now = time.time()
        self.snapshots = {r: v for r, v in self.snapshots.items() if now - v[0] <= max_age_s}
        return {r: snap for r, (_, snap) in self.snapshots.items()}


class ReplicaSync:
    def __init__(self, name: str, control, apply_model: Callable[[str, str], None], snapshot: Callable[[], dict], poll_s: float = 1.0) -> None:
        self.replica = uuid.uuid4().hex[:12]
        self.control = control  # routing.control.RoutingControl or None
        self.apply_model = apply_model
        self.snapshot = snapshot
        self.poll_s = poll_s
        self._seen_models: dict[str, int] = {}
        self._version = 0
        self._store = ControlStore.options(name=name, get_if_exists=True, lifetime="detached", namespace="wattgate").remote()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.pull()
                await self._store.push_metrics.remote(self.replica, self.snapshot())
            except Exception as exc:  # the store restarting must not stop serving
                log.warning("control sync failed: %s", exc)
            await asyncio.sleep(self.poll_s)

    async def pull(self) -> None:
        version, routing, models = await self._store.state.remote()
        if version == self._version:
            return
        self._version = version
        if routing is not None and self.control is not None and self.control.adopt(routing):
            log.info("routing policy now %s (from another replica)", self.control.show()["policy"])
        for name, (v, action) in models.items():
            if self._seen_models.get(name, 0) < v:
                self._seen_models[name] = v
                await asyncio.get_running_loop().run_in_executor(None, self.apply_model, name, action)

    async def publish_routing(self) -> None:
        await self._store.publish_routing.remote(self.control.to_dict())

    async def publish_model(self, name: str, action: str) -> None:
        v = await self._store.publish_model.remote(name, action)
        self._seen_models[name] = v  # applied here already

    async def gateway_snapshots(self) -> list[dict]:
        """Every live replica's snapshot, this one's fresh."""
        others = await self._store.metrics.remote()
        others[self.replica] = self.snapshot()
        return list(others.values())
