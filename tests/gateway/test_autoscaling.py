"""The gateway side of carbon-aware autoscaling, without Ray: the board, the Serve policy, the admin API."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from gateway.admin_routing import autoscaling_routes
from gateway.autoscaling import CarbonAwarePolicy, PoolBoard, check_overrides, pool_families
from gateway.replica_sync import ControlBoard
from routing.autoscale import ScalingSpec
from routing.control import RoutingControl
from routing.intensity.snapshot import IntensityView
from routing.split import RouterCore
from routing.topology import Topology
from wattgate.errors import BadRequest, NotFound

SPEC = ScalingSpec(min_replicas=0, max_replicas=2, replica_capacity_rps=200, service_ms=4, idle_w_per_replica=0.74)


def test_board_averages_ingress_intents_and_counts_decisions_once():
    board = ControlBoard()
    board.push_pools("a", {"fr": {"intent_rps": 100.0, "budget_ms": 40.0, "forecast_rps": None, "in_flight": 3}})
    board.push_pools("b", {"fr": {"intent_rps": 120.0, "budget_ms": 30.0, "forecast_rps": 50.0, "in_flight": 5}})
    got = board.scaling_input("fr", None)
    assert got["intent_rps"] == pytest.approx(110.0) and got["budget_ms"] == 30.0
    assert got["forecast_rps"] == 50.0 and got["ingress_replicas"] == 2
    report = {"replicas": 0, "target": 0, "decision": 1, "reason": "cold start", "detail": "x", "at": time.time()}
    board.scaling_input("fr", report)
    board.scaling_input("fr", dict(report, at=time.time()))  # the same decision again: not a new one
    view = board.pools_view("a")
    assert view["pools"]["fr"]["others_in_flight"] == 5  # b's requests, not a's own
    assert view["decision_counts"] == [["fr", "cold start", 1]]
    assert [d["reason"] for d in view["decisions"]] == ["cold start"]


def test_board_keeps_the_idle_energy_of_replicas_that_stopped(monkeypatch):
    board = ControlBoard()
    board.push_replica_energy("fr", "r1", 10.0, 100.0, "cpu-time-model")
    board.push_replica_energy("fr", "r2", 5.0, 50.0, "cpu-time-model")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 60)  # r1 and r2 are gone; r3 starts
    board.push_replica_energy("fr", "r3", 1.0, 10.0, "cpu-time-model")
    view = board.pools_view()["pools"]["fr"]
    assert view["idle_energy_j"] == pytest.approx(16.0) and view["replica_seconds"] == pytest.approx(160.0)


class _Ctx(SimpleNamespace):
    pass


def test_policy_holds_without_a_signal_and_never_blocks(monkeypatch):
    policy = CarbonAwarePolicy("fr", "wattgate-control-none", SPEC.to_dict(), {"idle_w": 1.48, "dynamic_j": 0.011})
    monkeypatch.setattr(policy, "_exchange", lambda report: None)
    n, state = policy(_Ctx(current_num_replicas=1, target_num_replicas=1))
    assert n == 1 and state == {} and policy._report["reason"] == "no signal"


def test_policy_decides_from_the_board_and_applies_live_overrides(monkeypatch):
    policy = CarbonAwarePolicy("fr", "s", SPEC.to_dict(), {"idle_w": 1.48, "dynamic_j": 0.011})
    signal = {"ingress_replicas": 2, "intent_rps": 300.0, "total_rps": 300.0, "budget_ms": 40.0, "forecast_rps": None,
              "overrides": {}}
    monkeypatch.setattr(policy, "_exchange", lambda report: signal)
    n, _ = policy(_Ctx(current_num_replicas=0, target_num_replicas=0))
    assert n == 2 and policy._report["reason"] == "cold start"
    signal["overrides"] = {"max_replicas": 1}
    n, _ = policy(_Ctx(current_num_replicas=2, target_num_replicas=2))
    assert n == 1
    signal.update(intent_rps=0.0, overrides={})
    n, _ = policy(_Ctx(current_num_replicas=2, target_num_replicas=2))
    assert n == 0 and policy._report["reason"] == "carbon"


class _Static:
    generation = 1
    provider = None
    regions = ["FR", "DE"]

    def get(self, region):
        return IntensityView({"FR": 50.0, "DE": 300.0}[region], "static", "test", False)


def _router():
    topo = Topology.from_dict({"client_regions": ["FR"], "pools": [
        {"name": n, "region": r, "hardware": "x86", "capacity_rps": 400, "service_ms": 4, "rtt_ms": {"FR": 2},
         "energy": {"*": 0.01}, "autoscaling": {"min_replicas": 0, "max_replicas": 2}} for n, r in (("fr", "FR"), ("de", "DE"))]})
    core = RouterCore(topo, RoutingControl("lowest-carbon"), _Static(), 50.0)
    return SimpleNamespace(core=core, clock=time.monotonic)


def test_pool_board_posts_intent_and_warms_the_router_from_the_view():
    router = _router()
    board = PoolBoard(router, _Static(), {"fr": SPEC, "de": SPEC}, set())
    assert router.core.is_cold("fr")  # Serve starts min=initial=0 replicas
    from routing.candidates import RouteRequest
    req = RouteRequest("m", "v", "FR", 50.0)
    assert "every pool cold" in router.core.pick(req, router.clock()).reason  # waits for the best to start
    posted = board.post()
    assert posted["fr"]["intent_rps"] > 0 and posted["de"]["intent_rps"] == 0
    board.apply({"pools": {"fr": {"replicas": 1, "others_in_flight": 0}, "de": {"replicas": 0}}})
    assert not router.core.is_cold("fr") and router.core.is_cold("de")
    assert router.core.pick(req, router.clock()).pool == "fr"
    # The policy decided to scale fr to zero: it takes no new request before Serve stops the replica.
    board.apply({"pools": {"fr": {"replicas": 1, "decision": 0}, "de": {"replicas": 1, "decision": 1}}})
    assert router.core.is_cold("fr") and not router.core.is_cold("de")


def test_pool_metrics_render_replicas_idle_energy_and_decisions():
    view = {"pools": {"fr": {"replicas": 1, "decision": 2, "idle_energy_j": 3.5, "replica_seconds": 10.0,
                             "energy_method": "cpu-time-model"}},
            "decision_counts": [["fr", "load", 4]]}
    from wattgate.metrics import render

    text = render(pool_families(view, {"fr": SPEC}))
    assert 'wattgate_pool_replicas{pool="fr"} 1.0' in text
    assert 'wattgate_idle_energy_joules_total{pool="fr",method="cpu-time-model"} 3.5' in text
    assert 'wattgate_provisioned_replica_seconds_total{pool="fr"} 10.0' in text
    assert 'wattgate_scaling_decisions_total{pool="fr",reason="load"} 4.0' in text
    assert text.count("# TYPE wattgate_pool_replicas gauge") == 1


@pytest.mark.parametrize("doc", [{"min_replicas": 3}, {"max_replicas": -1}, {"min_replicas": 2, "max_replicas": 1},
                                 {"headroom": "lots"}, {"downscale_delay_s": 5}, {"max_replicas": True}])
def test_invalid_live_changes_are_refused(doc):
    with pytest.raises(BadRequest):
        check_overrides(SPEC, doc)


async def test_admin_autoscaling_routes_validate_and_keep_the_running_config():
    stored = {}

    class _Sync:
        pools_view = {"pools": {"fr": {"replicas": 1}}, "decisions": [{"pool": "fr", "reason": "load"}]}

        async def set_overrides(self, pool, overrides):
            stored.setdefault(pool, {}).update(overrides)
            return stored[pool]

    show_route, put_route = autoscaling_routes({"fr": SPEC}, _Sync())
    show, put_pattern, change = show_route.handler, put_route.pattern, put_route.handler
    status, _, body = await show()
    assert status == 200 and json.loads(body)["pools"]["fr"]["replicas"] == 1
    with pytest.raises(NotFound):
        await change("nope", body=b'{"max_replicas": 1}')
    with pytest.raises(BadRequest):
        await change("fr", body=b'{"max_replicas": 9}')
    assert stored == {}  # refused: nothing changed
    with pytest.raises(BadRequest):
        await change("fr", body=b"[not json")
    status, _, body = await change("fr", body=b'{"max_replicas": 1}')
    assert status == 200 and stored == {"fr": {"max_replicas": 1}}
    assert put_pattern.fullmatch("/v2/admin/autoscaling/fr")


def test_pool_panel_shows_replicas_and_idle_power_of_autoscaled_pools():
    from gateway.autoscaling import pool_families
    from serving.dashboard import DashboardHistory, DashboardQuery

    spec = ScalingSpec(min_replicas=0, max_replicas=2, replica_capacity_rps=200, service_ms=4, idle_w_per_replica=0.74)
    now = [1000.0]
    hist = DashboardHistory(clock=lambda: now[0])
    assert hist.query(DashboardQuery(window_s=60))["panels"]["pool_replicas_idle"]["pending"]
    for replicas, idle_j in ((1, 0.0), (2, 10.0), (0, 15.0)):
        view = {"pools": {"fr": {"replicas": replicas, "idle_energy_j": idle_j, "replica_seconds": idle_j}}}
        hist.add(pool_families(view, {"fr": spec}))
        now[0] += 5
    panel = hist.query(DashboardQuery(window_s=60))["panels"]["pool_replicas_idle"]
    assert "pending" not in panel
    assert panel["series"]["fr replicas"] == [2, 0]
    assert panel["series"]["fr idle W"] == [pytest.approx(2.0), pytest.approx(1.0)]
