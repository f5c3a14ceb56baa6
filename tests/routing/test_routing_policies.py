"""Each policy's choice on hand-built states: SLOs, health, saturation, budgets and load-dependent energy."""

from __future__ import annotations

import pickle

import pytest

from routing.policies import (
    BudgetState,
    PoolState,
    RouteRequest,
    RoutingState,
    make_policy,
    policy_names,
)
from routing.topology import Topology
from wattgate.errors import BadRequest, Unavailable

INTENSITY = {"fr-x86": 50.0, "de-x86": 400.0, "gb-arm": 200.0}


def state(topology, request_seq=0, **overrides) -> RoutingState:
    """Healthy, lightly loaded pools with INTENSITY; overrides replace one pool's PoolState."""
    pools = {name: PoolState(intensity_g_per_kwh=g, load_rps=10.0) for name, g in INTENSITY.items()}
    pools.update(overrides)
    return RoutingState(topology, pools, request_seq=request_seq)


def req(client="FR", slo_ms=100.0, **kw) -> RouteRequest:
    return RouteRequest(model="minilm", variant="fp32", client_region=client, slo_ms=slo_ms, **kw)


def test_lowest_carbon_picks_the_cleanest_pool_and_explains(topology):
    d = make_policy("lowest-carbon").choose(req("DE"), state(topology))
    assert (d.pool, d.region, d.variant) == ("fr-x86", "FR", "fp32")
    assert d.meets_slo
    assert d.route_reason.startswith("lowest-carbon: fr-x86 (FR/x86) 50 g/kWh")
    assert "≤ SLO 100 ms" in d.route_reason
    # Expected carbon = J x PUE x g/kWh / 3.6e6.
    assert d.carbon_g == pytest.approx(0.06 * 1.2 * 50 / 3.6e6)
    assert d.fallbacks() == ["gb-arm", "de-x86"]  # ranked by carbon
    params = d.to_parameters()
    assert params["pool"] == "fr-x86" and params["route_reason"] == d.route_reason
    assert params["expected_energy_method"] == "curve-modelled"


def test_pool_that_would_miss_the_slo_is_skipped(topology):
    # From GB, FR is 30 ms away: 30 + 8 ms service > 35 ms SLO; next cleanest is gb-arm.
    d = make_policy("lowest-carbon").choose(req("GB", slo_ms=35), state(topology))
    assert d.pool == "gb-arm" and d.meets_slo
    fr = next(c for c in d.alternatives if c.pool == "fr-x86")
    assert "SLO" in fr.excluded and not fr.meets_slo


def test_unhealthy_pool_is_skipped_with_fallback(topology):
    s = state(topology, **{"fr-x86": PoolState(50.0, healthy=False)})
    d = make_policy("lowest-carbon").choose(req("FR"), s)
    assert d.pool == "gb-arm"
    assert "fr-x86" not in d.fallbacks()


def test_saturated_pool_is_skipped_with_fallback(topology):
    busy = {"fr-x86": PoolState(50.0, load_rps=399.0)}
    assert make_policy("lowest-carbon").choose(req("FR"), state(topology, **busy)).pool == "gb-arm"
    queued = {"fr-x86": PoolState(50.0, queue_len=5_000)}
    d = make_policy("lowest-carbon", max_queue_len=100).choose(req("FR"), state(topology, **queued))
    assert d.pool == "gb-arm"
    assert any("queue" in c.excluded for c in d.alternatives if c.pool == "fr-x86")


def test_new_load_must_not_break_the_slo_of_traffic_already_there(topology):
    # fr-x86 already serves requests with only 12 ms of server-side budget; at 300 rps its p99
    # queueing + service exceeds that, so a nearby FR request (which itself would fit) goes elsewhere.
    loaded = {"fr-x86": PoolState(50.0, load_rps=300.0, tightest_budget_ms=12.0)}
    d = make_policy("lowest-carbon").choose(req("FR"), state(topology, **loaded))
    assert d.pool == "gb-arm"
    relaxed = {"fr-x86": PoolState(50.0, load_rps=300.0)}
    assert make_policy("lowest-carbon").choose(req("FR"), state(topology, **relaxed)).pool == "fr-x86"


