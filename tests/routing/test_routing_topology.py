"""Energy curves, pools, topology files and the M/M/c queueing model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from routing.queueing import erlang_c, max_load_for_wait_rps, wait_quantile_ms
from routing.topology import EnergyCurve, Topology, curve_from_spec, load_topology
from wattgate.errors import BadRequest, NotFound

ROOT = Path(__file__).resolve().parents[2]

H200_MINILM = [(200, 0.64), (1_000, 0.13), (5_000, 0.027), (20_000, 0.008), (100_000, 0.003)]


def h200() -> EnergyCurve:
    return EnergyCurve.from_table(H200_MINILM, method="measured", source="NVML on H200")


def cpu_int8() -> EnergyCurve:
    # ~0.015 J per inference modelled, with a little CPU idle shared by the traffic.
    return EnergyCurve.from_power_model(idle_w=5.0, dynamic_j=0.0145, source="CPU INT8 model")


def test_table_curve_hits_its_points_and_interpolates_log_log():
    g = h200()
    for rps, j in H200_MINILM:
        assert g.at(rps) == pytest.approx(j, rel=1e-12)
    # Geometric midpoint of 1k and 5k lands on the geometric mean of their energies.
    assert g.at(math.sqrt(1_000 * 5_000)) == pytest.approx(math.sqrt(0.13 * 0.027), rel=1e-12)
    assert g.at(100) > g.at(200) > g.at(300)  # below the table: idle shared by fewer requests
    assert g.at(1e6) == pytest.approx(0.003)  # above the table: the dynamic floor holds
    with pytest.raises(ValueError):
        g.at(0)


def test_power_model_shares_idle_over_traffic():
    c = EnergyCurve.from_power_model(idle_w=10.0, dynamic_j=0.01)
    assert c.at(100) == pytest.approx(0.11)
    assert c.at(1_000) == pytest.approx(0.02)
    assert c.power_w(1_000) == pytest.approx(20.0)
    assert c.power_w(0) == 0.0
    assert c.method == "modelled"
    assert c.affine_bound(500) == (10.0, 0.01)


def test_gpu_is_greener_than_cpu_only_above_about_10k_rps():
    gpu, cpu = h200(), cpu_int8()
    for rps in (200, 1_000, 5_000, 8_000):
        assert gpu.at(rps) > cpu.at(rps), rps
    for rps in (12_000, 20_000, 100_000):
        assert gpu.at(rps) < cpu.at(rps), rps
    lo, hi = 1_000.0, 100_000.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if gpu.at(mid) > cpu.at(mid) else (lo, mid)
    assert 8_000 < lo < 12_000


def test_curve_specs_and_their_errors():
    assert curve_from_spec(0.02).at(5) == 0.02
    assert curve_from_spec({"points": [[10, 1.0], [100, 0.1]], "source": "x"}).method == "measured"
    assert curve_from_spec({"idle_w": 1, "dynamic_j": 0.01}).at(100) == pytest.approx(0.02)
    with pytest.raises(BadRequest, match="strictly increasing"):
        EnergyCurve.from_table([(100, 1.0), (10, 2.0)])
    with pytest.raises(BadRequest, match="unknown energy field"):
        curve_from_spec({"joules": 1})
    with pytest.raises(BadRequest, match="method"):
        EnergyCurve.from_table([(1, 1.0)], method="guessed")
    with pytest.raises(BadRequest):
        EnergyCurve.from_power_model(idle_w=-1, dynamic_j=0.01)


def test_topology_validation_fails_loudly(topology):
    data = topology.to_dict()
    assert Topology.from_dict(data).names == ("fr-x86", "de-x86", "gb-arm")
    bad = {**data, "pools": [dict(data["pools"][0], hardware="fpga")]}
    with pytest.raises(BadRequest, match="hardware"):
        Topology.from_dict(bad)
    missing_rtt = {**data, "client_regions": ["FR", "US"]}
    with pytest.raises(BadRequest, match="US"):
        Topology.from_dict(missing_rtt)
    twice = {**data, "pools": [data["pools"][0], data["pools"][0]]}
    with pytest.raises(BadRequest, match="unique"):
        Topology.from_dict(twice)
    with pytest.raises(NotFound):
        topology.pool("nowhere")


def test_shipped_local_topology_has_three_pools_serving_any_variant():
    topo = load_topology(ROOT / "routing" / "scenarios" / "local-topology.yaml")
    assert topo.names == ("fr-x86", "de-x86", "gb-arm")
    assert {p.region for p in topo.pools} == {"FR", "DE", "GB"}
    fr = topo.pool("fr-x86")
    assert fr.serves("fp32") and fr.serves("distilled")  # "*" covers variants without their own curve
    assert fr.curve("int8").at(100) < fr.curve("fp32").at(100)
    assert all(c.method == "modelled" for p in topo.pools for c in p.energy.values())


def test_erlang_c_matches_closed_forms():
    assert erlang_c(1, 0.5) == pytest.approx(0.5)  # M/M/1: P(wait) = rho
    # M/M/2 at a = 1: C = a^2 / (a^2 + 2 (1 + a)(1 - rho)/1)... = 1/3
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c(4, 4.0) == 1.0


def test_wait_quantile_and_its_inverse():
    # M/M/1, capacity 100 rps (service 10 ms), load 50: P(W > t) = 0.5 exp(-50 t) -> p99 = ln(50)/50 s.
    assert wait_quantile_ms(0.99, 50, 100, 10) == pytest.approx(1000 * math.log(50) / 50)
    assert wait_quantile_ms(0.99, 0.5, 100, 10) == 0.0  # fewer than 1 % wait at all
    assert math.isinf(wait_quantile_ms(0.99, 100, 100, 10))
    cap = max_load_for_wait_rps(0.99, 40.0, 2_000, 8)
    assert wait_quantile_ms(0.99, cap, 2_000, 8) <= 40.0 < wait_quantile_ms(0.99, cap + 1, 2_000, 8)


def test_pool_latency_adds_rtt_queueing_and_service(topology):
    fr = topology.pool("fr-x86")
    assert fr.latency_p99_ms("FR", 1) == pytest.approx(2 + 8)
    assert fr.latency_p99_ms("GB", 1) == pytest.approx(30 + 8)
    assert fr.latency_p99_ms("FR", 390) > fr.latency_p99_ms("FR", 300) > 10
    assert math.isinf(fr.latency_p99_ms("US", 1))
