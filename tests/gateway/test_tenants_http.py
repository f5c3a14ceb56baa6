"""Tenants through the HTTP layer over a real data plane (no Ray): auth modes, keys over the admin API,
quotas, budgets, the ledger's tenant, the audit log and the OpenAPI document built from the routes."""

from __future__ import annotations

import asyncio
import copy
import json
import logging

import jsonschema
import pytest

from gateway.admin import AdminApi
from gateway.admin_tenants import key_routes
from gateway.http import HttpApi
from gateway.openapi import SCHEMAS

BODY = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}).encode()


def make_api(parts) -> HttpApi:
    async def metrics_text() -> str:
        return "# no metrics\n"

    admin = AdminApi(parts.host.registry, parts.host, extra_routes=key_routes(parts.keys, parts.audit))
    return HttpApi(parts.dataplane, admin, metrics_text, gate=parts.gate, audit=parts.audit)


def call(api, method, path, body=b"", headers=None, client="127.0.0.1"):
    status, out_headers, out = asyncio.run(api.handle(method, path, headers or {}, body, client))
    return status, out_headers, json.loads(out) if out_headers.get("content-type") == "application/json" else out


@pytest.fixture
def parts(make_plane):
    return make_plane(auth={"mode": "required"}, energy={"ledger_flush_interval_s": 0.05})


def new_key(api, **limits) -> tuple[str, str]:
    status, _, doc = call(api, "POST", "/v2/admin/keys", json.dumps(limits).encode(), {"x-actor": "ops-alice"})
    assert status == 201, doc
    return doc["key"], doc["key_id"]


def test_required_mode_keys_quota_and_ledger(parts, caplog):
    caplog.set_level(logging.DEBUG)
    api = make_api(parts)
    key_a, id_a = new_key(api, tenant="team-a", rps=1, burst=2, models=["digits"])
    key_b, id_b = new_key(api, tenant="team-b", models=["other-model"])
    auth = lambda k: {"authorization": f"Bearer {k}"}  # noqa: E731

    assert call(api, "POST", "/v2/models/digits/infer", BODY)[0] == 401
    assert call(api, "POST", "/v2/models/digits/infer", BODY, {"authorization": "Bearer nope"})[0] == 401
    assert call(api, "POST", "/v2/models/digits/infer", BODY, {"authorization": "Bearer " + "é" * 4})[0] == 401
    assert call(api, "POST", "/v2/models/digits/infer", BODY, {"authorization": ""})[0] == 401
    status, _, doc = call(api, "POST", "/v2/models/digits/infer", BODY, auth(key_b))
    assert status == 403 and id_b in doc["error"] and key_b not in doc["error"]

    status, _, doc = call(api, "POST", "/v2/models/digits/infer", BODY, {**auth(key_a), "x-tenant": "team-b"})
    assert status == 200 and doc["parameters"]["tenant"] == "team-a"  # a forged X-Tenant is ignored
    assert call(api, "POST", "/v2/models/digits/infer", BODY, auth(key_a))[0] == 200
    status, headers, doc = call(api, "POST", "/v2/models/digits/infer", BODY, auth(key_a))
    assert status == 429 and int(headers["retry-after"]) >= 1 and "requests/s" in doc["error"]

    assert call(api, "POST", f"/v2/admin/keys/{id_a}/revoke")[0] == 200
    status, _, doc = call(api, "POST", "/v2/models/digits/infer", BODY, auth(key_a))
    assert status == 401 and "revoked" in doc["error"]

    ledger = parts.ledger_sink.ledger
    rows = ledger.records(limit=None)
    assert [r.tenant for r in rows] == ["team-a", "team-a"]  # refused requests leave no row
    (by_tenant,) = ledger.totals(group_by=["tenant"])
    assert by_tenant["tenant"] == "team-a" and by_tenant["requests"] == 2

    entries = list(parts.audit.entries())
    assert [e["action"] for e in entries] == ["POST /v2/admin/keys"] * 2 + ["POST /v2/admin/keys/{key_id}/revoke"]
    assert entries[0]["actor"] == "ops-alice" and entries[0]["key_id"] == id_a and entries[0]["from"] == "127.0.0.1"
    audit_text = parts.audit.path.read_text()
    logs = caplog.text
    for key in (key_a, key_b):
        secret = key.split("_", 2)[2]
        assert secret not in audit_text and secret not in logs
        assert secret not in parts.keys.backend.path.read_text()


