"""Two ingress replicas act as one gateway: admin changes reach both, /metrics counts both."""

from __future__ import annotations

import re
import time

import httpx
import numpy as np
import pytest

from wattgate.settings import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository, tmp_path_factory):
    settings = load_settings(
        None,
        models={"repository": str(digits_repository)},
        server={"state_dir": str(tmp_path_factory.mktemp("replicas")), "ingress_replicas": 2, "ingress_num_cpus": 0.25},
        cache={"enabled": False},
    )
    return deploy(settings)


def _infer(url: str, seed: int) -> httpx.Response:
    x = np.random.default_rng(seed).integers(0, 17, (1, 64)).astype(np.float32)
    return httpx.post(f"{url}/v2/models/digits/infer", json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x.reshape(-1).tolist()}]})


def _total(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.eE+-]+)$", text, re.M))


def eventually(check, timeout_s: float = 10.0):
    deadline = time.time() + timeout_s
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(0.3)


def test_metrics_add_up_across_replicas(gateway):
    before = _total(httpx.get(f"{gateway}/metrics").text, "wattgate_requests_total")
    energies = []
    with httpx.Client() as c:  # new connections spread over both replicas
        for i in range(60):
            r = c.post(f"{gateway}/v2/models/digits/infer", headers={"connection": "close"},
                       json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [float(i % 17)] * 64}]})
            assert r.status_code == 200
            energies.append(r.json()["parameters"]["energy_j"])

    def all_counted():
        for _ in range(4):  # whichever replica answers, it reports the whole gateway
            text = httpx.get(f"{gateway}/metrics", headers={"connection": "close"}).text
            assert _total(text, "wattgate_requests_total") - before == 60
    eventually(all_counted)


def test_admin_changes_reach_every_replica(gateway):
    r = httpx.put(f"{gateway}/v2/admin/routing", json={"policy": "round-robin"})
    assert r.status_code == 200

    def both_switched():
        for _ in range(6):
            assert httpx.get(f"{gateway}/v2/admin/routing", headers={"connection": "close"}).json()["policy"] == "round-robin"
    eventually(both_switched)

    assert httpx.post(f"{gateway}/v2/repository/models/digits/unload").status_code == 200

    def both_unloaded():
        for i in range(6):
            assert _infer(gateway, i).status_code == 503
    eventually(both_unloaded)
    assert httpx.post(f"{gateway}/v2/repository/models/digits/load").status_code == 200

    def both_loaded():
        for i in range(6):
            assert _infer(gateway, i).status_code == 200
    eventually(both_loaded)
