"""Dashboard series from snapshots: per-interval ratios, restarts skipped, p99 from histogram buckets."""

from __future__ import annotations

import math

import pytest

from serving.dashboard import DashboardHistory, DashboardQuery, quantile_from_buckets
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