def test_budget_reject_and_remaining_in_parameters(parts):
    api = make_api(parts)
    key, key_id = new_key(api, tenant="team-c", budget_g=1.0, budget_period="day")
    status, _, doc = call(api, "POST", "/v2/models/digits/infer", BODY, {"authorization": f"Bearer {key}"})
    p = doc["parameters"]
    assert status == 200 and p["budget_action"] == "ok" and 0 < p["budget_remaining_g"] < 1.0
    assert p["budget_used_ratio"] == pytest.approx(1.0 - p["budget_remaining_g"])
    for bad in (b'{"budget_g": -1}', b'{"budget_g": NaN}', b'{"budget_g": "x"}', b"[1]"):
        assert call(api, "PATCH", f"/v2/admin/keys/{key_id}", bad)[0] == 400
    assert call(api, "PATCH", f"/v2/admin/keys/{key_id}", b'{"budget_g": 0}')[0] == 200
    parts.keys.records(force=True)
    status, headers, doc = call(api, "POST", "/v2/models/digits/infer", BODY, {"authorization": f"Bearer {key}"})
    assert status == 429 and "carbon budget" in doc["error"] and int(headers["retry-after"]) >= 1
    assert [e["outcome"] for e in parts.audit.entries() if e["action"].startswith("PATCH")] == [400] * 4 + [200]


def test_off_mode_needs_no_key_and_trusts_no_header(make_plane):
    parts = make_plane()
    api = make_api(parts)
    status, _, doc = call(api, "POST", "/v2/models/digits/infer", BODY, {"x-tenant": "team-a"})
    assert status == 200 and "tenant" not in doc["parameters"]
    trusted = make_plane(auth={"trusted_proxies": ["10.0.0.0/8"]})
    api = make_api(trusted)
    assert call(api, "POST", "/v2/models/digits/infer", BODY, {"x-tenant": "team-x"}, client="10.1.2.3")[2][
        "parameters"]["tenant"] == "team-x"
    assert "tenant" not in call(api, "POST", "/v2/models/digits/infer", BODY, {"x-tenant": "team-x"},
                                client="192.168.1.1")[2]["parameters"]


