"""Tenants through a real gateway (Ray Serve, HAProxy, two ingress replicas, a real redis-server):
401/403/429, limits shared across replicas, the tenant in the ledger and in `ledger summary --by
tenant`, keys that survive a restart, budget actions in order, and schemathesis with auth off and on."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from energy.ledger import EnergyLedger
from wattgate.net import free_port
from wattgate.settings import load_settings

pytestmark = pytest.mark.integration

ADMIN = {"authorization": "Bearer admin-secret-for-tests"}
BODY = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
ST = str(Path(sys.executable).with_name("schemathesis"))


def settings_for(repo, state, replicas=2, **auth):
    return load_settings(
        None, models={"repository": str(repo)}, cache={"enabled": False}, intensity={"provider": "static"},
        server={"state_dir": str(state), "ingress_replicas": replicas, "ingress_num_cpus": 0.25,
                "admin_api_key": ADMIN["authorization"][7:] if auth.get("mode", "off") != "off" else None},
        energy={"ledger_flush_interval_s": 0.2}, auth=auth,
    )


def schemathesis(url: str, *headers: str) -> subprocess.CompletedProcess:
    """A bounded run: every operation, a few examples each; fails on any 5xx or a response off the schema."""
    args = [ST, "run", f"{url}/v2/openapi.json", "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples", "8", "--phases", "examples,coverage,fuzzing", "--seed", "16", "--request-timeout", "20",
            "--generation-deterministic", "--continue-on-failure"]
    for h in headers:
        args += ["--header", h]
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as scratch:  # schemathesis keeps a cache in its working directory
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=scratch)
    print(f"schemathesis {'with' if headers else 'without'} a key: {time.monotonic() - started:.0f} s\n", proc.stdout[-3000:])
    return proc


# Tenant a's flood, from its own process (not this one's GIL): two keep-alive connections, which
# HAProxy places on the two ingress replicas, as fast as the gateway answers.
FLOOD = """
import json, sys, threading, time, httpx
url, key, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
codes, retry = [], []
def run():
    end = time.monotonic() + seconds
    with httpx.Client() as c:
        while time.monotonic() < end:
            r = c.post(url + "/v2/models/digits/infer", json=body, headers={"authorization": "Bearer " + key})
            codes.append(r.status_code)
            if r.status_code == 429:
                retry.append(int(r.headers["retry-after"]))