def test_best_effort_when_no_pool_meets_the_slo(topology):
    d = make_policy("lowest-carbon").choose(req("GB", slo_ms=5), state(topology))
    assert d.pool == "gb-arm"  # the lowest-latency healthy pool for a GB client
    assert not d.meets_slo
    assert "best-effort" in d.route_reason and "SLO 5 ms" in d.route_reason


def test_no_healthy_pool_raises_unavailable(topology):
    down = {n: PoolState(g, healthy=False) for n, g in INTENSITY.items()}
    with pytest.raises(Unavailable) as exc:
        make_policy("lowest-carbon").choose(req(), RoutingState(topology, down))
    assert exc.value.status_code == 503
    assert "fr-x86 unhealthy" in exc.value.message
    assert pickle.loads(pickle.dumps(exc.value)).message == exc.value.message


def test_pool_without_observed_state_is_not_chosen(topology):
    s = RoutingState(topology, {"de-x86": PoolState(400.0)})
    assert make_policy("lowest-carbon").choose(req(), s).pool == "de-x86"


def test_latency_first_prefers_the_nearest_pool(topology):
    for client, pool in (("FR", "fr-x86"), ("DE", "de-x86"), ("GB", "gb-arm")):
        d = make_policy("latency-first").choose(req(client), state(topology))
        assert d.pool == pool
        assert d.route_reason.startswith("latency-first:")


def test_weighted_moves_between_carbon_and_latency(topology):
    s = state(topology)
    assert make_policy("weighted", weights={"carbon": 1}).choose(req("DE"), s).pool == "fr-x86"
    assert make_policy("weighted", weights={"latency": 1}).choose(req("DE"), s).pool == "de-x86"
    # From GB: gb-arm is near and mid-carbon, fr-x86 clean but far; balanced weights pick gb-arm,
    # carbon-heavy weights pick fr-x86.
    assert make_policy("weighted", weights={"carbon": 1, "latency": 1}).choose(req("GB"), s).pool == "gb-arm"
    assert make_policy("weighted", weights={"carbon": 9, "latency": 1}).choose(req("GB"), s).pool == "fr-x86"
    w = make_policy("weighted", weights={"carbon": 3, "latency": 1})
    assert w.params()["weights"] == {"carbon": 0.75, "latency": 0.25, "energy": 0.0}


@pytest.mark.parametrize(
    "weights, message",
    [({"carbon": -1}, ">= 0"), ({"speed": 1}, "unknown weight"), ({"carbon": 0}, "at least one"),
     ({"carbon": "lots"}, "numbers"), ([1, 2], "mapping")],
)
def test_weighted_rejects_bad_weights(weights, message):
    with pytest.raises(BadRequest, match=message):
        make_policy("weighted", weights=weights)


def test_round_robin_rotates_over_healthy_pools_purely(topology):
    rr = make_policy("round-robin")
    picks = [rr.choose(req(), state(topology, request_seq=i)).pool for i in range(6)]
    assert picks == ["de-x86", "fr-x86", "gb-arm"] * 2
    # Pure: the same state gives the same answer, however often it is asked.
    assert {rr.choose(req(), state(topology, request_seq=4)).pool for _ in range(3)} == {"fr-x86"}
    down = {"fr-x86": PoolState(50.0, healthy=False)}
    assert [rr.choose(req(), state(topology, i, **down)).pool for i in range(4)] == ["de-x86", "gb-arm"] * 2


def test_carbon_budget_switches_to_a_cheaper_variant_the_card_allows(topology):
    cb = make_policy("carbon-budget", threshold=0.9)
    tight = RoutingState(topology, state(topology).pools, tenant_budgets={"acme": BudgetState(95.0, 100.0)})
    d = cb.choose(req("FR", tenant="acme", allowed_variants=("int8",)), tight)
    assert (d.pool, d.variant) == ("fr-x86", "int8")
    assert "tenant acme 95% of 100 g spent → int8" in d.route_reason
    assert d.carbon_g == pytest.approx(0.015 * 1.2 * 50 / 3.6e6)


