"""Replicas, idle power and active energy per request of a pool, as the event simulator charges them.

Every provisioned replica-second costs ``idle_w_per_replica`` whether it serves or not; a replica
that starts costs ``startup_s`` of idle power before it serves. Each request then costs its
*active* energy: ``dynamic_j`` of a power-model curve, or, for a table of measured totals
(``(rps, J)`` per replica), the total at the replica's rate less the idle share ``idle_w / rps``,
held flat outside the table. Provisioning modes:

- ``always-on``: ``replicas.max`` all the time;
- ``load-autoscaled``: ``ceil(load / (target_utilisation x replica_capacity_rps))`` within
  ``[min, max]``, for the load the routers plan to send the pool (the autoscaler has converged on
  it; scaling lag inside a step is not modelled);
- ``policy``: carbon-aware autoscaling, :func:`routing.autoscale.decide` (the live policy's code) on
  the routers' intent for the step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from routing.autoscale import ScalingSpec, active_j
from routing.simulator.service import ServiceTime
from routing.topology import ANY_VARIANT, EnergyCurve
from wattgate.errors import BadRequest

__all__ = ["MODES", "PoolModel", "active_j", "active_j_floor", "check_mode"]

MODES = ("always-on", "load-autoscaled", "policy")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise BadRequest(f"unknown provisioning {mode!r}; use one of {list(MODES)}")
    return mode


@dataclass(frozen=True)
class PoolModel:
    """What the simulator knows of a pool beyond the policy's view of it (the topology's Pool)."""

    name: str
    replicas_min: int
    replicas_max: int
    replicas_initial: int
    replica_capacity_rps: float
    idle_w_per_replica: float
    idle_source: str
    startup_s: float
    servers_per_replica: int
    batch_delay_ms: float
    service: Mapping[str, ServiceTime]  # per variant, ANY_VARIANT for the rest

    def service_for(self, variant: str) -> ServiceTime:
        return self.service.get(variant) or self.service[ANY_VARIANT]

    @property
    def max_capacity_rps(self) -> float:
        return self.replicas_max * self.replica_capacity_rps

    def scaling_spec(self, variant: str, overhead_ms: float) -> ScalingSpec:
        """The live autoscaling policy's view of this pool (``provisioning: policy``)."""
        return ScalingSpec(
            min_replicas=self.replicas_min, max_replicas=self.replicas_max, initial_replicas=self.replicas_initial,
            replica_capacity_rps=self.replica_capacity_rps, service_ms=self.service_for(variant).mean_ms,
            idle_w_per_replica=self.idle_w_per_replica, servers_per_replica=self.servers_per_replica,
            startup_s=self.startup_s, overhead_ms=overhead_ms + self.batch_delay_ms,
        )

    def replicas_for(self, load_rps: float, mode: str, target_utilisation: float) -> int:
        if mode == "always-on":
            return self.replicas_max
        want = math.ceil(max(load_rps, 0.0) / (target_utilisation * self.replica_capacity_rps) - 1e-9)
        return int(min(self.replicas_max, max(self.replicas_min, want)))


def active_j_floor(curve: EnergyCurve, idle_w_per_replica: float) -> float:
    """The least active J per request at any rate: the oracle's bound (a fine grid over the table)."""
    if curve.dynamic_j is not None:
        return curve.dynamic_j
    lo, hi = curve.points[0][0], curve.points[-1][0]
    grid = np.unique(np.concatenate([np.geomspace(lo, hi, 512), [r for r, _ in curve.points]]))
    return min(active_j(curve, float(r), idle_w_per_replica) for r in grid)
