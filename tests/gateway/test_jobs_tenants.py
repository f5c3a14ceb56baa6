"""Jobs and tenants through the HTTP layer over a real data plane (no Ray): a job runs, is ledgered and
spends the budget as its tenant; only its tenant (or the admin) sees it; a deferrable request past its
tenant's defer level becomes a job (202) instead of a refusal, and a plain request keeps the old actions."""

from __future__ import annotations

import json
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.admin import AdminApi
from gateway.auth import AdminAuth
from gateway.http import HttpApi
from gateway.jobs_api import deferred_response, jobs_routes
from jobs.assembly import build_jobs
from jobs.store import JobStore
from tenants.keys import KeyLimits
from wattgate.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from jobs_fakes import DIRTY, TRACES, digits_body  # noqa: E402

ADMIN_KEY = "admin-secret-for-tests"
FAR = "10.9.8.7"  # not loopback: only keys say who calls


def gateway(make_plane, tmp_path, intensity=None, **auth):
    parts = make_plane(
        routing={"topology_file": str(tmp_path / "none.yaml")},
        server={"region": "DE", "state_dir": str(tmp_path / "state"), "admin_api_key": ADMIN_KEY},
        intensity=intensity or {"provider": "static"}, auth={"mode": "optional", **auth},
        energy={"ledger_flush_interval_s": 0.01},
    )
    jobs = build_jobs(parts)

    async def metrics_text() -> str:
        return ""

    api = HttpApi(parts.dataplane, AdminApi(parts.host.registry, parts.host), metrics_text,
                  jobs_routes(jobs.service, parts.gate, AdminAuth(parts.settings.server)), gate=parts.gate,
                  audit=parts.audit, defer=deferred_response(jobs.service))
    return parts, jobs, api


async def call(api, method, path, body=b"", key=None, client=FAR, query=""):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    status, out_headers, out = await api.handle(method, path, headers, body, client, query)
    return status, out_headers, json.loads(out)


def key_for(parts, tenant, **limits):
    _, key = parts.keys.create(tenant, KeyLimits(**limits))
    return key


async def spend(parts, api, key, ratio):
    """Serve one request as the key's tenant, then set its budget so that what it spent is ``ratio`` of it."""
    key_id = key.split("_")[1]
    parts.keys.update_limits(key_id, {"budget_g": 1e9})
    parts.keys.records(force=True)
    status, _, doc = await call(api, "POST", "/v2/models/digits/infer", digits_body(), key)
    assert status == 200, doc
    parts.ledger_sink.ledger.flush()  # budgets read what was spent from the ledger
    spent_g = parts.ledger_sink.ledger.tenant_carbon_g(doc["parameters"]["tenant"], 0.0)
    parts.keys.update_limits(key_id, {"budget_g": spent_g / ratio})
    parts.keys.records(force=True)


