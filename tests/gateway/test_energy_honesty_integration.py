"""Honest figures through a real Ray Serve gateway: idle vs active, start-up, hits, avoided energy, ids."""

from __future__ import annotations

import time

import httpx
import pytest

from energy.ledger import EnergyLedger
from tests.gateway.test_energy_integration import scrape
from wattgate.settings import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository, tmp_path_factory):
    state = tmp_path_factory.mktemp("honest-state")
    settings = load_settings(
        None,
        models={"repository": str(digits_repository), "defaults": {"max_batch_size": 16, "batch_wait_timeout_s": 0.002}},
        server={"state_dir": str(state), "region": "FR"},
        energy={"meter": "cpu-time-model", "ledger_flush_interval_s": 0.2},
        routing={"topology_file": str(state / "no-topology.yaml")},
    )
    return deploy(settings), state


def _infer(url: str, value: float, **extra) -> httpx.Response:
    body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [value] * 64}], **extra}
    r = httpx.post(f"{url}/v2/models/digits/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r


def test_start_up_is_booked_apart_and_a_lone_request_reports_idle_as_idle(gateway):
    url, _ = gateway
    before = scrape(url)
    assert before.get("wattgate_startup_energy_joules_total", 0.0) > 0  # model load and Serve's start, booked apart
    time.sleep(1.0)
    p = _infer(url, 0.25).json()["parameters"]
    # After a second of idle time: the reserved half vCPU's static power (0.37 W) is idle, not active.
    assert p["energy_idle_j"] > 0.3 and p["energy_active_j"] < p["energy_idle_j"]
    assert p["energy_j"] == pytest.approx(p["energy_active_j"] + p["energy_idle_j"])
    after = scrape(url)
    # Start-up was booked once: serving requests adds nothing to it.
    assert after["wattgate_startup_energy_joules_total"] == before["wattgate_startup_energy_joules_total"]


def test_hits_cost_something_and_avoid_no_more_than_the_models_active_energy(gateway):
    url, _ = gateway
    misses = [_infer(url, 1.0 + i).json()["parameters"] for i in range(30)]
    assert {m["cache"] for m in misses} == {"miss"}
    before = scrape(url).get("wattgate_energy_avoided_joules_total", 0.0)
    time.sleep(0.5)
    hits = [_infer(url, 1.0 + i).json()["parameters"] for i in range(5)]
    assert {h["cache"] for h in hits} == {"hit"}
    assert all(h["energy_j"] > 0 and h["carbon_g"] > 0 for h in hits)  # every answer costs something
    avoided = scrape(url)["wattgate_energy_avoided_joules_total"] - before
    # A hit avoids the model's work, never the replica's idle power: at most what the misses' runs cost.
    assert 0 <= avoided <= 5 * max(m["energy_active_j"] for m in misses) + 1e-12


def test_response_id_request_id_header_and_ledger_row_join(gateway):
    url, state = gateway
    sent = _infer(url, 77.0, id="join-me")
    assert sent.json()["id"] == sent.headers["x-request-id"] == "join-me"
    generated = _infer(url, 78.0)
    assert generated.json()["id"] == generated.headers["x-request-id"]
    time.sleep(1.0)  # the ledger writes off the request path
    with EnergyLedger(state / "ledger.sqlite", background=False) as ledger:
        rows = {r.request_id: r for r in ledger.records(limit=None)}
    assert "join-me" in rows and generated.json()["id"] in rows
    row = rows["join-me"]
    assert row.energy_j == pytest.approx(row.active_j + row.idle_j)
    assert row.energy_j == pytest.approx(sent.json()["parameters"]["energy_j"])