def test_openapi_is_built_from_the_route_table(parts):
    api = make_api(parts)
    status, _, doc = call(api, "GET", "/v2/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    for route in api.routes:
        for path in route.paths():
            assert route.method.lower() in doc["paths"][path], (route.method, path)
    infer = doc["paths"]["/v2/models/{name}/versions/{version}/infer"]["post"]
    assert infer["security"] == [{"apiKey": []}]
    assert doc["paths"]["/v2/admin/keys"]["post"]["x-wattgate-access"] == "admin"
    key, _ = new_key(api, tenant="team-d", budget_g=5.0)
    _, _, answer = call(api, "POST", "/v2/models/digits/infer", BODY, {"authorization": f"Bearer {key}"})
    schema = copy.deepcopy(SCHEMAS["InferResponse"])
    schema["properties"]["parameters"] = SCHEMAS["ResponseParameters"]
    jsonschema.validate(answer, schema)


def test_a_refused_request_reads_no_body(parts):
    api = make_api(parts)
    key, _ = new_key(api, tenant="team-e", rps=1, burst=1)
    reads = []

    async def read_body() -> bytes:
        reads.append(len(BODY))
        return BODY

    def send(headers):
        return asyncio.run(api.handle("POST", "/v2/models/digits/infer", headers, read_body, "127.0.0.1"))

    assert send({})[0] == 401
    assert send({"authorization": "Bearer wg_000000000000_" + "A" * 43})[0] == 401
    assert send({"authorization": f"Bearer {key}"})[0] == 200
    assert send({"authorization": f"Bearer {key}"})[0] == 429
    assert reads == [len(BODY)]  # only the admitted request's body was read


async def test_a_saturated_replica_queues_tenants_then_refuses_past_the_wait(make_plane):
    parts = make_plane(auth={"mode": "required", "fair": {"capacity": 1, "max_wait_s": 0.2}})
    api = make_api(parts)
    from tenants.keys import KeyLimits

    key_a = parts.keys.create("team-a", KeyLimits())[1]
    key_b = parts.keys.create("team-b", KeyLimits())[1]
    principal_a = parts.gate.authenticate(f"Bearer {key_a}", None, "127.0.0.1")
    release = asyncio.Event()

    async def hold():
        async with parts.gate.admit(principal_a):
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    queued = asyncio.create_task(api.handle("POST", "/v2/models/digits/infer", {"authorization": f"Bearer {key_b}"},
                                            BODY, "127.0.0.1"))
    await asyncio.sleep(0.05)
    assert not queued.done() and parts.gate.fair.waiting_for("team-b") == 1  # waiting, not refused
    release.set()
    await holder
    assert (await queued)[0] == 200
    # The slot held again past b's max wait: 429 with Retry-After, and the slot count comes back to 0.
    release.clear()
    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    status, headers, body = await api.handle("POST", "/v2/models/digits/infer", {"authorization": f"Bearer {key_b}"},
                                             BODY, "127.0.0.1")
    assert status == 429 and int(headers["retry-after"]) >= 1 and "saturated" in json.loads(body)["error"]
    release.set()
    await holder
    assert parts.gate.fair.in_use == 0


def test_rotate_over_the_admin_api_with_a_grace_period(parts):
    api = make_api(parts)
    first, key_id = new_key(api, tenant="team-g")
    auth = lambda k: {"authorization": f"Bearer {k}"}  # noqa: E731
    for bad in (b'{"grace_s": -1}', b'{"grace_s": "1h"}', b'{"grace": 5}', b"[]"):
        assert call(api, "POST", f"/v2/admin/keys/{key_id}/rotate", bad)[0] == 400
    status, _, doc = call(api, "POST", f"/v2/admin/keys/{key_id}/rotate", b'{"grace_s": 3600}')
    assert status == 200 and len(doc["previous_secrets_expire_at"]) == 1
    second = doc["key"]
    assert call(api, "POST", "/v2/models/digits/infer", BODY, auth(first))[0] == 200  # in its grace period
    assert call(api, "POST", "/v2/models/digits/infer", BODY, auth(second))[0] == 200
    status, _, doc = call(api, "POST", f"/v2/admin/keys/{key_id}/rotate")  # no body: auth.rotation_grace_s, 0
    third = doc["key"]
    assert status == 200 and len(doc["previous_secrets_expire_at"]) == 1  # still the first's
    assert call(api, "POST", "/v2/models/digits/infer", BODY, auth(second))[0] == 401  # no grace: at once
    assert call(api, "POST", "/v2/models/digits/infer", BODY, auth(third))[0] == 200
    shown = call(api, "GET", f"/v2/admin/keys/{key_id}")[2]
    assert shown["previous_secrets_expire_at"] == doc["previous_secrets_expire_at"]
    rotations = [e for e in parts.audit.entries() if e["action"].endswith("/rotate") and e["outcome"] == 200]
    assert [e["grace_s"] for e in rotations] == [3600, 0]
    text = parts.audit.path.read_text()
    assert not any(k.split("_", 2)[2] in text for k in (first, second, third))