async def test_a_job_is_its_tenants_alone_and_runs_as_that_tenant(make_plane, tmp_path):
    parts, jobs, api = gateway(make_plane, tmp_path)
    a, b = key_for(parts, "team-a", budget_g=1000.0), key_for(parts, "team-b")
    status, headers, job = await call(api, "POST", "/v2/models/digits/jobs", digits_body(deadline=3600), a)
    assert status == 202 and job["tenant"] == "team-a" and headers["location"] == f"/v2/jobs/{job['id']}"
    _, _, job_b = await call(api, "POST", "/v2/models/digits/jobs", digits_body(deadline=3600), b)
    path = f"/v2/jobs/{job['id']}"

    # Another tenant, or no tenant, gets the same 404 as an unknown id; the owner and the admin see it.
    unknown = await call(api, "GET", "/v2/jobs/0123456789abcdef0123456789abcdef", key=b)
    for who in (b, None):
        status, _, doc = await call(api, "GET", path, key=who)
        assert (status, doc["error"].replace(job["id"], "X")) == (404, unknown[2]["error"].replace(
            "0123456789abcdef0123456789abcdef", "X"))
        assert (await call(api, "DELETE", path, key=who))[0] == 404
    assert (await call(api, "GET", path, key="wg_nope_nope"))[0] == 401
    assert (await call(api, "GET", path, key=a))[2]["id"] == job["id"]
    assert (await call(api, "GET", path, key=ADMIN_KEY))[2]["tenant"] == "team-a"

    async def listed(key, query=""):
        status, _, doc = await call(api, "GET", "/v2/jobs", key=key, query=query)
        return status, sorted(j["id"] for j in doc.get("jobs", []))

    assert await listed(a) == (200, [job["id"]])
    assert await listed(b) == (200, [job_b["id"]])
    assert await listed(ADMIN_KEY) == (200, sorted([job["id"], job_b["id"]]))
    assert await listed(ADMIN_KEY, "tenant=team-b") == (200, [job_b["id"]])
    assert (await listed(a, "tenant=team-b"))[0] == 403
    assert (await listed(None))[0] == 403  # anonymous, not on loopback: no listing
    assert (await call(api, "GET", "/v2/jobs", client="127.0.0.1"))[0] == 403  # an admin key is set: loopback is not admin

    # No forecast (static intensity): due at once. Its request is served and ledgered as team-a.
    await jobs.runner.tick()
    for t in list(jobs.runner._tasks):
        await t
    assert jobs.store.get(job["id"]).state == "done"
    parts.ledger_sink.ledger.flush()
    rows = {r.request_id: r.tenant for r in parts.ledger_sink.ledger.records(limit=None)}
    assert rows == {f"{job['id']}-0": "team-a", f"{job_b['id']}-0": "team-b"}
    booked = {j.job_id: j.tenant for j in parts.ledger_sink.ledger.jobs()}  # the jobs table says whose job it was
    assert booked == {job["id"]: "team-a", job_b["id"]: "team-b"}
    status, _, shown = await call(api, "GET", path, key=a)
    assert shown["results"][0]["parameters"]["tenant"] == "team-a"
    assert shown["results"][0]["parameters"]["budget_remaining_g"] < 1000.0  # it spent team-a's budget


async def test_job_submissions_take_the_keys_rate_tokens_like_infer(make_plane, tmp_path):
    parts, jobs, api = gateway(make_plane, tmp_path, refusal_hold_max_s=0)
    slow, other = key_for(parts, "team-a", rps=0.01, burst=2), key_for(parts, "team-b")
    codes = [(await call(api, "POST", "/v2/models/digits/jobs", digits_body(deadline=3600), slow))[0] for _ in range(5)]
    assert codes == [202, 202, 429, 429, 429]  # the burst, then refused: a job flood costs the key its own quota
    status, headers, doc = await call(api, "POST", "/v2/models/digits/jobs", digits_body(deadline=3600), slow)
    assert status == 429 and float(headers["retry-after"]) > 0 and "requests/s" in doc["error"]
    assert (await call(api, "POST", "/v2/models/digits/jobs", digits_body(deadline=3600), other))[0] == 202
    assert len(jobs.store.list_jobs(tenant="team-a")) == 2  # nothing was stored for the refused ones


async def test_a_revoked_key_fails_its_scheduled_job(make_plane, tmp_path):
    parts, jobs, api = gateway(make_plane, tmp_path)
    key = key_for(parts, "team-a")
    _, _, job = await call(api, "POST", "/v2/models/digits/jobs", digits_body(deadline=3600), key)
    parts.keys.revoke(job_key_id := jobs.store.get(job["id"]).key_id)
    parts.keys.records(force=True)
    await jobs.runner.tick()
    for t in list(jobs.runner._tasks):
        await t
    done = jobs.store.get(job["id"])
    assert done.state == "failed" and job_key_id in done.error and "revoked" in done.error


