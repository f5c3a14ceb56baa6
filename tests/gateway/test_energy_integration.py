"""Energy per request through a real Ray Serve app: conservation, /metrics totals and the ledger."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits

from energy.ledger import EnergyLedger
from wattgate.settings import load_settings

pytestmark = pytest.mark.integration


def scrape(url: str) -> dict[str, float]:
    """Sum every series of each metric family in the Prometheus text."""
    out: dict[str, float] = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        m = re.match(r"^([a-zA-Z_:]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
    return out


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository, tmp_path_factory):
    state = tmp_path_factory.mktemp("energy-state")
    settings = load_settings(
        None,
        models={"repository": str(digits_repository), "defaults": {"max_batch_size": 16, "batch_wait_timeout_s": 0.01}},
        server={"state_dir": str(state), "region": "FR"},
        cache={"enabled": False},
        energy={"meter": "cpu-time-model", "ledger_flush_interval_s": 0.2},
        routing={"topology_file": str(state / "no-topology.yaml")},  # one local pool in server.region
    )
    return deploy(settings), state


def test_per_request_energy_is_conserved_and_matches_metrics_and_ledger(gateway):
    url, state = gateway
    x = load_digits().data.astype(np.float32)
    before = scrape(url)

    async def fire():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=32)) as c:
            async def one(i):
                rows = 1 + i % 4
                body = {"id": f"req-{i}", "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [rows, 64], "data": x[i : i + rows].reshape(-1).tolist()}]}
                return await c.post(f"{url}/v2/models/digits/infer", json=body)

            return await asyncio.gather(*(one(i) for i in range(240)))

    responses = asyncio.run(fire())
    assert all(r.status_code == 200 for r in responses)
    params = [r.json()["parameters"] for r in responses]
    assert {p["energy_method"] for p in params} == {"cpu-time-model"}
    assert all(p["energy_measured"] is False for p in params)
    assert all(p["energy_j"] > 0 and p["carbon_g"] > 0 for p in params)
    assert all(p["region"] == "FR" and p["intensity_g_per_kwh"] == 56.0 for p in params)
    for p in params:  # SCI arithmetic: O = E(kWh) x I x PUE, carbon = O + M
        assert p["operational_g"] == pytest.approx(p["energy_j"] / 3.6e6 * p["intensity_g_per_kwh"] * p["pue"], rel=1e-9)
        assert p["carbon_g"] == pytest.approx(p["operational_g"] + p["embodied_g"], rel=1e-9)
    assert float(responses[0].headers["x-energy-j"]) == pytest.approx(params[0]["energy_j"], rel=1e-5)
    total_j = sum(p["energy_j"] for p in params)

    after = scrape(url)
    metered = after["wattgate_metered_energy_joules_total"] - before.get("wattgate_metered_energy_joules_total", 0)
    written_off = after["wattgate_unattributed_energy_joules_total"] - before.get("wattgate_unattributed_energy_joules_total", 0)
    pending_delta = after["wattgate_pending_energy_joules"] - before.get("wattgate_pending_energy_joules", 0)
    attributed = metered - written_off - pending_delta
    # Conservation: what the responses carry is what the replica's meter measured, within 2%.
    assert total_j == pytest.approx(attributed, rel=0.02)
    # /metrics totals equal the sum of the per-request figures.
    metric_j = after["wattgate_energy_joules_total"] - before.get("wattgate_energy_joules_total", 0)
    assert metric_j == pytest.approx(total_j, rel=1e-6)
    assert after["wattgate_requests_total"] - before.get("wattgate_requests_total", 0) == 240

    time.sleep(1.0)  # the ledger writes off the request path, in batches
    ledger = EnergyLedger(state / "ledger.sqlite", background=False)
    try:
        ids = {r.request_id for r in ledger.records(limit=None)}
        assert {f"req-{i}" for i in range(240)} <= ids
        mine = [r for r in ledger.records(limit=None) if r.request_id.startswith("req-")]
        assert sum(r.energy_j for r in mine) == pytest.approx(total_j, rel=1e-9)
        assert all(r.energy_method == "cpu-time-model" and r.cache == "off" for r in mine)
    finally:
        ledger.close()
