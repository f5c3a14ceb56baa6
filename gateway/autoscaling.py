"""Pools that scale with load and carbon: wattgate's policy on Ray Serve's own autoscaler.

Three parties meet on the gateway's control actor (``gateway/replica_sync.py ControlStore``):

- **ingress replicas** (:class:`PoolBoard`) post, once a second, each autoscaled pool's *intent* (the
  load the router's plan sends it with the pool fully provisioned, ``RouterCore.intent``), the
  tightest latency budget of that traffic, the intent under the intensity forecast ``startup_s``
  ahead, and their in-flight counts; they read back the replicas running per pool, so the router
  never sends a request to a pool with no warm replica, and the other replicas' in-flight counts;
- **the autoscaling policy** (:class:`CarbonAwarePolicy`), which Ray Serve's controller calls on
  every tick through ``AutoscalingConfig(policy=AutoscalingPolicy(policy_function=...))``: it reads
  the intent and returns :func:`routing.autoscale.decide`'s replica count; Serve applies
  ``min/max_replicas`` and the up/downscale delays around it. It posts its decision and reason;
- **pool replicas** (``gateway/pool_worker.py``) post their meter's static energy and uptime, so
  idle energy is metered per provisioned replica with the same meters as the per-request figures.

The policy runs inside Serve's controller and must never block it: it exchanges with the actor by
sending one request per tick and reading the previous one's answer only when it is ready.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from datetime import timedelta
from typing import Any, Mapping

from ray.serve.config import AutoscalingConfig, AutoscalingPolicy

from routing.autoscale import ScalingSignal, ScalingSpec, decide
from routing.intensity.snapshot import IntensityView
from routing.topology import Pool, curve_from_spec
from wattgate.errors import BadRequest
from wattgate.metrics import MetricsRegistry

log = logging.getLogger("wattgate.autoscaling")

NAMESPACE = "wattgate"
FORECAST_TTL_S = 60.0


def autoscaling_config(pool: Pool, spec: ScalingSpec, store_name: str, variant: str | None = None) -> AutoscalingConfig:
    """Serve's autoscaling config for a pool deployment, with wattgate's policy."""
    curve = pool.curve_for(variant)
    return AutoscalingConfig(
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        initial_replicas=spec.initial,
        upscale_delay_s=spec.upscale_delay_s,
        downscale_delay_s=spec.downscale_delay_s,
        downscale_to_zero_delay_s=spec.downscale_delay_s,
        metrics_interval_s=1.0,
        look_back_period_s=2.0,
        policy=AutoscalingPolicy(
            policy_function=CarbonAwarePolicy,
            policy_kwargs={"pool": pool.name, "store": store_name, "spec": spec.to_dict(), "curve": curve.to_dict()},
        ),
    )


class CarbonAwarePolicy:
    """A Ray Serve custom autoscaling policy (class form: one instance per deployment, kept across ticks)."""

    def __init__(self, pool: str, store: str, spec: dict, curve: dict | None = None) -> None:
        self.pool = pool
        self.store_name = store
        self.spec = ScalingSpec(**spec)
        self.curve = curve_from_spec(curve, where=f"pool {pool}") if curve else None
        self._store = None
        self._pending = None
        self._input: dict | None = None
        self._report: dict | None = None
        self._logged: tuple | None = None

    def __call__(self, ctx) -> tuple[int, dict]:
        inp = self._exchange(self._report)
        running, target = int(ctx.current_num_replicas), int(ctx.target_num_replicas)
        if inp is None or not inp.get("ingress_replicas"):
            n, reason, detail = target, "no signal", "no ingress replica has posted an intent yet; holding"
        else:
            spec = self._with_overrides(inp.get("overrides") or {})
            d = decide(spec, self.curve, ScalingSignal(
                float(inp["intent_rps"]), float(inp["total_rps"]), float(inp["budget_ms"]),
                inp.get("forecast_rps"), running, target,
            ))
            n, reason, detail = d.replicas, d.reason, d.detail
        self._report = {"replicas": running, "target": target, "decision": n, "reason": reason, "detail": detail,
                        "at": time.time(), "min_replicas": self.spec.min_replicas, "max_replicas": self.spec.max_replicas}
        if (n, reason) != self._logged:
            self._logged = (n, reason)
            log.info("pool %s: %d replica(s) (running %d): %s: %s", self.pool, n, running, reason, detail)
        return n, {}

    def _with_overrides(self, overrides: Mapping[str, Any]) -> ScalingSpec:
        keys = {k: v for k, v in overrides.items() if k in ("min_replicas", "max_replicas", "headroom")}
        if not keys:
            return self.spec
        try:
            return dataclasses.replace(self.spec, **keys)
        except (BadRequest, TypeError) as exc:  # validated by the admin API; never trust it blindly here
            log.warning("pool %s: ignoring overrides %s: %s", self.pool, keys, exc)
            return self.spec

    def _exchange(self, report: dict | None) -> dict | None:
        """Send this tick's report; return the latest answer that has arrived (never waits)."""
        import ray

        if self._store is None:
            try:
                self._store = ray.get_actor(self.store_name, namespace=NAMESPACE)
            except Exception:  # the gateway has not created it yet
                return self._input
        if self._pending is not None:
            ready, _ = ray.wait([self._pending], timeout=0)
            if not ready:
                return self._input
            try:
                self._input = ray.get(ready[0])
            except Exception as exc:
                log.warning("pool %s: control actor unavailable (%s); holding the last signal", self.pool, exc)
                self._store = None
            self._pending = None
        if self._store is not None:
            try:
                self._pending = self._store.scaling_input.remote(self.pool, report)
            except Exception:
                self._store = None
        return self._input


