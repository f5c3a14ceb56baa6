"""The carbon-aware autoscaling policy (routing/autoscale.py) and the router's cold-start path."""

from __future__ import annotations

import math

import pytest

from routing.autoscale import ScalingSignal, ScalingSpec, decide, size_for
from routing.candidates import RouteRequest
from routing.control import RoutingControl
from routing.intensity.snapshot import IntensityView
from routing.split import RouterCore
from routing.topology import EnergyCurve, Topology
from wattgate.errors import BadRequest

# Measured on an H200 (loadtests/gpu_bench.py): total J per inference at arrivals per second per GPU.
H200 = EnergyCurve.from_table([(8700, 0.0166), (52000, 0.0043), (140000, 0.0028)], source="NVML on H200")
H200_IDLE_W = 120.0
BEST_BATCH_J = 0.0026


def gpu_pool(min_replicas: int = 0) -> ScalingSpec:
    return ScalingSpec(min_replicas=min_replicas, max_replicas=8, replica_capacity_rps=140_000, service_ms=5.0,
                       idle_w_per_replica=H200_IDLE_W, servers_per_replica=700, headroom=0.0)


def j_per_inference(spec: ScalingSpec, curve: EnergyCurve, load: float, n: int) -> float:
    from routing.autoscale import active_j
    return (n * spec.idle_w_per_replica + load * active_j(curve, load / n, spec.idle_w_per_replica)) / load


@pytest.mark.parametrize("share", [0.1, 0.15, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0])
def test_consolidation_keeps_gpu_joules_near_the_best_batch_from_10_to_100_percent(share):
    spec = gpu_pool()
    load = share * spec.max_replicas * spec.replica_capacity_rps * 0.999
    d = decide(spec, H200, ScalingSignal(load, load, budget_ms=50.0))
    j = j_per_inference(spec, H200, load, d.replicas)
    assert j <= 1.5 * BEST_BATCH_J, (share, d, j)
    # Always on, the same load costs far more where it is light.
    always = j_per_inference(spec, H200, load, spec.max_replicas)
    assert j <= always


def test_always_on_gpu_at_light_load_is_what_the_issue_measured():
    spec = gpu_pool()
    # 8.7k arrivals/s per GPU on all 8: the measured 16.6 mJ, 6.4x the best batch.
    assert j_per_inference(spec, H200, 8 * 8700, 8) == pytest.approx(0.0166, rel=1e-6)


def test_dirty_pool_with_no_intent_shrinks_to_its_minimum_and_says_carbon():
    spec = gpu_pool(min_replicas=0)
    d = decide(spec, H200, ScalingSignal(0.0, 5000.0, warm_replicas=3, current_replicas=3))
    assert (d.replicas, d.reason) == (0, "carbon")
    d = decide(gpu_pool(min_replicas=1), H200, ScalingSignal(0.0, 0.0))
    assert (d.replicas, d.reason) == (1, "idle")


def test_forecast_prewarms_a_pool_about_to_be_cleanest():
    spec = ScalingSpec(min_replicas=0, max_replicas=4, replica_capacity_rps=500, service_ms=8, idle_w_per_replica=3.0,
                       servers_per_replica=4)
    d = decide(spec, None, ScalingSignal(0.0, 1200.0, budget_ms=40.0, forecast_rps=1200.0))
    assert d.reason == "forecast" and d.replicas >= 3


def test_cold_pool_with_intent_starts_and_sizes_for_the_slo():
    spec = ScalingSpec(min_replicas=0, max_replicas=8, replica_capacity_rps=500, service_ms=8, idle_w_per_replica=3.0,
                       servers_per_replica=4, headroom=0.0)
    d = decide(spec, None, ScalingSignal(800.0, 800.0, budget_ms=40.0, warm_replicas=0))
    assert d.reason == "cold start" and d.replicas == 2
    # A tighter budget needs more replicas for the same load; an impossible one gets them all.
    assert size_for(spec, None, 800.0, 12.0) > size_for(spec, None, 800.0, 40.0)
    assert size_for(spec, None, 800.0, 1.0) == spec.max_replicas


def test_consolidation_is_reported_when_fewer_replicas_than_a_load_only_target_suffice():
    spec = ScalingSpec(min_replicas=0, max_replicas=8, replica_capacity_rps=500, service_ms=8, idle_w_per_replica=3.0,
                       servers_per_replica=4, headroom=0.0)
    d = decide(spec, None, ScalingSignal(1300.0, 1300.0, budget_ms=40.0, warm_replicas=4))
    assert d.replicas == 3 and d.reason == "consolidate"  # a 0.7 target would run 4


@pytest.mark.parametrize("bad", [
    {"min_replicas": 3, "max_replicas": 2}, {"max_replicas": 0}, {"replica_capacity_rps": 0},
    {"service_ms": math.nan}, {"idle_w_per_replica": -1}, {"initial_replicas": 9}, {"servers_per_replica": 0},
])
def test_invalid_settings_are_refused_with_a_clear_error(bad):
    base = dict(min_replicas=0, max_replicas=4, replica_capacity_rps=500, service_ms=8, idle_w_per_replica=3.0)
    with pytest.raises(BadRequest):
        ScalingSpec(**{**base, **bad})


class _Static:
    generation = 1

    def __init__(self, values):
        self.values = values

    def get(self, region):
        return IntensityView(self.values[region], "static", "test", False)


