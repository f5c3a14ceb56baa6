"""EnergyMetrics: counters equal the per-request sums, the sliding window, merged ratios, rendering."""

from __future__ import annotations

import pytest
from energy_fakes import FakeClock

from energy.attribution import AttributionTotals
from energy.ledger import LedgerRecord
from energy.metrics import EnergyMetrics, recompute_joules_per_1k
from wattgate.metrics import MetricsRegistry, merge, render

LABELS = dict(model="digits", version="1", variant="int8", region="eu-north", hardware="x86")


def rec(energy_j: float, carbon_g: float = 1e-5, **over) -> LedgerRecord:
    fields = dict(
        time_s=1.7e9, request_id="r", batch_size=4, pool="p", latency_ms=2.0, energy_j=energy_j,
        energy_method="cpu-time-model", energy_measured=False, intensity_g_per_kwh=30.0,
        carbon_g=carbon_g, operational_g=carbon_g, embodied_g=0.0, cache="miss", **LABELS,
    )
    fields.update(over)
    return LedgerRecord(**fields)


def test_counters_and_histogram_sum_the_records():
    reg = MetricsRegistry()
    m = EnergyMetrics(reg, clock=FakeClock())
    energies = [0.002, 0.02, 0.5, 0.0005]
    for e in energies:
        m.observe(rec(e, carbon_g=e / 100))
    m.observe(rec(1.0, variant="fp32"))
    # The total over kind="active|idle"; these records say nothing of active energy, so all is idle.
    assert m.energy.value(**LABELS, kind="active") + m.energy.value(**LABELS, kind="idle") == pytest.approx(sum(energies))
    assert m.energy.value(**LABELS, kind="active") == 0.0
    assert m.carbon.value(**LABELS) == pytest.approx(sum(energies) / 100)
    assert m.requests.value(**LABELS) == 4
    assert m.request_energy.count(**LABELS) == 4
    assert m.request_energy.sum(**LABELS) == pytest.approx(sum(energies))
    text = render(reg.snapshot())
    assert "# TYPE wattgate_energy_joules_total counter" in text
    assert 'wattgate_requests_total{model="digits",version="1",variant="int8",region="eu-north",hardware="x86"} 4.0' in text
    assert 'wattgate_request_energy_joules_bucket{model="digits",version="1",variant="int8",region="eu-north",hardware="x86",le="0.001"} 1.0' in text
    assert 'wattgate_request_energy_joules_bucket{model="digits",version="1",variant="int8",region="eu-north",hardware="x86",le="+Inf"} 4.0' in text


def test_energy_splits_into_active_and_idle_and_unknown_carbon_is_not_zero_carbon():
    m = EnergyMetrics(MetricsRegistry(), clock=FakeClock())
    m.observe(rec(0.5, active_j=0.1, idle_j=0.4))
    m.observe(rec(0.2, carbon_g=None, operational_g=None, intensity_g_per_kwh=None, active_j=0.2, idle_j=0.0))
    assert m.energy.value(**LABELS, kind="active") == pytest.approx(0.3)
    assert m.energy.value(**LABELS, kind="idle") == pytest.approx(0.4)
    assert m.carbon.value(**LABELS) == pytest.approx(1e-5)  # the unknown one adds nothing, not 0 g
    assert m.carbon_unknown.value(**LABELS) == 1 and m.requests.value(**LABELS) == 2


def test_sliding_window_joules_per_1k_requests():
    clock = FakeClock()
    m = EnergyMetrics(MetricsRegistry(), window_s=60.0, clock=clock)
    for _ in range(10):
        m.observe(rec(0.01))  # 10 J per 1k
    clock.advance(30)
    for _ in range(10):
        m.observe(rec(0.03))
    m.refresh()
    assert m.per_1k.value(model="digits", variant="int8") == pytest.approx(20.0)
    clock.advance(45)  # the first ten fall out of the window
    m.refresh()
    assert m.per_1k.value(model="digits", variant="int8") == pytest.approx(30.0)
    assert m.window_requests.value(model="digits", variant="int8") == 10
    clock.advance(60)
    m.refresh()
    assert m.per_1k.value(model="digits", variant="int8") == 0.0


def test_merged_replicas_get_a_true_ratio_not_a_sum_of_ratios():
    snaps = []
    for energy_j, n in ((0.01, 10), (0.05, 30)):
        reg = MetricsRegistry()
        m = EnergyMetrics(reg, clock=FakeClock())
        for _ in range(n):
            m.observe(rec(energy_j))
        m.refresh()
        snaps.append(reg.snapshot())
    merged = recompute_joules_per_1k(merge(snaps))
    (key, value), = merged["wattgate_joules_per_1k_requests"]["series"]
    assert key == ["digits", "int8"]
    assert value == pytest.approx(1000 * (0.01 * 10 + 0.05 * 30) / 40)  # 40 J per 1k, not 10 + 50
    assert "wattgate_joules_per_1k_requests" in render(merged)


def test_attribution_books_are_mirrored():
    reg = MetricsRegistry()
    m = EnergyMetrics(reg)

    def totals(metered, written_off, pending):
        return AttributionTotals(metered, metered - written_off - pending, written_off, pending, "nvml", True, 0, 0)

    m.observe_attribution(totals(10.0, 0.0, 1.5))
    m.observe_attribution(totals(25.0, 2.0, 0.5))
    assert m.metered.value(method="nvml") == pytest.approx(25.0)
    assert m.unattributed.value(method="nvml") == pytest.approx(2.0)
    assert m.pending.value(method="nvml") == pytest.approx(0.5)
    assert "wattgate_unattributed_energy_joules_total{method=\"nvml\"} 2.0" in render(reg.snapshot())
