"""The report's pieces without a load run: ledger windows, locust CSV parsing, table, plot, CPU accounting."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest

from energy.ledger import EnergyLedger, LedgerRecord
from loadtests.locust_csv import aggregated, read_history, read_stats
from loadtests.plots import plot_loadtest
from loadtests.procs import ProcessTreeCpu, ServerProcess
from loadtests.report import LoadReport, read_ledger, render_table
from loadtests.runner import ledger_path_of
from wattgate.settings import load_settings


def _record(t: float, pool: str = "local", cache: str = "miss", energy_j: float = 0.01) -> LedgerRecord:
    return LedgerRecord(
        time_s=t, request_id=f"r{t}", model="digits", version="1", variant="fp32", region="FR", hardware="x86", pool=pool,
        batch_size=1, latency_ms=2.0, energy_j=energy_j, energy_method="cpu-time-model", energy_measured=False,
        intensity_g_per_kwh=50.0, carbon_g=energy_j * 1e-5, operational_g=energy_j * 1e-5, embodied_g=0.0, cache=cache,
    )


def test_read_ledger_keeps_only_the_runs_window(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with EnergyLedger(path, background=False) as ledger:
        ledger.append(_record(99.0, energy_j=5.0))  # before the run
        for i in range(10):
            ledger.append(_record(100.0 + i * 0.3, pool="fr-x86" if i < 7 else "de-x86", cache="hit" if i % 2 else "miss"))
        ledger.append(_record(200.0, energy_j=5.0))  # after it
    s = read_ledger(path, since_s=100.0, until_s=110.0)
    assert s.requests == 10 and s.energy_j == pytest.approx(0.1) and s.carbon_g == pytest.approx(1e-6)
    assert s.by_pool == {"fr-x86": 7, "de-x86": 3} and s.by_cache == {"miss": 5, "hit": 5}
    assert s.methods == {"cpu-time-model": 10}
    assert [b[:2] for b in s.buckets] == [(100, 4), (101, 3), (102, 3)]
    assert read_ledger(path, since_s=300.0, until_s=400.0) is None


def test_read_ledger_never_creates_a_file(tmp_path):
    assert read_ledger(tmp_path / "absent.sqlite", 0, 1) is None
    assert not (tmp_path / "absent.sqlite").exists()


def test_ledger_path_follows_state_dir_like_the_gateway(tmp_path):
    s = load_settings(None, server={"state_dir": str(tmp_path)}, energy={"ledger_path": "l.sqlite"})
    assert ledger_path_of(s) == tmp_path / "l.sqlite"
    s = load_settings(None, energy={"ledger_path": str(tmp_path / "abs.sqlite")})
    assert ledger_path_of(s) == tmp_path / "abs.sqlite"


STATS = """Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%
POST,digits:fp32 json steady,90,0,4,5.1,1,40,300,9.0,0.0,4,5,6,6,8,12,20,30,40,40,40
POST,bad-input not-json,10,2,1,1.2,0,3,30,1.0,0.2,1,1,1,1,2,3,3,3,3,3,3
,Aggregated,100,2,4,4.7,0,40,273,10.0,0.2,4,5,6,6,8,11,19,29,40,40,40
"""
HISTORY = """Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size
1000,0,,Aggregated,0.000000,0.000000,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,0,0,0,0.0,0,0,0
1001,4,,Aggregated,9.5,0.0,4,5,6,6,8,11,19,29,40,40,40,10,0,4,4.7,0,40,273
"""


def test_locust_csv_parsing(tmp_path):
    (tmp_path / "run_stats.csv").write_text(STATS)
    (tmp_path / "run_stats_history.csv").write_text(HISTORY)
    rows = read_stats(tmp_path / "run")
    total = aggregated(rows)
    assert (total.requests, total.failures, total.p50_ms, total.p95_ms, total.p99_ms) == (100, 2, 4.0, 11.0, 29.0)
    assert [r.name for r in rows[:2]] == ["digits:fp32 json steady", "bad-input not-json"]
    hist = read_history(tmp_path / "run")
    assert math.isnan(hist[0].p50_ms) and hist[1].users == 4 and hist[1].total_requests == 10


def _report(**change) -> LoadReport:
    base = dict(scenario="steady: SteadyUser", url="http://x", users=4, started_at_s=1000.0, duration_s=10.0, requests=100,
                failures=2, requests_per_s=10.0, p50_ms=4.0, p95_ms=11.0, p99_ms=29.0, error_rate=0.02, cache_hit_rate=None,
                j_per_1k=None, g_per_1k=None, pool_share={}, energy_methods={}, sources={"latency": "locust", "energy": None},
                timeseries=[{"time_s": 1000 + i, "users": 4, "requests_per_s": 10.0, "p50_ms": 4.0, "p95_ms": 9.0, "p99_ms": 12.0,
                             "j_per_1k": None if i == 0 else 7.0} for i in range(5)])
    return LoadReport(**(base | change))


def test_table_shows_every_figure_and_says_when_one_is_missing(tmp_path):
    text = render_table(_report(notes=["no energy figures"]))
    for label in ("requests/s", "latency p50 / p95 / p99", "error rate", "cache hit rate", "J / 1,000 requests",
                  "gCO2e / 1,000 requests", "share by pool"):
        assert label in text
    assert "4 / 11 / 29 ms" in text and "2.00 %" in text and text.count("n/a") == 4 and "note: no energy figures" in text
    full = render_table(_report(cache_hit_rate=0.25, j_per_1k=7.5, g_per_1k=0.002, pool_share={"fr-x86": 0.75, "de-x86": 0.25},
                                energy_methods={"rapl": 100}, sources={"energy": "ledger", "cache": "/metrics", "pool": "ledger"}))
    assert "25.0 %" in full and "7.5" in full and "fr-x86 75.0 %, de-x86 25.0 %" in full and "method: rapl" in full
    png = plot_loadtest(_report().to_dict(), tmp_path / "r.png")
    assert png.stat().st_size > 10_000
    assert plot_loadtest(_report(timeseries=[]).to_dict(), tmp_path / "none.png") is None


def test_report_json_has_no_nan():
    doc = _report(p99_ms=math.nan).to_dict()
    assert doc["p99_ms"] is None and doc["timeseries"][0]["j_per_1k"] is None


def test_process_tree_cpu_counts_children(tmp_path):
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.6: pass\ntime.sleep(30)"
    server = ServerProcess([sys.executable, "-c", f"import subprocess,sys,time; subprocess.Popen([sys.executable,'-c',{burn!r}]); time.sleep(30)"],
                           tmp_path / "burn.log")
    try:
        time.sleep(0.2)
        cpu = ProcessTreeCpu(server.pid)
        cpu.start()
        deadline = time.time() + 10
        while cpu.seconds() < 0.4 and time.time() < deadline:
            time.sleep(0.1)
        assert cpu.processes() == 2
        assert 0.4 <= cpu.seconds() < 1.5
    finally:
        server.stop(grace_s=2)
    assert server.proc.returncode is not None
    alive = subprocess.run(["ps", "-o", "stat=", "-s", str(server.pid)], capture_output=True, text=True).stdout.split()
    assert all(stat.startswith("Z") for stat in alive)  # killed; at most waiting for init to reap it
