"""Dashboard series from snapshots: per-interval ratios, restarts skipped, p99 from histogram buckets."""

from __future__ import annotations

import math

import pytest

from serving.dashboard import DashboardHistory, DashboardQuery, quantile_from_buckets
from wattgate.errors import BadRequest
from wattgate.metrics import MetricsRegistry


def test_quantile_interpolates_like_prometheus():
    uppers = [0.01, 0.1, 1.0, math.inf]
    assert quantile_from_buckets(0.5, uppers, [0, 100, 100, 100]) == pytest.approx(0.055)
    assert quantile_from_buckets(0.99, uppers, [0, 0, 0, 10]) == 1.0  # only +Inf: the top finite bound
    assert quantile_from_buckets(0.99, uppers, [0, 0, 0, 0]) is None


def test_history_gives_per_interval_figures_and_skips_a_restart():
    now = [1000.0]
    reg = MetricsRegistry()
    req = reg.counter("wattgate_pool_requests_total", "", ("model", "variant", "pool", "route"))
    en = reg.counter("wattgate_pool_energy_joules_total", "", ("model", "variant", "pool"))
    hist = DashboardHistory(clock=lambda: now[0])
    labels = dict(model="m", variant="v", pool="p")
    for n, j in ((0, 0.0), (10, 0.5), (30, 0.9)):
        req.inc(n - req.value(**labels, route="r"), **labels, route="r")
        en.inc(j - en.value(**labels), **labels)
        hist.add(reg.snapshot())
        now[0] += 5
    doc = hist.query(DashboardQuery(window_s=60))
    assert doc["panels"]["j_per_1k"]["series"]["m/v@p"][:2] == [pytest.approx(50.0), pytest.approx(20.0)]
    assert doc["panels"]["route_reasons"]["series"]["r"][:2] == [pytest.approx(2.0), pytest.approx(4.0)]
    # A replica restarted: its counters start again from 0; that interval is left out, not negative.
    fresh = MetricsRegistry()
    fresh.counter("wattgate_pool_requests_total", "", ("model", "variant", "pool", "route")).inc(1, **labels, route="r")
    now[0] += 5
    hist.add(fresh.snapshot())
    doc = hist.query(DashboardQuery(window_s=60))
    assert doc["panels"]["j_per_1k"]["series"]["m/v@p"][-1] is None


def test_samples_closer_than_the_interval_are_not_kept():
    now = [0.0]
    hist = DashboardHistory(min_interval_s=1.0, clock=lambda: now[0])
    assert hist.add({}) and not hist.add({})
    now[0] = 1.5
    assert hist.add({})



def test_a_tenants_view_holds_its_own_figures_and_nobody_elses():
    now = [1000.0]
    reg = MetricsRegistry()
    pool = ("tenant", "model", "variant", "pool")
    req = reg.counter("wattgate_tenant_pool_requests_total", "", (*pool, "route"))
    en = reg.counter("wattgate_tenant_pool_energy_joules_total", "", pool)
    total_req = reg.counter("wattgate_pool_requests_total", "", ("model", "variant", "pool", "route"))
    total_en = reg.counter("wattgate_pool_energy_joules_total", "", ("model", "variant", "pool"))
    cache = reg.counter("wattgate_cache_hits_total", "", ("model",))
    key_budget = reg.gauge("wattgate_budget_used_ratio", "", ("tenant",))
    hist = DashboardHistory(clock=lambda: now[0])
    # acme: 10 requests at 0.2 J each per interval on p1; globex: 30 at 1 J each on p2.
    for _ in range(3):
        for tenant, p, n, j in (("acme", "p1", 10, 2.0), ("globex", "p2", 30, 30.0)):
            req.inc(n, tenant=tenant, model="m", variant="v", pool=p, route="r")
            en.inc(j, tenant=tenant, model="m", variant="v", pool=p)
            total_req.inc(n, model="m", variant="v", pool=p, route="r")
            total_en.inc(j, model="m", variant="v", pool=p)
        cache.inc(5, model="m")
        key_budget.set(0.25, tenant="acme")
        key_budget.set(0.5, tenant="globex")
        hist.add(reg.snapshot())
        now[0] += 5
    acme = hist.query(DashboardQuery(window_s=60, tenant="acme"))
    assert acme["tenant"] == "acme"
    p = acme["panels"]
    assert p["j_per_1k"]["series"] == {"m/v@p1": [pytest.approx(200.0)] * 2}
    assert p["traffic_share"]["series"] == {"p1": [100.0, 100.0]}
    assert p["budget_use"]["series"] == {"key/acme": [25.0, 25.0]}
    assert p["cache_hit_rate"]["pending"] and p["cache_hit_rate"]["series"] == {}
    assert "globex" not in repr(acme) and "p2" not in repr(acme)
    everyone = hist.query(DashboardQuery(window_s=60))
    assert everyone["panels"]["j_per_1k"]["series"]["m/v@p2"] == [pytest.approx(1000.0)] * 2
    assert set(everyone["panels"]["budget_use"]["series"]) == {"key/acme", "key/globex"}
    assert "pending" not in everyone["panels"]["cache_hit_rate"]


@pytest.mark.parametrize("tenant", ["", "a b", "-x", "x" * 65])
def test_a_tenant_that_is_no_tenant_name_is_refused(tenant):
    with pytest.raises(BadRequest, match="tenant must be a tenant name"):
        DashboardQuery.parse({"tenant": [tenant]})
