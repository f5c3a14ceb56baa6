"""The operators' view against real parts: a live gateway (Ray Serve, Redis) under load, the real
``prometheus`` and ``promtool`` scraping it, and Debian's headless chromium loading /dashboard.

Order matters inside this module: the browser runs under load first, then Redis is stopped so the
cache-bypass alert has something to fire on, then every Grafana panel query and every alert
expression is asked of Prometheus.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from sklearn.datasets import load_digits

from tests.conftest import free_port
from wattgate.settings import load_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "deploy" / "grafana" / "wattgate.json"
# The README's screenshot is refreshed only when asked (WATTGATE_UPDATE_SCREENSHOT=1): a test run
# otherwise leaves the checkout as it found it, and writes its screenshot to a scratch folder.
SCREENSHOT = ROOT / "docs" / "dashboard.png"
_COMPARISON = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*[0-9.eE+-]+\s*$")
# Alerts this load must set off: the budgets are tiny, and Redis is stopped before Prometheus is asked.
MUST_FIRE = {"WattgateCarbonBudget80", "WattgateCarbonBudget100", "WattgateCacheBypass"}


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository, redis, tmp_path_factory):
    settings = load_settings(
        None,
        models={"repository": str(digits_repository), "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.005}},
        server={"state_dir": str(tmp_path_factory.mktemp("ops-state"))},
        cache={"url": redis.url, "default_ttl_s": 600, "breaker_backoff_s": 0.2, "breaker_max_backoff_s": 0.5},
        intensity={"provider": "static"},
        budgets={"models_g": {"digits": 5e-4}, "period_s": 86400},
    )
    return deploy(settings)


@pytest.fixture(scope="module")
def load(gateway):
    """Requests in the background for the module's life: 10 repeated inputs (cache hits) and fresh ones."""
    pixels = load_digits().data.astype(np.float32)
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}

    def run():
        rng = np.random.default_rng(0)
        with httpx.Client(base_url=gateway, timeout=10) as client:
            while not stop.is_set():
                i = int(rng.integers(0, 10)) if rng.random() < 0.6 else int(rng.integers(10, len(pixels)))
                body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": pixels[i].tolist()}]}
                try:
                    ok = client.post("/v2/models/digits/infer", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                counts["ok" if ok else "failed"] += 1
                time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield counts
    stop.set()
    thread.join(timeout=15)


@pytest.fixture(scope="module")
def prometheus(gateway, load, tmp_path_factory):
    if shutil.which("prometheus") is None:
        pytest.fail("no prometheus binary: apt-get install prometheus (.ci/run does)")
    tmp = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [{"job_name": "wattgate", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [gateway.removeprefix("http://")]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(tmp / "prometheus.log", "wb")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail(f"prometheus did not start: {(tmp / 'prometheus.log').read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1450"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)


# Panels the load above must fill with non-zero values (budget use: the 0.5 mg budget is soon spent).
FILLED = ("j_per_1k", "g_per_1k", "intensity", "intensity_forecast", "traffic_share", "route_reasons",
          "cache_hit_rate", "energy_avoided", "slo_attainment", "p99_ms", "budget_use")


def test_dashboard_fills_in_a_headless_browser(gateway, load):
    if shutil.which("chromedriver") is None:
        pytest.fail("no chromedriver: apt-get install chromium chromium-driver (.ci/run does)")
    driver = _chromium()
    try:
        driver.get(f"{gateway}/dashboard")
        deadline = time.time() + 90
        state = {}
        while time.time() < deadline:
            state = driver.execute_script(
                "const out = {}; for (const s of document.querySelectorAll('section[id^=panel-]'))"
                " out[s.id.slice(6)] = [s.dataset.nonzero, Number(s.dataset.points || 0)]; return out;")
            if all(state.get(p, [None, 0])[0] == "true" and state[p][1] >= 3 for p in FILLED):
                break
            time.sleep(1)
        assert all(state.get(p, [None])[0] == "true" for p in FILLED), state
        # Every chart is a real uPlot with points drawn, and the pending pool panel says so.
        assert driver.execute_script("return Object.keys(window.wattgateCharts).length") == len(FILLED)
        assert "Not exported" in driver.find_element("id", "panel-pool_replicas_idle").text
        assert driver.find_element("id", "status").text.startswith("policy lowest-carbon")
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1400, height + 200)  # the whole page in the screenshot, browser chrome aside
        time.sleep(2)
        shot = SCREENSHOT if os.environ.get("WATTGATE_UPDATE_SCREENSHOT") == "1" else Path(tempfile.mkdtemp()) / "dashboard.png"
        shot.parent.mkdir(exist_ok=True)
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 0
    finally:
        driver.quit()
    assert load["ok"] > 50


def _query(prom: str, expr: str) -> list:
    doc = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert doc["status"] == "success", (expr, doc)
    return doc["data"]["result"]


def _panel_queries() -> list[tuple[str, str]]:
    doc = json.loads(GRAFANA.read_text())
    return [(p["title"], t["expr"].replace("$__rate_interval", "1m"))
            for p in doc["panels"] for t in p.get("targets", [])]


def _alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules_and_the_example_config():
    for args in (["check", "rules", str(ALERTS)], ["check", "config", str(ALERTS.parent / "prometheus.yml")]):
        out = subprocess.run(["promtool", *args], capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr


def test_every_panel_and_alert_returns_data_from_a_live_gateway(gateway, load, redis, prometheus):
    time.sleep(20)  # scrapes of the loaded gateway (the browser test ran under the same load)
    redis.stop()  # the cache goes away: requests bypass it, as when Redis is down in production
    try:
        deadline = time.time() + 90
        pending = set(MUST_FIRE)
        while pending and time.time() < deadline:
            time.sleep(2)
            alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
            pending -= {a["labels"]["alertname"] for a in alerts if a["state"] in ("pending", "firing")}
        assert not pending, f"these alerts should be pending or firing under this load: {pending}"

        panels = _panel_queries()
        assert len(panels) >= 15
        empty = [(title, expr) for title, expr in panels if not _query(prometheus, expr)]
        assert not empty, f"panel queries with no data: {empty}"

        rules = _alert_rules()
        assert len(rules) >= 10
        for rule in rules:
            expr = " ".join(rule["expr"].split())
            bare, n = _COMPARISON.subn("", expr)
            assert n == 1, f"{rule['alert']}: expression must end in one comparison with a number: {expr}"
            result = _query(prometheus, bare)
            assert result, f"{rule['alert']}: {bare} returns no data"
            assert all(np.isfinite(float(r["value"][1])) for r in result), (rule["alert"], result)
        active = {a["labels"]["alertname"] for a in httpx.get(f"{prometheus}/api/v1/alerts").json()["data"]["alerts"]}
        # Pools, intensity and the scrape are fine here: those alerts must stay quiet.
        assert not active & {"WattgatePoolDown", "WattgateIntensityStale", "WattgateDown"}, active
    finally:
        redis.start()
    assert load["ok"] > 200
