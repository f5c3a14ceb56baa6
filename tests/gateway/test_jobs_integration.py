"""Deferrable jobs through a real `wattgate serve` (Ray Serve, HAProxy): a job submitted at a dirty
hour runs in the forecast's minimum window, survives a gateway restart while scheduled, and its
ledger row shows the actual and the counterfactual carbon. The replayed clock is set over the admin API.
A tenant past its budget's defer level gets its deferrable request back as its own job (202)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import psutil
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from jobs_fakes import DIRTY, TRACES, digits_body  # noqa: E402

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _start(cfg: Path, port: int) -> tuple[subprocess.Popen, set[int]]:
    from tests.conftest import free_port

    proc = subprocess.Popen([sys.executable, "-m", "wattgate.cli", "serve", "--config", str(cfg), "--grpc-port",
                             str(free_port())], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/models/digits/ready", timeout=2).status_code == 200:
                return proc, {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            pytest.fail(proc.stdout.read())
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("wattgate serve never became ready")


def _stop(proc: subprocess.Popen, family: set[int]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    for pid in family:  # only what this test started
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


def _deferred_by_budget(url: str) -> None:
    """A tenant at 95 % of its budget: a deferrable infer is 202 and a job only it sees (then cancelled)."""
    def new_key(tenant: str) -> tuple[str, str]:
        doc = httpx.post(f"{url}/v2/admin/keys", json={"tenant": tenant, "budget_g": 1000.0}, timeout=30).json()
        return doc["key"], doc["key_id"]

    (key, key_id), (other, _) = new_key("team-a"), new_key("team-b")
    auth = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    params = httpx.post(f"{url}/v2/models/digits/infer", content=digits_body(), headers=auth, timeout=30).json()["parameters"]
    spent_g = params["budget_g"] - params["budget_remaining_g"]
    assert httpx.patch(f"{url}/v2/admin/keys/{key_id}", json={"budget_g": spent_g / 0.95}, timeout=30).status_code == 200
    deadline = time.time() + 30
    while time.time() < deadline:  # until the key store and the budget (read from the ledger) catch up
        r = httpx.post(f"{url}/v2/models/digits/infer", content=digits_body(deferrable=True), headers=auth, timeout=30)
        if r.status_code == 202:
            break
        assert r.status_code == 200, r.text
        spent_g = r.json()["parameters"]["budget_g"] - r.json()["parameters"]["budget_remaining_g"]
        httpx.patch(f"{url}/v2/admin/keys/{key_id}", json={"budget_g": spent_g / 0.95}, timeout=30)
        time.sleep(0.5)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["tenant"] == "team-a" and r.headers["location"] == f"/v2/jobs/{job['id']}"
    assert httpx.get(f"{url}{r.headers['location']}", headers={"authorization": f"Bearer {other}"},
                     timeout=30).status_code == 404
    cancelled = httpx.delete(f"{url}{r.headers['location']}", headers={"authorization": f"Bearer {key}"}, timeout=30)
    assert cancelled.json()["state"] == "cancelled"


def test_a_job_waits_for_the_clean_window_across_a_restart_and_books_its_counterfactual(digits_repository, tmp_path):
    from energy.ledger import EnergyLedger
    from routing.intensity.traces import load_trace
    from tests.conftest import free_port

    port = free_port()
    cfg = tmp_path / "wattgate.yaml"
    cfg.write_text(yaml.safe_dump({
        "server": {"port": port, "state_dir": str(tmp_path / "var"), "region": "DE"},
        "models": {"repository": str(digits_repository)},
        "routing": {"topology_file": str(tmp_path / "no-topology.yaml")},  # one local pool in DE
        "intensity": {"provider": "replay", "fallback": ["static"],
                      "replay": {"files": {"DE": str(TRACES / "DE_2020H1.csv")}, "start": DIRTY.isoformat(), "speed": 0}},
        "jobs": {"poll_interval_s": 0.2},
        "auth": {"mode": "optional"},
    }))
    url = f"http://127.0.0.1:{port}"
    trace = load_trace(TRACES / "DE_2020H1.csv", region="DE")
    best_t, _ = min(((t, g) for t, g in zip(trace.times, trace.intensity_g_per_kwh)
                     if DIRTY <= t < DIRTY + timedelta(hours=12)), key=lambda p: p[1])
    proc, family = _start(cfg, port)
    try:
        r = httpx.post(f"{url}/v2/models/digits/jobs", content=digits_body(2, deadline=12 * 3600),
                       headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 202, r.text
        job = r.json()
        scheduled = datetime.fromisoformat(job["scheduled_for"].replace("Z", "+00:00"))
        assert job["state"] == "scheduled" and abs((scheduled - best_t).total_seconds()) <= 1800
        assert job["expected_intensity_g_per_kwh"] < trace.intensity_g_per_kwh[trace.index_at(DIRTY)]
        assert httpx.post(f"{url}/v2/models/digits/jobs", content=b"[1, 2", timeout=30).status_code == 400
        assert httpx.get(f"{url}/v2/jobs/no-such-job", timeout=30).status_code == 404
        _deferred_by_budget(url)
        time.sleep(1.0)  # a few runner passes: not due at the dirty hour
        assert httpx.get(f"{url}/v2/jobs/{job['id']}", timeout=30).json()["state"] == "scheduled"

        _stop(proc, family)  # the gateway restarts while the job is scheduled
        proc, family = _start(cfg, port)
        kept = httpx.get(f"{url}/v2/jobs/{job['id']}", timeout=30).json()
        assert (kept["state"], kept["scheduled_for"]) == ("scheduled", job["scheduled_for"])

        r = httpx.put(f"{url}/v2/admin/intensity/clock", json={"at": job["scheduled_for"], "speed": 0}, timeout=30)
        assert r.status_code == 200
        deadline = time.time() + 60
        while time.time() < deadline:
            shown = httpx.get(f"{url}/v2/jobs/{job['id']}", timeout=30).json()
            if shown["state"] != "scheduled" and shown["state"] != "running":
                break
            time.sleep(0.3)
        assert shown["state"] == "done", shown
        assert shown["results"][0]["outputs"][1]["shape"] == [2]
        assert shown["totals"]["counterfactual_carbon_g"] > shown["totals"]["carbon_g"] > 0
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert 'wattgate_jobs{state="done"} 1' in metrics and "wattgate_shift_carbon_avoided_grams_total" in metrics
    finally:
        _stop(proc, family)
    with EnergyLedger(tmp_path / "var" / "ledger.sqlite", background=False) as ledger:
        row = {j.job_id: j for j in ledger.jobs()}[job["id"]]
        assert (row.state, row.decision, row.scheduled_for) == ("done", "shifted", job["scheduled_for"])
        assert row.counterfactual_carbon_g > row.carbon_g > 0
        assert f"{job['id']}-0" in {r.request_id for r in ledger.records(limit=None)}
