"""The live quality guard through a real gateway (Ray Serve, HTTP on loopback, two ingress replicas):
a variant with random weights registered as int8 is caught on live traffic and traffic stops going
to it on both replicas; an operator's re-enable on one reaches both."""

from __future__ import annotations

import time

import httpx
import pytest
from sklearn.datasets import load_digits

from wattgate.settings import load_settings

pytestmark = pytest.mark.integration

ADMIN = {"Authorization": "Bearer s3cret"}
MAX_REQUESTS = 40  # the bound: min_rows 8 of 2-row requests, plus the guard's lag behind the answers
SYNC_S = 2.5  # the replicas' control sync runs once a second


@pytest.fixture(scope="module")
def gateway(deploy, guarded_repository, tmp_path_factory):
    settings = load_settings(
        None,
        models={"repository": str(guarded_repository)},
        server={"state_dir": str(tmp_path_factory.mktemp("guard-state")), "admin_api_key": "s3cret",
                "ingress_replicas": 2, "ingress_num_cpus": 0.25},
        cache={"enabled": False},
        quality_guard={"enabled": True, "sample_rate": 1.0, "min_rows": 8, "action": "exclude"},
    )
    return deploy(settings)


def _infer(url: str, i: int, labels: bool = False, rows: int = 2) -> httpx.Response:
    d = load_digits()
    x, y = d.data[rows * i: rows * i + rows], d.target[rows * i: rows * i + rows]
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [rows, 64], "data": x.reshape(-1).tolist()}]}
    if labels:
        doc["parameters"] = {"labels": [int(v) for v in y]}
    r = httpx.post(f"{url}/v2/models/digits/infer", json=doc, timeout=30)
    assert r.status_code == 200, r.text
    return r


def test_random_weights_registered_as_int8_are_caught_and_traffic_stops_going_there(gateway):
    served = []
    for i in range(MAX_REQUESTS):
        served.append(_infer(gateway, i, labels=i % 2 == 0).headers["x-variant"])
        if served[-3:] == ["fp32"] * 3:
            break
        time.sleep(0.05)  # a client's pace: the guard works between requests, never inside one
    assert served[0] == "int8", "the card's default serves until the guard has seen enough"
    assert served[-3:] == ["fp32"] * 3, f"still routed to the broken variant after {len(served)} requests: {served}"
    # Whichever replica decided, within the sync interval both avoid it, and say why.
    time.sleep(SYNC_S)
    later = [_infer(gateway, i) for i in range(12)]
    assert {r.headers["x-variant"] for r in later} == {"fp32"}
    assert all("excluded by the quality guard" in r.headers["x-route-reason"] for r in later)
    # Both replicas show one merged view (the admin GET lands on either).
    views = [httpx.get(f"{gateway}/v2/admin/quality", headers=ADMIN).json() for _ in range(8)]
    assert all((v["excluded"], v["history"]) == (views[0]["excluded"], views[0]["history"]) for v in views), views

    metrics = httpx.get(f"{gateway}/metrics").text
    line = next(ln for ln in metrics.splitlines() if ln.startswith('wattgate_variant_agreement{model="digits",variant="int8"}'))
    assert float(line.split()[-1]) < 0.95
    assert 'wattgate_variant_excluded{model="digits",variant="int8"} 1' in metrics
    energy = next(ln for ln in metrics.splitlines() if ln.startswith("wattgate_quality_guard_energy_joules_total"))
    assert float(energy.split()[-1]) > 0
    accuracy = next(ln for ln in metrics.splitlines() if ln.startswith('wattgate_variant_accuracy{model="digits",variant="int8"}'))
    assert float(accuracy.split()[-1]) < 0.5

    view = httpx.get(f"{gateway}/v2/admin/quality", headers=ADMIN).json()
    assert [(e["variant"], e["instead"], e["actor"]) for e in view["excluded"]] == [("int8", "fp32", "quality-guard")]
    assert "below the card's floor 0.95" in view["excluded"][0]["reason"]

    # Only an operator routes to it again, and the audit trail says who.
    assert httpx.put(f"{gateway}/v2/admin/quality/digits/int8", json={"enabled": False}, headers=ADMIN).status_code == 400
    r = httpx.put(f"{gateway}/v2/admin/quality/digits/int8", json={"enabled": True, "reason": "new file"},
                  headers={**ADMIN, "x-actor": "alice"})
    assert r.status_code == 200, r.text
    actions = [h["action"] for h in r.json()["history"]]  # each replica's guard may have excluded it once
    assert actions[-1] == "enabled" and set(actions[:-1]) == {"excluded"} and r.json()["history"][-1]["actor"] == "alice"
    # The re-enable reaches the other replica too: 1-row requests (below min_rows on either) all go to int8.
    time.sleep(SYNC_S)
    assert [_infer(gateway, i, rows=1).headers["x-variant"] for i in range(6)] == ["int8"] * 6