threads = [threading.Thread(target=run) for _ in range(2)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps({"codes": codes, "retry_after": retry}))
"""


def infer(client, url, key=None, **params):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return client.post(f"{url}/v2/models/digits/infer", json={**BODY, "parameters": params}, headers=headers)


def test_open_gateway_meets_its_contract(deploy, digits_repository, tmp_path_factory):
    repo = tmp_path_factory.mktemp("fuzzed-repo") / "r"
    shutil.copytree(digits_repository, repo)  # the fuzzer may unload, retire or register models here
    url = deploy(settings_for(repo, tmp_path_factory.mktemp("open"), replicas=1))
    doc = httpx.get(f"{url}/v2/openapi.json").json()
    assert doc["openapi"] == "3.1.0" and "/v2/admin/keys" in doc["paths"]
    proc = schemathesis(url)
    assert proc.returncode == 0, proc.stdout[-6000:]


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    return tmp_path_factory.mktemp("tenants")


@pytest.fixture(scope="module")
def keys(deploy, digits_repository, state, redis):
    url = deploy(settings_for(digits_repository, state, mode="required", redis_url=redis.url))
    made = {}
    for name, limits in {"a": {"tenant": "team-a", "rps": 2, "burst": 2, "models": ["digits"]},
                         "b": {"tenant": "team-b", "models": ["no-such-model"]},
                         "c": {"tenant": "team-c"}, "r": {"tenant": "team-r"}}.items():
        r = httpx.post(f"{url}/v2/admin/keys", json=limits, headers=ADMIN)
        assert r.status_code == 201, r.text
        made[name] = r.json()
    assert httpx.post(f"{url}/v2/admin/keys/{made['r']['key_id']}/revoke", headers=ADMIN).status_code == 200
    return url, made


def test_required_mode_answers_401_403_and_ignores_x_tenant(keys):
    url, made = keys
    with httpx.Client() as c:
        assert infer(c, url).status_code == 401
        assert infer(c, url, "wg_000000000000_" + "A" * 43).status_code == 401
        assert c.post(f"{url}/v2/models/digits/infer", json=BODY, headers={"authorization": "Bearer " + "x" * 500}).status_code == 401
        time.sleep(1.2)  # the other replica re-reads the store within a second of the fixture's revoke
        assert httpx.get(f"{url}/v2/admin/keys/{made['r']['key_id']}", headers=ADMIN).json()["active"] is False
        for _ in range(4):
            r = infer(c, url, made["r"]["key"])
            assert r.status_code == 401 and "revoked" in r.json()["error"]
        r = infer(c, url, made["b"]["key"])
        assert r.status_code == 403 and made["b"]["key"] not in r.text
        r = c.post(f"{url}/v2/models/digits/infer", json=BODY,
                   headers={"authorization": f"Bearer {made['c']['key']}", "x-tenant": "team-a"})
        assert r.status_code == 200 and r.json()["parameters"]["tenant"] == "team-c"
        assert c.patch(f"{url}/v2/admin/keys/{made['c']['key_id']}", content=b'{"budget_g": NaN}', headers=ADMIN).status_code == 400
        assert c.patch(f"{url}/v2/admin/keys/{made['c']['key_id']}", json={"budget_g": -1}, headers=ADMIN).status_code == 400


def test_rate_limit_holds_across_two_replicas_while_another_tenant_is_served(keys):
    url, made = keys
    # Tenant c alone, then while tenant a floods past its 2 requests/s.
    def rate_of_c(seconds: float) -> float:
        n, end = 0, time.monotonic() + seconds
        with httpx.Client() as c:
            while time.monotonic() < end:
                assert infer(c, url, made["c"]["key"]).status_code == 200
                n += 1
        return n / seconds

    alone = rate_of_c(3.0)

    started = time.monotonic()
    flooder = subprocess.Popen([sys.executable, "-c", FLOOD, url, made["a"]["key"], "3.5"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    shared = rate_of_c(3.0)
    codes_and_retry = json.loads(flooder.communicate(timeout=60)[0])
    elapsed = time.monotonic() - started
    codes, retry_after = codes_and_retry["codes"], codes_and_retry["retry_after"]
    ok = codes.count(200)
    held = [line for line in httpx.get(f"{url}/metrics").text.splitlines() if line.startswith("wattgate_refusals_held_total")]
    print(f"tenant c alone {alone:.1f} req/s, with a's flood {shared:.1f} req/s: ratio {shared / alone:.2f}; "
          f"a: {ok} admitted of {len(codes)} in {elapsed:.1f} s; {held}")
    assert codes.count(429) > 0 and retry_after and min(retry_after) >= 1
    assert ok <= 2 + 2 * elapsed + 1  # one bucket for both replicas (two would admit about twice this)
    # Tenant c is never refused (rate_of_c asserts 200s) while a is held to its rate. c's throughput is
    # measured and printed, not asserted: on this 2-vCPU machine the flooding client, HAProxy, Serve's
    # proxy and both replicas share the cores. Each of a's refusals is held for its Retry-After (at most
    # auth.refusal_hold_max_s, 1 s; tenants/hold.py), so a's two connections send ~2 requests/s, not
    # hundreds; README "Tenants and security" has the ratios measured with the hold on and off
    # (WATTGATE_AUTH_REFUSAL_HOLD_MAX_S=0).
    assert shared > 0


def test_tenant_is_on_ledger_rows_and_in_the_summary(keys, state, capsys):
    from wattgate.cli import main

    time.sleep(1.0)  # the replicas' ledger writers flush every 0.2 s
    with EnergyLedger(state / "ledger.sqlite", background=False) as ledger:
        rows = {r["tenant"]: r for r in ledger.totals(group_by=["tenant"])}
    assert {"team-a", "team-c"} <= set(rows) and "team-b" not in rows and "team-r" not in rows
    assert main(["ledger", "summary", "--db", str(state / "ledger.sqlite"), "--by", "tenant", "--json",
                 "--period", time.strftime("%Y-%m", time.gmtime())]) == 0
    summary = {r["tenant"]: r for r in json.loads(capsys.readouterr().out)["requests"]}
    assert summary["team-c"]["requests"] == rows["team-c"]["requests"] > 0 and summary["team-c"]["carbon_g"] > 0


def test_grpc_needs_the_key_too(keys, grpc_port):
    import grpc
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    url, made = keys
    client = triton.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    inp = triton.InferInput("pixels", [1, 64], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 64), np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("digits", [inp])
    assert info.value.status() == str(grpc.StatusCode.UNAUTHENTICATED)
    result = client.infer("digits", [inp], headers={"authorization": f"Bearer {made['c']['key']}"})
    assert result.get_response().parameters["tenant"].string_param == "team-c"


def test_contract_holds_with_auth_on(keys):
    url, made = keys
    proc = schemathesis(url, f"Authorization: Bearer {made['c']['key']}")
    assert proc.returncode == 0, proc.stdout[-6000:]


class _Webhook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        self.received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_keys_survive_a_restart_and_budget_actions_fire_in_order(keys, deploy, digits_repository, state, redis):
    url, made = keys
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # A restart: new settings, new replicas, the same state directory.
    url = deploy(settings_for(digits_repository, state, replicas=1, mode="required", redis_url=redis.url,
                              budgets={"webhook_url": f"http://127.0.0.1:{port}/alerts"}))
    with httpx.Client() as c:
        assert infer(c, url, made["r"]["key"]).status_code == 401  # still revoked
        recent = [infer(c, url, made["c"]["key"]).json()["parameters"] for _ in range(20)]
        per_request_g = float(np.median([p["carbon_g"] for p in recent]))  # the first carries the idle time before it
        # A new tenant with a budget of about 40 such requests a day.
        r = c.post(f"{url}/v2/admin/keys", json={"tenant": "team-d", "budget_g": 40 * per_request_g, "budget_period": "day"},
                   headers=ADMIN)
        assert r.status_code == 201
        key_d = r.json()["key"]
        actions, deferred = [], None
        for _ in range(400):
            r = infer(c, url, key_d)
            if r.status_code == 429:
                actions.append("reject")
                assert "carbon budget" in r.json()["error"] and int(r.headers["retry-after"]) >= 1
                break
            p = r.json()["parameters"]
            actions.append(p["budget_action"])
            if p["budget_used_ratio"] >= 0.9 and deferred is None:
                d = infer(c, url, key_d, deferrable=True)
                deferred = d.status_code
    print("budget actions:", actions, "deferrable at >= 90 %:", deferred)
    order = {"ok": 0, "cheaper-variant": 1, "reject": 3}
    assert actions[-1] == "reject" and "ok" in actions and "cheaper-variant" in actions
    assert [order[a] for a in actions] == sorted(order[a] for a in actions)
    # The defer level hands deferrable work to the jobs API: 202 and a job (test_jobs_integration.py runs one).
    assert deferred in (202, None)
    time.sleep(1.0)
    levels = [a["level"] for a in _Webhook.received if a["tenant"] == "team-d"]
    assert levels == [0.5, 0.8, 1.0]
    server.shutdown()
