"""Green routing on a real Ray Serve app: embedded logical pools, live policy changes, replayed intensity."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from wattgate.settings import load_settings

pytestmark = pytest.mark.integration

TRACE_FR = "datetime_utc,carbon_intensity_g_per_kwh\n2020-03-01T00:00:00Z,300\n2020-03-01T12:00:00Z,40\n"
TRACE_DE = "datetime_utc,carbon_intensity_g_per_kwh\n2020-03-01T00:00:00Z,120\n2020-03-01T12:00:00Z,500\n"
TRACE_GB = "datetime_utc,carbon_intensity_g_per_kwh\n2020-03-01T00:00:00Z,250\n2020-03-01T12:00:00Z,260\n"


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("routing")
    files = {}
    for region, text in {"FR": TRACE_FR, "DE": TRACE_DE, "GB": TRACE_GB}.items():
        (tmp / f"{region}.csv").write_text(text)
        files[region] = str(tmp / f"{region}.csv")
    settings = load_settings(
        None,
        models={"repository": str(digits_repository)},
        server={"state_dir": str(tmp / "state"), "admin_api_key": "s3cret"},
        cache={"enabled": False},
        intensity={"provider": "replay", "replay": {"files": files, "start": "2020-03-01T06:00:00Z", "speed": 0}},
        routing={"policy": "lowest-carbon", "default_client_region": "FR"},
    )
    return deploy(settings)


ADMIN = {"Authorization": "Bearer s3cret"}


def _infer(url: str, seed: int, headers=None) -> dict:
    x = np.random.default_rng(seed).integers(0, 17, (1, 64)).astype(np.float32)
    r = httpx.post(f"{url}/v2/models/digits/infer", headers=headers or {},
                   json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x.reshape(-1).tolist()}]})
    assert r.status_code == 200, r.text
    return r.json()["parameters"]


def _set_clock(url: str, at: str) -> None:
    r = httpx.put(f"{url}/v2/admin/intensity/clock", json={"at": at, "speed": 0}, headers=ADMIN)
    assert r.status_code == 200, r.text


def test_requests_follow_the_replayed_intensity(gateway):
    _set_clock(gateway, "2020-03-01T06:00:00Z")  # DE 120 < GB 250 < FR 300
    p = _infer(gateway, 1)
    assert (p["pool"], p["region"], p["intensity_g_per_kwh"]) == ("de-x86", "DE", 120.0)
    assert p["route_reason"].startswith("lowest-carbon")
    _set_clock(gateway, "2020-03-01T13:00:00Z")  # FR 40 < GB 260 < DE 500
    p = _infer(gateway, 2)
    assert (p["pool"], p["region"], p["intensity_g_per_kwh"]) == ("fr-x86", "FR", 40.0)
    assert p["intensity_source"].startswith("replay")


def test_ops_change_the_policy_live_with_validation_and_history(gateway):
    assert httpx.get(f"{gateway}/v2/admin/routing").status_code == 401  # an admin key is configured
    before = httpx.get(f"{gateway}/v2/admin/routing", headers=ADMIN).json()
    bad = httpx.put(f"{gateway}/v2/admin/routing", json={"policy": "cheapest-ever"}, headers=ADMIN)
    assert bad.status_code == 400 and "cheapest-ever" in bad.json()["error"]
    bad = httpx.put(f"{gateway}/v2/admin/routing", json={"policy": "weighted", "params": {"weights": {"carbon": -1}}}, headers=ADMIN)
    assert bad.status_code == 400
    ok = httpx.put(f"{gateway}/v2/admin/routing", json={"policy": "latency-first"}, headers={**ADMIN, "X-Actor": "ops-test"})
    assert ok.status_code == 200 and ok.json()["policy"] == "latency-first"
    assert ok.json()["history"][-1]["actor"] == "ops-test"
    assert ok.json()["version"] == before["version"] + 1
    p = _infer(gateway, 3, headers={"X-Client-Region": "GB"})
    assert p["pool"] == "gb-arm" and p["route_reason"].startswith("latency-first")
    httpx.put(f"{gateway}/v2/admin/routing", json={"policy": "lowest-carbon"}, headers=ADMIN)
    assert _infer(gateway, 4, headers={"X-Client-Region": "GB"})["route_reason"].startswith("lowest-carbon")