class _ForecastView:
    """An intensity source whose values are each region's forecast ``horizon_s`` ahead (current where none)."""

    def __init__(self, values: Mapping[str, float | None], fallback) -> None:
        self.values = values
        self.fallback = fallback
        self.generation = 0

    def get(self, region: str) -> IntensityView:
        g = self.values.get(region)
        if g is None:
            return self.fallback.get(region)
        return IntensityView(g, "forecast", "forecast", False)


class PoolBoard:
    """An ingress replica's side of the board: what it posts and how it applies what it reads."""

    def __init__(self, router, intensity, specs: Mapping[str, ScalingSpec], shared: set[str], metrics=None) -> None:
        self.router = router  # routing.live.GreenRouter
        self.intensity = intensity  # routing.intensity.snapshot.IntensitySnapshot
        self.specs = dict(specs)
        self.shared = set(shared) | set(specs)  # pools whose replicas every ingress replica uses
        self.horizon_s = max((s.startup_s for s in specs.values()), default=0.0) + 30.0
        self._forecast: dict[str, float | None] = {}
        self._forecast_at = -math.inf
        self._forecast_gen = -1
        self.forecast_errors = 0
        self._errors = metrics.counter(
            "wattgate_forecast_errors_total", "Intensity forecasts unavailable for pre-warming, per region", ("region",)
        ) if metrics is not None else None
        self.view: dict = {}
        for name, spec in self.specs.items():  # until the policy reports, assume what Serve starts
            router.core.set_warm(name, spec.initial, spec.max_replicas)

    def post(self) -> dict:
        core, now = self.router.core, self.router.clock()
        intent = core.intent(now)
        ahead = core.intent_under(_ForecastView(self._forecast, self.intensity), now) if any(
            v is not None for v in self._forecast.values()) else {}
        out = {}
        for name in self.shared:
            rps, budget = intent.get(name, (0.0, math.inf))
            out[name] = {"intent_rps": rps, "budget_ms": budget, "forecast_rps": ahead.get(name),
                         "in_flight": core.load[name].in_flight}
        return out

    def apply(self, view: dict) -> None:
        self.view = view
        pools = view.get("pools", {})
        core = self.router.core
        for name, spec in self.specs.items():
            seen = pools.get(name, {})
            running = seen.get("replicas")
            if running is not None:
                # Replicas the policy has decided to remove take no new request: Serve may stop them
                # before this view (a second or two old) says so, and a request sent there would wait
                # for a cold start. A pool about to scale to zero is cold from the decision on.
                decided = seen.get("decision")
                warm = min(int(running), int(decided)) if decided is not None else int(running)
                core.set_warm(name, warm, spec.max_replicas)
        for name in self.shared:
            if name in pools:
                core.set_others_in_flight(name, pools[name].get("others_in_flight", 0))

    async def refresh_forecast(self) -> None:
        """Each region's forecast ``horizon_s`` ahead, at most once a minute and whenever the current
        readings change (a new reading, or a replay clock moved); None where there is none."""
        generation = self.intensity.generation
        if time.monotonic() - self._forecast_at < FORECAST_TTL_S and generation == self._forecast_gen:
            return
        self._forecast_at, self._forecast_gen = time.monotonic(), generation
        self._forecast = {}  # never plan on a forecast made for another moment
        provider = self.intensity.provider
        loop = asyncio.get_running_loop()
        values: dict[str, float | None] = {}
        for region in self.intensity.regions:
            try:
                now = (await loop.run_in_executor(None, provider.current, region)).timestamp
                readings = await loop.run_in_executor(None, provider.forecast, region, self.horizon_s / 3600.0 + 0.5)
                at = now + timedelta(seconds=self.horizon_s)
                due = [r for r in readings if r.timestamp <= at]
                values[region] = due[-1].intensity_g_per_kwh if due else None
            except Exception as exc:  # no forecast (NotSupported) or the provider is down: no pre-warming
                self.forecast_errors += 1
                if self._errors is not None:
                    self._errors.inc(region=region)
                values[region] = None
                log.info("no forecast for %s (no pre-warming there): %s", region, exc)
        self._forecast = values


