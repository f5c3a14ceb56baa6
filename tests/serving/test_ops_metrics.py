"""Operators' series: traffic, energy and carbon per pool, route kinds, SLO outcomes, router state."""

from __future__ import annotations

import asyncio
import json

import pytest

from serving.ops_metrics import route_kind
from wattgate.metrics import render


def test_route_kind_is_a_bounded_label():
    assert route_kind(None) == "single-pool"
    assert route_kind("lowest-carbon: fr-x86 (FR/x86) 56 g/kWh, 829 µgCO2e/req, est 6 ms ≤ SLO 100 ms") == "lowest-carbon"
    assert route_kind("lowest-carbon: x; spill to de-x86: full (fallback: fr-x86 failed)") == "lowest-carbon/fallback/spill"
    assert route_kind("latency-first: best-effort, no pool meets the SLO") == "latency-first/best-effort"
    assert route_kind("Anything Else: 12 g") == "other"


def _infer(plane, row, **parameters):
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": row.tolist()}]}
    if parameters:
        doc["parameters"] = parameters
    body, _ = asyncio.run(plane.dataplane.infer("digits", None, json.dumps(doc).encode(), {}))
    return json.loads(body)["parameters"]


def test_per_pool_series_add_up_to_the_requests(make_plane, pixels):
    plane = make_plane(cache={"enabled": False}, budgets={"models_g": {"digits": 1e-9}})
    params = [_infer(plane, pixels[i]) for i in range(5)] + [_infer(plane, pixels[0], slo_ms=1e-6)]
    pools = {p["pool"] for p in params}
    snap = plane.snapshot()

    def series(name):
        return {tuple(k): v for k, v in snap[name]["series"]}

    requests = series("wattgate_pool_requests_total")
    assert sum(requests.values()) == 6 and {k[2] for k in requests} == pools
    energy = series("wattgate_pool_energy_joules_total")
    assert sum(energy.values()) == sum(p["energy_j"] for p in params)
    slo = series("wattgate_slo_requests_total")
    assert sum(v for k, v in slo.items() if k[2] == "missed") == 1  # the request with a 1 ns SLO
    assert sum(v for k, v in slo.items() if k[2] == "met") == 5
    assert series("wattgate_request_latency_seconds")  # a histogram per (model, pool)
    assert set(series("wattgate_pool_down")) == {("fr-x86",), ("de-x86",), ("gb-arm",)}
    assert all(v == 0.0 for v in series("wattgate_pool_down").values())
    assert series("wattgate_carbon_budget_used_ratio")[("model", "digits")] > 1  # a 1 ng budget is spent
    text = render(snap)
    assert 'wattgate_intensity_stale{region="FR"} 0.0' in text


def test_a_tenants_requests_are_counted_again_under_its_label_and_anonymous_ones_are_not(make_plane, pixels):
    from tenants.gate import Principal
    from tenants.keys import KeyLimits

    plane = make_plane(cache={"enabled": False})
    plane.keys.create("acme", KeyLimits())
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": pixels[0].tolist()}]}
    for _ in range(3):
        asyncio.run(plane.dataplane.infer("digits", None, json.dumps(doc).encode(), {}, Principal(tenant="acme")))
    _infer(plane, pixels[1])  # anonymous
    snap = plane.snapshot()

    def series(name):
        return {tuple(k): v for k, v in snap[name]["series"]}

    requests = series("wattgate_tenant_pool_requests_total")
    assert {k[0] for k in requests} == {"acme"} and sum(requests.values()) == 3
    assert sum(series("wattgate_pool_requests_total").values()) == 4
    energy = series("wattgate_tenant_pool_energy_joules_total")
    assert sum(energy.values()) == pytest.approx(series("wattgate_tenant_energy_joules_total")[("acme",)])
    assert sum(series("wattgate_tenant_slo_requests_total").values()) == 3
    assert {k[0] for k in series("wattgate_tenant_request_latency_seconds")} == {"acme"}