async def test_a_deferrable_request_past_the_defer_level_becomes_the_tenants_job(make_plane, tmp_path):
    replay = {"provider": "replay", "replay": {"files": {"DE": str(TRACES / "DE_2020H1.csv")},
                                               "start": DIRTY.isoformat(), "speed": 0}}
    parts, jobs, api = gateway(make_plane, tmp_path, replay, budgets={"defer_deadline_s": 6 * 3600})
    key = key_for(parts, "team-a", budget_g=1000.0)
    await spend(parts, api, key, 0.95)  # 95 % spent: past defer_at (0.9), short of reject_at
    status, headers, job = await call(api, "POST", "/v2/models/digits/infer", digits_body(deferrable=True), key)
    assert status == 202 and headers["location"] == f"/v2/jobs/{job['id']}"
    assert job["state"] == "scheduled" and job["tenant"] == "team-a" and "carbon budget" in job["deferred"]
    assert job["deadline"] == (DIRTY + timedelta(hours=6)).isoformat().replace("+00:00", "Z")
    assert job["scheduled_for"] > DIRTY.isoformat().replace("+00:00", "Z")  # a cleaner hour than the dirty one
    assert (await call(api, "GET", headers["location"], key=key))[2]["state"] == "scheduled"

    # When its window comes the job runs (the defer action does not apply to it again) as team-a.
    parts.provider.clock.set(jobs.store.get(job["id"]).plan.start)
    parts.intensity.refresh()
    await jobs.runner.tick()
    for t in list(jobs.runner._tasks):
        await t
    shown = jobs.service.show(job["id"])
    assert shown["state"] == "done", shown["error"]
    assert shown["results"][0]["parameters"]["tenant"] == "team-a"

    # Not marked deferrable: the cheaper-variant stage serves it now (digits has no fallback variant).
    await spend(parts, api, key, 0.95)
    status, _, doc = await call(api, "POST", "/v2/models/digits/infer", digits_body(), key)
    assert status == 200 and doc["parameters"]["budget_action"] == "cheaper-variant"

    # Past reject_at a deferrable request is refused like any other.
    await spend(parts, api, key, 1.5)
    status, _, doc = await call(api, "POST", "/v2/models/digits/infer", digits_body(deferrable=True), key)
    assert status == 429 and "refused until the period ends" in doc["error"]


async def test_with_the_jobs_room_off_a_deferred_request_is_a_429_naming_the_jobs_api(make_plane, tmp_path):
    parts, _, _ = gateway(make_plane, tmp_path)
    key = key_for(parts, "team-a", budget_g=1000.0)

    async def metrics_text() -> str:
        return ""

    api = HttpApi(parts.dataplane, AdminApi(parts.host.registry, parts.host), metrics_text, gate=parts.gate)
    await spend(parts, api, key, 0.95)
    status, headers, doc = await call(api, "POST", "/v2/models/digits/infer", digits_body(deferrable=True), key)
    assert status == 429 and "/v2/models/digits/jobs" in doc["error"] and int(headers["retry-after"]) >= 1


def test_an_old_store_gains_the_tenant_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "jobs.sqlite"
    conn = sqlite3.connect(path)  # the first release's table, with one job in it
    conn.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL, version TEXT, state TEXT NOT NULL, "
        "submitted_s REAL NOT NULL, deadline_s REAL NOT NULL, scheduled_s REAL NOT NULL, plan TEXT NOT NULL, "
        "requests_n INTEGER NOT NULL, rows INTEGER NOT NULL, expected_run_s REAL NOT NULL, intensity_at_submission TEXT NOT NULL, "
        "callback_url TEXT, headers TEXT NOT NULL, created_wall_s REAL NOT NULL, started_wall_s REAL, "
        "finished_wall_s REAL, owner TEXT, lease_until_s REAL, error TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0)")
    plan = {"start": "2020-03-02T20:00:00Z", "end": "2020-03-02T20:00:01Z", "decision": "shifted", "reason": "old",
            "expected_g_per_kwh": 300.0, "region": "DE", "forecast_at": None}
    conn.execute("INSERT INTO jobs (id, model, state, submitted_s, deadline_s, scheduled_s, plan, requests_n, rows, "
                 "expected_run_s, intensity_at_submission, headers, created_wall_s) VALUES "
                 "('old', 'digits', 'scheduled', 0, 99, 1, ?, 1, 1, 0.1, '{}', '{}', 0)", (json.dumps(plan),))
    conn.commit()
    conn.close()
    store = JobStore(path)
    old = store.get("old")
    assert old.state == "scheduled" and old.tenant is None and old.plan.reason == "old"
    assert [j.id for j in store.list_jobs(tenant=None)] == ["old"] and store.list_jobs(tenant="team-a") == []
    store.close()