def control_store_name(settings) -> str:
    """The gateway's control actor (one per settings fingerprint): ingress, pools and policy meet there."""
    return f"wattgate-control-{settings.fingerprint()}"


def scaled_pools(topology, settings) -> dict[str, ScalingSpec]:
    """The topology's pools that autoscale: a Ray pool (``pools.NAME.kind: ray``) with an ``autoscaling`` block."""
    out = {}
    for pool in topology.pools:
        ex = settings.pools.get(pool.name)
        if pool.autoscaling is not None and ex is not None and ex.kind == "ray":
            out[pool.name] = ScalingSpec.from_pool(pool)
    return out


def pool_families(view: dict, specs: Mapping[str, ScalingSpec]) -> dict:
    """The autoscaled pools' metrics from the board's view, as metrics-snapshot families to add to a
    merged snapshot: they are the control actor's totals, never summed over ingress replicas."""
    reg = MetricsRegistry()
    replicas = reg.gauge("wattgate_pool_replicas", "Replicas running per autoscaled pool (Serve's count)", ("pool",))
    target = reg.gauge("wattgate_pool_target_replicas", "Replicas the carbon-aware policy asks for", ("pool",))
    idle = reg.counter("wattgate_idle_energy_joules_total",
                       "Static (idle-power) energy of every provisioned pool replica, from the replicas' own meters",
                       ("pool", "method"))
    seconds = reg.counter("wattgate_provisioned_replica_seconds_total", "Replica-seconds provisioned per pool", ("pool",))
    decisions = reg.counter("wattgate_scaling_decisions_total", "Scaling decisions by pool and reason", ("pool", "reason"))
    pools = view.get("pools", {})
    for name in sorted(specs):
        p = pools.get(name, {})
        replicas.set(float(p.get("replicas", specs[name].initial)), pool=name)
        target.set(float(p.get("decision", specs[name].initial)), pool=name)
        idle.inc(float(p.get("idle_energy_j", 0.0)), pool=name, method=p.get("energy_method") or "none")
        seconds.inc(float(p.get("replica_seconds", 0.0)), pool=name)
    for pool, reason, n in view.get("decision_counts", []):
        decisions.inc(float(n), pool=pool, reason=reason)
    return reg.snapshot()


def check_overrides(spec: ScalingSpec, doc: Mapping[str, Any]) -> dict:
    """Validate a live change (min/max within the deployed bounds, headroom); BadRequest otherwise."""
    allowed = {"min_replicas", "max_replicas", "headroom"}
    unknown = set(doc) - allowed
    if unknown:
        raise BadRequest(f"unknown autoscaling setting(s) {sorted(unknown)}; live changes: {sorted(allowed)} "
                         "(delays and start-up time take a redeploy)")
    out: dict[str, Any] = {}
    for key in ("min_replicas", "max_replicas"):
        if key in doc:
            v = doc[key]
            if isinstance(v, bool) or not isinstance(v, int) or not spec.min_replicas <= v <= spec.max_replicas:
                raise BadRequest(f"{key} must be an integer within the deployed bounds "
                                 f"[{spec.min_replicas}, {spec.max_replicas}], got {v!r}")
            out[key] = v
    if "headroom" in doc:
        v = doc["headroom"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 4:
            raise BadRequest(f"headroom must be a number in [0, 4], got {v!r}")
        out["headroom"] = float(v)
    dataclasses.replace(spec, **out)  # min <= max, raises BadRequest
    return out

