"""The operators' view against real parts: a live gateway (Ray Serve, Redis; auth required, two
tenants, one autoscaled Ray pool) under load, the real ``prometheus`` and ``promtool`` scraping it
and the Ray node's own metrics, and Debian's headless chromium loading /dashboard as the admin and
as one tenant.

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

from gateway.cli import ray_metrics_port
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
ADMIN_KEY = "ops-admin-key-for-tests"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
# One pool, a Serve deployment the carbon-aware policy sizes (1-2 replicas): its replicas, idle energy
# and scaling decisions reach the dashboard and Grafana. One is enough on a 2-vCPU machine.
TOPOLOGY = {
    "client_regions": ["GB"],
    "pools": [{"name": "gb-ray", "region": "GB", "hardware": "arm", "capacity_rps": 200, "service_ms": 4,
               "rtt_ms": {"GB": 2}, "energy": {"*": {"idle_w": 0.47, "dynamic_j": 0.0061}},
               "autoscaling": {"min_replicas": 1, "max_replicas": 2, "initial_replicas": 1, "startup_s": 5,
                               "downscale_delay_s": 5}}],
}


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository, redis, tmp_path_factory):
    state = tmp_path_factory.mktemp("ops-state")
    (state / "topology.yaml").write_text(yaml.safe_dump(TOPOLOGY))
    settings = load_settings(
        None,
        models={"repository": str(digits_repository), "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.005}},
        server={"state_dir": str(state), "admin_api_key": ADMIN_KEY},
        auth={"mode": "required"},
        cache={"url": redis.url, "default_ttl_s": 600, "breaker_backoff_s": 0.2, "breaker_max_backoff_s": 0.5},
        intensity={"provider": "static"},
        budgets={"models_g": {"digits": 5e-4}, "period_s": 86400},
        routing={"topology_file": str(state / "topology.yaml"), "policy": "lowest-carbon"},
        pools={"gb-ray": {"kind": "ray", "num_cpus": 0.25}},
    )
    return deploy(settings)


@pytest.fixture(scope="module")
def keys(gateway) -> dict[str, str]:
    """An API key each for tenants acme and globex, made through the admin API."""
    out = {}
    for tenant in ("acme", "globex"):
        r = httpx.post(f"{gateway}/v2/admin/keys", json={"tenant": tenant, "budget_g": 1000.0}, headers=ADMIN, timeout=10)
        assert r.status_code in (200, 201), r.text
        out[tenant] = r.json()["key"]
    return out


@pytest.fixture(scope="module")
def load(gateway, keys):
    """Requests in the background for the module's life, two in three from acme and one from globex:
    10 repeated inputs (cache hits) and fresh ones."""
    pixels = load_digits().data.astype(np.float32)
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}

    def run():
        rng = np.random.default_rng(0)
        with httpx.Client(base_url=gateway, timeout=10) as client:
            while not stop.is_set():
                i = int(rng.integers(0, 10)) if rng.random() < 0.6 else int(rng.integers(10, len(pixels)))
                body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": pixels[i].tolist()}]}
                key = keys["globex"] if rng.random() < 1 / 3 else keys["acme"]
                try:
                    ok = client.post("/v2/models/digits/infer", json=body,
                                     headers={"authorization": f"Bearer {key}"}).status_code == 200
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
                            "static_configs": [{"targets": [gateway.removeprefix("http://")]}]},
                           # The session's Ray node, started by this process: its metrics agent's port.
                           {"job_name": "ray", "metrics_path": "/metrics",
                            "static_configs": [{"targets": [f"127.0.0.1:{ray_metrics_port()}"]}]}],
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
          "cache_hit_rate", "energy_avoided", "slo_attainment", "p99_ms", "budget_use", "tenant_j_per_1k",
          "pool_replicas_idle")
# What a tenant's own view fills; the shared parts say they are the operators'.
TENANT_FILLED = ("j_per_1k", "g_per_1k", "intensity", "traffic_share", "route_reasons", "slo_attainment", "p99_ms",
                 "budget_use", "tenant_j_per_1k")
TENANT_PENDING = ("cache_hit_rate", "energy_avoided", "pool_replicas_idle")
_PANEL_STATE = ("const out = {}; for (const s of document.querySelectorAll('section[id^=panel-]'))"
                " out[s.id.slice(6)] = [s.dataset.nonzero || null, Number(s.dataset.points || 0), s.dataset.pending || null];"
                " return out;")


def _open_with_key(driver, gateway: str, key: str, panels: tuple[str, ...]) -> dict:
    """Load /dashboard, type the key into its field as a person would, wait until ``panels`` fill."""
    driver.get(f"{gateway}/dashboard")
    field = driver.find_element("css selector", "label[for=key]")  # the field has a visible label
    assert "API key" in field.text
    driver.find_element("id", "key").send_keys(key)
    driver.find_element("css selector", "#key-form button[type=submit]").click()
    assert driver.execute_script("return document.getElementById('key').value") == ""  # not left in the page
    deadline = time.time() + 90
    state = {}
    while time.time() < deadline:
        state = driver.execute_script(_PANEL_STATE)
        if all(state.get(p, [None, 0])[0] == "true" and state[p][1] >= 3 for p in panels):
            break
        time.sleep(1)
    assert all(state.get(p, [None])[0] == "true" for p in panels), state
    return state


def test_dashboard_fills_in_a_headless_browser(gateway, load):
    if shutil.which("chromedriver") is None:
        pytest.fail("no chromedriver: apt-get install chromium chromium-driver (.ci/run does)")
    driver = _chromium()
    try:
        driver.get(f"{gateway}/dashboard")
        deadline = time.time() + 30  # without a key the data is refused, and the page says so
        while "401" not in driver.find_element("id", "status").text and time.time() < deadline:
            time.sleep(0.5)
        assert "data unavailable: 401" in driver.find_element("id", "status").text
        _open_with_key(driver, gateway, ADMIN_KEY, FILLED)
        # Every chart is a real uPlot with points drawn, the autoscaled pool's among them.
        assert driver.execute_script("return Object.keys(window.wattgateCharts).length") == len(FILLED)
        assert "gb-ray replicas" in driver.find_element("id", "panel-pool_replicas_idle").text
        tenants = driver.find_element("id", "panel-tenant_j_per_1k").text
        assert "acme" in tenants and "globex" in tenants  # the operators see every tenant
        assert driver.find_element("id", "view").text.startswith("operators' view")
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


def test_a_tenants_key_shows_only_its_own_data_in_the_browser(gateway, keys, load):
    acme = {"authorization": f"Bearer {keys['acme']}"}
    assert httpx.get(f"{gateway}/dashboard/data", timeout=10).status_code == 401
    assert httpx.get(f"{gateway}/dashboard/data?tenant=globex", headers=acme, timeout=10).status_code == 403
    driver = _chromium()
    try:
        state = _open_with_key(driver, gateway, keys["acme"], TENANT_FILLED)
        assert all(state.get(p, [None, 0, None])[2] == "true" for p in TENANT_PENDING), state
        assert driver.find_element("id", "view").text.startswith("tenant acme")
        assert "acme" in driver.find_element("id", "panel-tenant_j_per_1k").text
        # Nowhere on the page, in no chart's series: the other tenant's name.
        page = driver.execute_script("return document.documentElement.outerHTML")
        labels = driver.execute_script(
            "return Object.values(window.wattgateCharts).flatMap(c => c.plot.series.map(s => String(s.label)))")
        assert "globex" not in page and not [x for x in labels if "globex" in x], labels
        # The key stays in this tab's sessionStorage: a reload keeps the tenant's view, and no more.
        driver.refresh()
        deadline = time.time() + 30
        while not driver.find_element("id", "view").text and time.time() < deadline:
            time.sleep(0.5)
        assert driver.find_element("id", "view").text.startswith("tenant acme")
    finally:
        driver.quit()


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
        assert len(panels) >= 25 and sum(1 for _, e in panels if "ray_serve_" in e) >= 6
        # Ray's metrics agent reports every few seconds: ask again until each query has data, bounded.
        deadline = time.time() + 90
        empty = panels
        while empty and time.time() < deadline:
            empty = [(title, expr) for title, expr in empty if not _query(prometheus, expr)]
            if empty:
                time.sleep(3)
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