def test_wattgate_jobs_list_tenant_sends_the_filter(capsys):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append((self.path, self.headers.get("authorization")))
            out = json.dumps({"jobs": [{"id": "j1", "state": "done", "tenant": "team-a", "model": "digits",
                                        "scheduled_for": "x", "expected_intensity_g_per_kwh": None,
                                        "deadline": "y", "requests": 1}]}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        assert main(["jobs", "list", "--url", url, "--tenant", "team-a", "--token", "adm"]) == 0
    finally:
        httpd.shutdown()
    assert seen == [("/v2/jobs?limit=50&tenant=team-a", "Bearer adm")]
    assert "team-a" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["required"])
async def test_required_mode_admin_on_loopback_without_an_admin_key_lists_all(make_plane, tmp_path, mode):
    parts = make_plane(routing={"topology_file": str(tmp_path / "none.yaml")},
                       server={"region": "DE", "state_dir": str(tmp_path / "state")}, auth={"mode": mode})
    jobs = build_jobs(parts)

    async def metrics_text() -> str:
        return ""

    api = HttpApi(parts.dataplane, AdminApi(parts.host.registry, parts.host), metrics_text,
                  jobs_routes(jobs.service, parts.gate, AdminAuth(parts.settings.server)), gate=parts.gate)
    a = key_for(parts, "team-a")
    _, _, job = await call(api, "POST", "/v2/models/digits/jobs", digits_body(deadline=3600), a, client="127.0.0.1")
    assert (await call(api, "POST", "/v2/models/digits/jobs", digits_body(deadline=3600), client="127.0.0.1"))[0] == 401
    status, _, doc = await call(api, "GET", "/v2/jobs", client="127.0.0.1")
    assert status == 200 and [j["id"] for j in doc["jobs"]] == [job["id"]]
    assert (await call(api, "GET", "/v2/jobs"))[0] == 401  # required mode, no key, not loopback
    other = key_for(parts, "team-b")
    assert (await call(api, "GET", f"/v2/jobs/{job['id']}", key=other, client="127.0.0.1"))[0] == 404  # a key is not admin


async def test_over_grpc_a_deferred_request_is_resource_exhausted_naming_the_jobs_api(make_plane, tmp_path):
    """A job id has no place in a ModelInferResponse: gRPC refuses, and says where to send the work."""
    import grpc
    import numpy as np
    import tritonclient.grpc as tg
    from tritonclient.grpc._utils import _get_inference_request

    from gateway.grpc_api import GrpcApi

    from tests.gateway.test_grpc_api import Context  # drives GrpcApi as Serve's context does

    parts, _, api = gateway(make_plane, tmp_path)
    key = key_for(parts, "team-a", budget_g=1000.0)
    await spend(parts, api, key, 0.95)
    inp = tg.InferInput("pixels", [1, 64], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 64), np.float32))
    request = _get_inference_request("digits", [inp], "", "", [], 0, False, False, 0, None, None)
    request.parameters["deferrable"].bool_param = True
    ctx = Context(metadata=[("authorization", f"Bearer {key}")], peer=f"ipv4:{FAR}:5000")
    await GrpcApi(parts.dataplane, AdminApi(parts.host.registry, parts.host), gate=parts.gate).call(
        "ModelInfer", request, ctx)
    assert ctx.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "POST /v2/models/digits/jobs" in ctx.details
    assert dict(ctx.trailers)["retry-after"]
