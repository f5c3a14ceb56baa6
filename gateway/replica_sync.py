"""Keeps a gateway's ingress replicas in step: admin changes and /metrics go through one Ray actor.

A replica that takes an admin change (routing policy, model load/unload) applies it at once and
publishes it; the others pick it up within ``poll_s``. Each replica also publishes its metrics
snapshot, so ``/metrics`` on any replica shows the whole gateway's totals.

Variants the live quality guard excluded, and operators' re-enablings, are shared the same way: each
replica posts its changes and adopts the board's view (last writer wins, ``routing/exclusions.py``),
so every replica routes around a variant within ``poll_s`` of any one deciding, and a new replica
starts from the board.

The same actor is the board of the autoscaled pools (``gateway/autoscaling.py``): ingress replicas
post each pool's intent and in-flight count; the autoscaling policy (in Serve's controller) reads
the intent and posts its decision and the replicas running; pool replicas post what their meters
say of their static power. Everyone reads back one view.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import deque
from typing import Callable, Protocol

import ray

from routing.exclusions import newer

log = logging.getLogger("wattgate.control")

# Posts older than this are ignored: an ingress replica or a pool replica that stopped posting is gone.
FRESH_S = 5.0
RETIRE_S = 15.0
EXCLUSION_HISTORY = 200


class ExclusionSync(Protocol):
    """The serving side of the exclusion sync (``serving/quality_guard.py``): plain methods, no Ray."""

    def unposted_exclusions(self) -> list[dict]: ...

    def adopt_exclusions(self, view: dict) -> None: ...


class ControlBoard:
    """The control actor's state and logic (a plain class: unit-tested without Ray)."""

    def __init__(self) -> None:
        self.version = 0
        self.routing: dict | None = None
        self.models: dict[str, tuple[int, str]] = {}  # name -> (version, "load" | "unload")
        self.snapshots: dict[str, tuple[float, dict]] = {}
        # The autoscaled pools' board.
        self.intents: dict[str, tuple[float, dict]] = {}  # ingress replica -> (t, {pool: {...}})
        self.scaling: dict[str, dict] = {}  # pool -> the policy's last report
        self.decisions: deque = deque(maxlen=200)
        self.replica_energy: dict[str, dict[str, tuple[float, float, float, str]]] = {}  # pool -> id -> (t, J, s, method)
        self.retired: dict[str, list[float]] = {}  # pool -> [static J, replica-seconds] of replicas gone
        self.overrides: dict[str, dict] = {}  # pool -> live min/max/headroom from the admin API
        self.counts: dict[tuple[str, str], int] = {}  # (pool, reason) -> decisions
        # -- exclusion sync: the standing event per (model, variant) and the merged audit trail
        self.exclusions: dict[tuple[str, str], dict] = {}
        self.exclusion_history: deque = deque(maxlen=EXCLUSION_HISTORY)

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

    # -- variants excluded by the quality guard -------------------------------------------------------
    def sync_exclusions(self, events: list[dict]) -> dict:
        """A replica posts its exclusion/re-enable events; gets every variant's standing event and the history."""
        seen = {e.get("id") for e in self.exclusion_history}
        for event in sorted(events, key=lambda e: e["at_s"]):
            key = (event["model"], event["variant"])
            if event.get("id") not in seen:
                self.exclusion_history.append(event)
                seen.add(event.get("id"))
            if newer(event, self.exclusions.get(key)):
                self.exclusions[key] = event
        return {"latest": list(self.exclusions.values()),
                "history": sorted(self.exclusion_history, key=lambda e: e["at_s"])}

    # -- the autoscaled pools' board ----------------------------------------------------------------
    def push_pools(self, replica: str, pools: dict) -> dict:
        """An ingress replica posts ``{pool: {intent_rps, forecast_rps, budget_ms, in_flight}}``; gets the view."""
        now = time.time()
        self.intents[replica] = (now, pools)
        return self.pools_view(replica)

    def _fresh_intents(self) -> dict[str, dict]:
        now = time.time()
        self.intents = {r: v for r, v in self.intents.items() if now - v[0] <= FRESH_S}
        return {r: pools for r, (_, pools) in self.intents.items()}

    def scaling_input(self, pool: str, report: dict | None) -> dict:
        """The policy posts its last decision (or None) and reads the pool's demand and overrides."""
        if report is not None:
            prev = self.scaling.get(pool)
            self.scaling[pool] = report
            key = (pool, report.get("reason", ""))
            if prev is None or (prev.get("decision"), prev.get("reason")) != (report.get("decision"), report.get("reason")):
                self.decisions.append({"pool": pool, **report})
                self.counts[key] = self.counts.get(key, 0) + 1
        posts = list(self._fresh_intents().values())
        mine = [p[pool] for p in posts if pool in p]
        forecasts = [m["forecast_rps"] for m in mine if m.get("forecast_rps") is not None]
        # Each ingress replica's intent already stands for the whole gateway (its rates x N): average them.
        return {
            "ingress_replicas": len(posts),
            "intent_rps": sum(m.get("intent_rps", 0.0) for m in mine) / len(mine) if mine else 0.0,
            "total_rps": sum(sum(v.get("intent_rps", 0.0) for v in p.values()) for p in posts) / len(posts) if posts else 0.0,
            "forecast_rps": sum(forecasts) / len(forecasts) if forecasts else None,
            "budget_ms": min((m.get("budget_ms", math.inf) for m in mine), default=math.inf),
            "overrides": self.overrides.get(pool, {}),
        }

    def push_replica_energy(self, pool: str, replica: str, static_j: float, uptime_s: float, method: str) -> None:
        """A pool replica posts its meter's static (idle-power) energy and uptime since it started."""
        now = time.time()
        table = self.replica_energy.setdefault(pool, {})
        table[replica] = (now, float(static_j), float(uptime_s), method)
        for rid, (t, j, up, _) in list(table.items()):
            if now - t > RETIRE_S:  # that replica stopped: keep what it metered
                acc = self.retired.setdefault(pool, [0.0, 0.0])
                acc[0] += j
                acc[1] += up
                del table[rid]

    def set_overrides(self, pool: str, overrides: dict) -> dict:
        self.overrides[pool] = {**self.overrides.get(pool, {}), **overrides}
        return self.overrides[pool]

    def pools_view(self, replica: str | None = None) -> dict:
        """Per pool: running replicas and the last decision, idle energy metered, and the others' in-flight."""
        posts = self._fresh_intents()
        out: dict = {}
        names = set(self.scaling) | set(self.replica_energy) | {p for v in posts.values() for p in v}
        for pool in sorted(names):
            live = self.replica_energy.get(pool, {})
            retired = self.retired.get(pool, [0.0, 0.0])
            out[pool] = {
                **self.scaling.get(pool, {}),
                "idle_energy_j": retired[0] + sum(v[1] for v in live.values()),
                "replica_seconds": retired[1] + sum(v[2] for v in live.values()),
                "energy_method": next((v[3] for v in live.values()), None),
                "others_in_flight": sum(int(v.get(pool, {}).get("in_flight", 0)) for r, v in posts.items() if r != replica),
                "overrides": self.overrides.get(pool, {}),
            }
        return {"pools": out, "decisions": list(self.decisions)[-50:],
                "decision_counts": [[p, r, n] for (p, r), n in sorted(self.counts.items())]}


