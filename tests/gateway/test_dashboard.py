"""The built-in dashboard over the HTTP layer and a real data plane (no Ray): page, assets, data, errors,
auth, and a tenant's view (its own series only) next to the admin's."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.admin import AdminApi
from gateway.dashboard import Dashboard
from gateway.http import HttpApi
from tenants.keys import KeyLimits


def _api(parts):
    async def snapshot() -> dict:
        return parts.snapshot()

    async def metrics_text() -> str:
        return ""

    dashboard = Dashboard(snapshot, parts.provider, parts.intensity.regions, parts.control)
    dashboard.history.min_interval_s = 0.0  # every poll is a sample
    return HttpApi(parts.dataplane, AdminApi(parts.host.registry, parts.host), metrics_text, dashboard.routes(),
                   gate=parts.gate)


def _call(api, path, headers=None, client="127.0.0.1"):
    path, _, query = path.partition("?")
    status, out_headers, out = asyncio.run(api.handle("GET", path, headers or {}, b"", client, query))
    return status, out_headers, json.loads(out) if out_headers.get("content-type") == "application/json" else out


def _infer(api, row, key=None):
    body = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": row.tolist()}]})
    headers = {"authorization": f"Bearer {key}"} if key else {}
    status, _, _ = asyncio.run(api.handle("POST", "/v2/models/digits/infer", headers, body.encode(), "127.0.0.1"))
    assert status == 200


def test_page_and_vendored_assets_are_served_offline(make_plane):
    api = _api(make_plane())
    status, headers, page = _call(api, "/dashboard")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"http://" not in page and b"https://" not in page  # nothing from a CDN
    for src in (b"/dashboard/static/uPlot.iife.min.js", b"/dashboard/static/dashboard.js", b"/dashboard/static/uPlot.min.css"):
        assert src in page
        status, _, body = _call(api, src.decode())
        assert status == 200 and len(body) > 500
    assert b"MIT" in _call(api, "/dashboard/static/uPlot.LICENSE")[2]
    assert _call(api, "/dashboard/static/..%2fhttp.py")[0] == 404
    assert _call(api, "/dashboard/static/http.py")[0] == 404


@pytest.mark.parametrize("query", ["window=abc", "window=5", "window=99999", "window=nan", "tenant=", "tenant=a%20b",
                                   "tenant=-x", "colour=red"])
def test_bad_parameters_are_400(make_plane, query):
    status, _, doc = _call(_api(make_plane()), f"/dashboard/data?{query}")
    assert status == 400 and doc["error"]


def test_data_needs_the_admin_key_or_loopback(make_plane):
    api = _api(make_plane())
    assert _call(api, "/dashboard/data", client="10.1.2.3")[0] == 403
    assert _call(api, "/dashboard", client="10.1.2.3")[0] == 200  # the page holds no data
    keyed = _api(make_plane(server={"admin_api_key": "s3cret"}))
    assert _call(keyed, "/dashboard/data")[0] == 401
    assert _call(keyed, "/dashboard/data", {"authorization": "Bearer s3cret"})[0] == 200


def test_data_fills_from_the_gateways_metrics(make_plane):
    from sklearn.datasets import load_digits

    pixels = load_digits().data.astype("float32")
    api = _api(make_plane(cache={"enabled": True}, budgets={"models_g": {"digits": 1.0}}))
    _call(api, "/dashboard/data")
    for i in range(20):
        _infer(api, pixels[i % 5])  # 5 distinct inputs: 15 cache hits
    status, _, doc = _call(api, "/dashboard/data?window=60")
    assert status == 200 and len(doc["t"]) == 1 and doc["policy"] == "lowest-carbon"
    p = doc["panels"]
    (j_per_1k,) = p["j_per_1k"]["series"].values()
    assert j_per_1k[0] > 0
    assert sum(v[0] for v in p["traffic_share"]["series"].values()) == pytest.approx(100)
    assert p["cache_hit_rate"]["series"]["digits"] == [pytest.approx(75)]
    assert p["slo_attainment"]["series"]["digits"] == [100]
    assert 0 < p["p99_ms"]["series"]["digits"][0] < 10_000
    assert p["budget_use"]["series"]["model/digits"][0] > 0
    assert set(p["intensity"]["series"]) == {"DE", "FR", "GB"} and p["intensity"]["forecast"]["FR"]
    assert p["pool_replicas_idle"]["pending"]


ADMIN = {"authorization": "Bearer adm1n-s3cret"}


def _tenants_api(make_plane):
    """Auth required, an admin key, and two tenants (acme, globex) with one key each, both used."""
    from sklearn.datasets import load_digits

    parts = make_plane(auth={"mode": "required"}, server={"admin_api_key": "adm1n-s3cret"}, cache={"enabled": False})
    keys = {t: parts.keys.create(t, KeyLimits(budget_g=1.0))[1] for t in ("acme", "globex")}
    api = _api(parts)
    pixels = load_digits().data.astype("float32")
    _call(api, "/dashboard/data", ADMIN)
    for i in range(12):
        _infer(api, pixels[i], keys["acme"])
    for i in range(4):
        _infer(api, pixels[20 + i], keys["globex"])
    return api, keys


def test_a_tenants_key_sees_only_its_own_series(make_plane):
    api, keys = _tenants_api(make_plane)
    acme = {"authorization": f"Bearer {keys['acme']}"}
    status, _, doc = _call(api, "/dashboard/data?window=60", acme)
    assert status == 200 and doc["tenant"] == "acme"
    text = json.dumps(doc)
    assert "globex" not in text  # neither the other tenant's name nor a series of it
    p = doc["panels"]
    (j_per_1k,) = p["j_per_1k"]["series"].values()
    assert j_per_1k[0] > 0
    assert list(p["tenant_j_per_1k"]["series"]) == ["acme"]
    # One model, one pool: the tenant's J per 1,000 requests is the same figure both ways.
    assert p["tenant_j_per_1k"]["series"]["acme"][0] == pytest.approx(j_per_1k[0], rel=1e-6)
    assert sum(v[0] for v in p["traffic_share"]["series"].values()) == pytest.approx(100)
    assert p["slo_attainment"]["series"]["digits"][0] is not None
    assert p["p99_ms"]["series"]["digits"][0] > 0
    assert p["budget_use"]["series"]["key/acme"][0] > 0  # its own carbon budget (1 g a month)
    assert set(p["intensity"]["series"]) == {"DE", "FR", "GB"}  # the grid is public
    for shared in ("cache_hit_rate", "energy_avoided", "pool_replicas_idle"):
        assert p[shared]["pending"] and not p[shared]["series"], shared
    assert doc["anomalies"] == []
    # Its own name may be asked for; another tenant's may not.
    assert _call(api, "/dashboard/data?tenant=acme", acme)[0] == 200
    status, _, err = _call(api, "/dashboard/data?tenant=globex", acme)
    assert status == 403 and "globex" not in err["error"]


def test_the_admin_sees_every_tenant_and_can_narrow_to_one(make_plane):
    api, keys = _tenants_api(make_plane)
    doc = _call(api, "/dashboard/data?window=60", ADMIN)[2]
    assert doc["tenant"] is None
    tenants = doc["panels"]["tenant_j_per_1k"]["series"]
    assert {"acme", "globex"} <= set(tenants) and all(v[0] > 0 for k, v in tenants.items() if k in ("acme", "globex"))
    assert {"key/acme", "key/globex"} <= set(doc["panels"]["budget_use"]["series"])
    narrowed = _call(api, "/dashboard/data?window=60&tenant=globex", ADMIN)[2]
    assert narrowed["tenant"] == "globex" and "acme" not in json.dumps(narrowed)
    assert list(narrowed["panels"]["tenant_j_per_1k"]["series"]) == ["globex"]
    (g,) = narrowed["panels"]["j_per_1k"]["series"].values()
    assert g[0] > 0


def test_the_data_needs_a_key_when_auth_is_required(make_plane):
    api, keys = _tenants_api(make_plane)
    assert _call(api, "/dashboard/data")[0] == 401
    assert _call(api, "/dashboard/data", {"authorization": "Bearer wg_0123456789ab_" + "x" * 43})[0] == 401
    assert _call(api, "/dashboard/data", {"authorization": "Bearer not-a-key"})[0] == 401
    assert _call(api, "/dashboard")[0] == 200  # the page itself holds no data


def test_a_catch_all_label_is_never_a_tenants_view(make_plane):
    """"other" folds tenants past the label limit together: asking for it shows nobody's series."""
    api, _ = _tenants_api(make_plane)
    doc = _call(api, "/dashboard/data?window=60&tenant=other", ADMIN)[2]
    assert doc["tenant"] == "other" and doc["t"] == []
    assert all(not panel["series"] for panel in doc["panels"].values())
