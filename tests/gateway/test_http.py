"""The HTTP layer over a real data plane, without Ray: paths, statuses, JSON errors, admin access."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from gateway.admin import AdminApi
from gateway.http import HttpApi
from wattgate.errors import Overloaded


@pytest.fixture
def plane(make_plane):
    return make_plane()


@pytest.fixture
def api(plane):
    parts = plane

    async def metrics_text() -> str:
        return "# no metrics\n"

    return HttpApi(parts.dataplane, AdminApi(parts.host.registry, parts.host), metrics_text)


def _call(api, method, path, body=b"", headers=None, client="127.0.0.1"):
    status, out_headers, out = asyncio.run(api.handle(method, path, headers or {}, body, client))
    return status, out_headers, json.loads(out) if out_headers.get("content-type") == "application/json" else out


def test_the_http_layer_imports_no_ray():
    subprocess.run([sys.executable, "-c", "import gateway.http, gateway.admin, sys; assert 'ray' not in sys.modules"], check=True)


def test_infer_answers_with_energy_headers(api):
    body = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]})
    status, headers, doc = _call(api, "POST", "/v2/models/digits/infer", body.encode())
    assert status == 200 and doc["model_name"] == "digits"
    assert float(headers["x-energy-j"]) == pytest.approx(doc["parameters"]["energy_j"], rel=1e-5)
    assert headers["x-pool"] == doc["parameters"]["pool"] and headers["x-cache"] == "miss"


@pytest.mark.parametrize("method,path,body,status", [
    ("GET", "/v2/models/nope", b"", 404),
    ("POST", "/v2/models/digits/infer", b"[1, 2", 400),
    ("DELETE", "/v2/models/digits", b"", 405),
    ("GET", "/no/such/route", b"", 404),
    ("POST", "/v2/models/%2e%2e%2fetc/infer", b"{}", 400),
])
def test_errors_are_json_with_their_status(api, method, path, body, status):
    got, _, doc = _call(api, method, path, body)
    assert got == status and isinstance(doc["error"], str) and doc["error"]


def test_admin_routes_need_loopback_without_a_key(api):
    assert _call(api, "POST", "/v2/repository/index", client="10.1.2.3")[0] == 403
    status, _, doc = _call(api, "POST", "/v2/repository/index")
    assert status == 200 and {"name": "digits", "version": "1", "state": "READY", "reason": ""} in doc


def test_a_shed_request_gets_503_with_retry_after_and_is_counted(api, plane, monkeypatch):
    def overloaded(*args, **kwargs):
        raise Overloaded("every pool is at its in-flight bound", retry_after_s=2.2)

    monkeypatch.setattr(plane.dataplane.router, "route", overloaded)
    body = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]})
    status, headers, doc = _call(api, "POST", "/v2/models/digits/infer", body.encode())
    assert (status, headers["retry-after"]) == (503, "3") and "in-flight bound" in doc["error"]
    assert plane.metrics.snapshot()["wattgate_shed_requests_total"]["series"] == [[["digits"], 1.0]]