def _two_pools() -> Topology:
    return Topology.from_dict({
        "client_regions": ["FR"],
        "pools": [
            {"name": "fr", "region": "FR", "hardware": "x86", "capacity_rps": 400, "service_ms": 5, "rtt_ms": {"FR": 2},
             "energy": {"*": 0.01}},
            {"name": "de", "region": "DE", "hardware": "x86", "capacity_rps": 400, "service_ms": 5, "rtt_ms": {"FR": 9},
             "energy": {"*": 0.01}},
        ],
    })


def test_the_router_never_sends_to_a_cold_pool_and_says_who_served_instead():
    core = RouterCore(_two_pools(), RoutingControl("lowest-carbon"), _Static({"FR": 50.0, "DE": 300.0}), 50.0)
    req = RouteRequest("m", "v", "FR", 50.0)
    core.set_warm("fr", 0, 2)
    picks = [core.pick(req, i * 0.01) for i in range(50)]
    assert {p.pool for p in picks} == {"de"}
    assert all("fr cold (no warm replica)" in p.reason for p in picks)
    # The intent still names the clean pool: that is what the autoscaler grows.
    intent = core.intent(1.0)
    assert intent["fr"][0] > 0 and intent["de"][0] == 0
    core.set_warm("fr", 1, 2)
    assert core.pick(req, 1.0).pool == "fr"


def test_intent_under_a_forecast_moves_to_the_pool_that_will_be_clean():
    core = RouterCore(_two_pools(), RoutingControl("lowest-carbon"), _Static({"FR": 50.0, "DE": 300.0}), 50.0)
    req = RouteRequest("m", "v", "FR", 50.0)
    for i in range(100):
        core.pick(req, i * 0.01)
    ahead = core.intent_under(_Static({"FR": 400.0, "DE": 20.0}), 1.0)
    assert ahead["de"] > 0 and ahead["fr"] == 0


def test_shared_in_flight_lets_one_replica_use_the_room_others_leave():
    core = RouterCore(_two_pools(), RoutingControl("lowest-carbon"), _Static({"FR": 50.0, "DE": 300.0}), 50.0,
                      ingress_replicas=4)
    alone = core.max_in_flight["fr"]
    core.set_others_in_flight("fr", 0)
    assert core.max_in_flight["fr"] == 4 * alone
    core.set_others_in_flight("fr", 4 * alone)
    assert core.max_in_flight["fr"] == alone  # never below its own share


@pytest.mark.parametrize("block, message", [
    ({"min_replicas": 3, "max_replicas": 2}, "min_replicas"),
    ({"max_replicas": 0}, "max_replicas"),
    ({"max_replicas": 2, "initial_replicas": 5}, "initial_replicas"),
    ({"max_replicas": 2, "downscale_delay": 5}, "downscale_delay"),
])
def test_a_bad_autoscaling_block_is_refused_when_the_topology_loads(block, message):
    pool = {"name": "fr", "region": "FR", "hardware": "x86", "capacity_rps": 400, "service_ms": 5, "rtt_ms": {"FR": 2},
            "energy": {"*": 0.01}, "autoscaling": block}
    with pytest.raises(BadRequest, match=message):
        Topology.from_dict({"client_regions": ["FR"], "pools": [pool]})


def test_the_spec_defaults_come_from_the_pool():
    from routing.autoscale import ScalingSpec as Spec
    topo = Topology.from_dict({"client_regions": ["FR"], "pools": [
        {"name": "fr", "region": "FR", "hardware": "x86", "capacity_rps": 400, "service_ms": 5, "rtt_ms": {"FR": 2},
         "energy": {"*": {"idle_w": 1.5, "dynamic_j": 0.01}}, "autoscaling": {"max_replicas": 2}}]})
    spec = Spec.from_pool(topo.pool("fr"))
    assert (spec.min_replicas, spec.max_replicas, spec.replica_capacity_rps, spec.idle_w_per_replica) == (0, 2, 200.0, 0.75)
    assert spec.servers_per_replica == 1


def test_when_every_pool_is_cold_the_best_one_is_waited_for_rather_than_refused():
    core = RouterCore(_two_pools(), RoutingControl("lowest-carbon"), _Static({"FR": 50.0, "DE": 300.0}), 50.0)
    req = RouteRequest("m", "v", "FR", 50.0)
    core.set_warm("fr", 0, 2)
    core.set_warm("de", 0, 2)
    entry = core.pick(req, 0.0)
    assert entry.pool == "fr" and "every pool cold: waiting for fr to start" in entry.reason


async def test_a_request_waiting_for_a_cold_pool_is_executed_not_bounced_between_cold_pools():
    from routing.live import ClientContext, GreenRouter
    from routing.pools import PoolJob
    from models.work import WorkResult

    ran = []

    class _Exec:
        def __init__(self, name):
            self.name = name

        async def run(self, job):
            ran.append(self.name)
            return WorkResult(outputs={}, energy=None, batch_rows=1, batch_requests=1)

    topo = _two_pools()
    from energy.coefficients import PROFILES
    router = GreenRouter(topo, RoutingControl("lowest-carbon"), _Static({"FR": 50.0, "DE": 300.0}),
                         {"fr": _Exec("fr"), "de": _Exec("de")}, {"x86": PROFILES["aws-x86"]}, 50.0, "FR")
    router.core.set_warm("fr", 0, 2)
    router.core.set_warm("de", 0, 2)

    class _Card:
        name = "m"
        fallback_variants: list = []

        def variant(self, requested):
            return "v", None

    route = router.route(_Card(), None, frozenset({"v"}), ClientContext())
    assert "every pool cold" in route.route_reason
    await router.execute(route, PoolJob("m", "1", "v", None, ()))
    assert ran == ["fr"]