def test_carbon_budget_keeps_the_variant_when_the_card_allows_no_other(topology):
    cb = make_policy("carbon-budget")
    tight = RoutingState(topology, state(topology).pools, model_budgets={"minilm": BudgetState(99.0, 100.0)})
    d = cb.choose(req("FR"), tight)
    assert d.variant == "fp32"
    assert "card allows no cheaper variant" in d.route_reason


def test_carbon_budget_serves_the_preferred_variant_while_budget_lasts(topology):
    cb = make_policy("carbon-budget", threshold=0.9)
    easy = RoutingState(topology, state(topology).pools, tenant_budgets={"acme": BudgetState(50.0, 100.0)})
    d = cb.choose(req("FR", tenant="acme", allowed_variants=("int8",)), easy)
    assert d.variant == "fp32"
    assert "50% of budget spent" in d.route_reason


def test_lowest_carbon_uses_load_dependent_energy():
    # Same region and grid: a GPU pool (measured H200 curve) against a CPU INT8 pool (modelled).
    topo = Topology.from_dict(
        {
            "client_regions": ["FR"],
            "pools": [
                {"name": "fr-gpu", "region": "FR", "hardware": "gpu", "capacity_rps": 200_000, "service_ms": 5,
                 "rtt_ms": {"FR": 2}, "energy": {"fp16": {"points": [[200, 0.64], [1_000, 0.13], [5_000, 0.027],
                                                                    [20_000, 0.008], [100_000, 0.003]],
                                                         "method": "measured", "source": "NVML on H200"}}},
                {"name": "fr-cpu", "region": "FR", "hardware": "x86", "capacity_rps": 200_000, "service_ms": 5,
                 "rtt_ms": {"FR": 2}, "energy": {"fp16": {"idle_w": 5.0, "dynamic_j": 0.0145}}},
            ],
        }
    )
    lc = make_policy("lowest-carbon")
    r = RouteRequest("minilm", "fp16", "FR")

    def at(load):
        return RoutingState(topo, {"fr-gpu": PoolState(56.0, load_rps=load), "fr-cpu": PoolState(56.0, load_rps=load)})

    assert lc.choose(r, at(2_000)).pool == "fr-cpu"
    gpu = lc.choose(r, at(50_000))
    assert gpu.pool == "fr-gpu" and gpu.energy_method == "measured"


def test_stale_intensity_is_flagged_in_the_reason(topology):
    s = state(topology, **{"fr-x86": PoolState(50.0, intensity_stale=True)})
    assert "50 g/kWh (stale)" in make_policy("lowest-carbon").choose(req(), s).route_reason


def test_factory_fails_loudly():
    assert set(policy_names()) == {"lowest-carbon", "latency-first", "weighted", "round-robin", "carbon-budget"}
    with pytest.raises(BadRequest, match="unknown routing policy 'greenest'"):
        make_policy("greenest")
    with pytest.raises(BadRequest, match="bad parameters"):
        make_policy("lowest-carbon", weights={"carbon": 1})
    with pytest.raises(BadRequest, match="max_utilisation"):
        make_policy("latency-first", max_utilisation=1.5)
    with pytest.raises(BadRequest, match="threshold"):
        make_policy("carbon-budget", threshold=0)
    with pytest.raises(BadRequest, match="must be a number"):
        make_policy("lowest-carbon", max_utilisation="high")
    with pytest.raises(BadRequest, match="must be an integer"):
        make_policy("round-robin", max_queue_len=2.5)


def test_request_validation():
    assert req(allowed_variants=("int8", "fp32")).allowed_variants == ("fp32", "int8")
    with pytest.raises(BadRequest):
        req(slo_ms=0)