ControlStore = ray.remote(num_cpus=0)(ControlBoard)


class ReplicaSync:
    def __init__(self, name: str, control, apply_model: Callable[[str, str], None], snapshot: Callable[[], dict],
                 poll_s: float = 1.0, pools=None, exclusions: ExclusionSync | None = None) -> None:
        self.replica = uuid.uuid4().hex[:12]
        self.control = control  # routing.control.RoutingControl or None
        self.apply_model = apply_model
        self.snapshot = snapshot
        self.poll_s = poll_s
        self._seen_models: dict[str, int] = {}
        self._version = 0
        self._store = ControlStore.options(name=name, get_if_exists=True, lifetime="detached", namespace="wattgate").remote()
        self._task: asyncio.Task | None = None
        self.pools = pools  # gateway.autoscaling.PoolBoardClient, when some pool autoscales
        self.pools_view: dict = {}
        self.exclusions = exclusions  # the quality guard, when it is on

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.pull()
                if self.exclusions is not None:  # before the snapshot: its excluded gauges then agree
                    view = await self._store.sync_exclusions.remote(self.exclusions.unposted_exclusions())
                    self.exclusions.adopt_exclusions(view)
                await self._store.push_metrics.remote(self.replica, self.snapshot())
                if self.pools is not None:
                    await self.pools.refresh_forecast()
                    self.pools_view = await self._store.push_pools.remote(self.replica, self.pools.post())
                    self.pools.apply(self.pools_view)
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

    async def set_overrides(self, pool: str, overrides: dict) -> dict:
        return await self._store.set_overrides.remote(pool, overrides)

    async def gateway_snapshots(self) -> list[dict]:
        """Every live replica's snapshot, this one's fresh."""
        others = await self._store.metrics.remote()
        others[self.replica] = self.snapshot()
        return list(others.values())
