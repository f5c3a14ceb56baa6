"""Carbon saved: round-robin counterfactual, cache, and the time-shift reader over a ledger with and without the jobs' column."""

from __future__ import annotations


import pytest

from energy.carbon import J_PER_KWH
from reports.savings import IntensityTimeline, PoolSite, cache_savings, routing_savings
from reports.time_shift import read_time_shift

from report_fakes import INTENSITY, PUE, REGION, T0, row, write_ledger

SITES = [PoolSite(name, REGION[name], PUE[name]) for name in PUE]


def flat_timeline(max_age_s: float = 3600.0) -> IntensityTimeline:
    return IntensityTimeline({region: [(T0 - 600, g)] for region, g in INTENSITY.items()}, max_age_s)


def test_timeline_takes_the_reading_in_force_and_not_a_stale_one():
    tl = IntensityTimeline({"FR": [(100.0, 50.0), (200.0, 70.0)]}, max_age_s=60)
    assert tl.at("FR", 99.0) is None  # before the first reading
    assert tl.at("FR", 150.0) == 50.0
    assert tl.at("FR", 200.0) == 70.0
    assert tl.at("FR", 261.0) is None  # older than max_age_s
    assert tl.at("DE", 150.0) is None


def test_round_robin_spreads_each_request_over_the_pools_at_their_intensity_and_pue():
    rows = [row(0, pool="fr-x86"), row(1, pool="fr-x86"), row(2, pool="de-x86", known=False)]
    saved = routing_savings(rows, SITES, flat_timeline())
    kwh = 0.03 / J_PER_KWH
    per_request = sum(kwh / 3 * INTENSITY[REGION[p]] * PUE[p] for p in PUE)
    assert (saved.requests_compared, saved.requests_left_out) == (2, 1)
    assert saved.round_robin_operational_g == pytest.approx(2 * per_request)
    assert saved.actual_operational_g == pytest.approx(rows[0].operational_g + rows[1].operational_g)
    assert saved.saved_g == pytest.approx(2 * (per_request - kwh * 50 * 1.2))
    assert saved.saved_g > 0  # FR is the cleanest region


def test_round_robin_only_over_pools_serving_the_variant_and_only_with_history():
    sites = [PoolSite("fr-x86", "FR", 1.2), PoolSite("de-x86", "DE", 1.2, variants=("fp32",)), PoolSite("gb-arm", "GB", 1.1, variants=("int8",))]
    saved = routing_savings([row(0, variant="fp32", pool="de-x86")], sites, flat_timeline())
    kwh = 0.03 / J_PER_KWH
    assert saved.round_robin_operational_g == pytest.approx(kwh / 2 * 1.2 * (50 + 400))
    assert saved.saved_g == pytest.approx(kwh / 2 * 1.2 * (50 + 400) - kwh * 400 * 1.2)  # a loss: DE is dirtier
    late = routing_savings([row(0, time_s=T0 + 7200)], SITES, flat_timeline())  # readings too old by then
    assert (late.requests_compared, late.requests_left_out) == (0, 1)


def test_cache_saving_is_hits_times_mean_miss_energy_less_the_hits_own():
    rows = [row(0, active_j=0.02, idle_j=0.01), row(1, active_j=0.04, idle_j=0.01),  # misses: 0.03 and 0.05 J
            row(2, cache="hit", active_j=0.004, idle_j=0.001), row(3, cache="hit", active_j=0.004, idle_j=0.001),
            row(4, cache="hit", variant="int8")]  # no int8 miss to compare with
    savings = cache_savings(rows, PUE)
    fp32, int8 = savings.by_model_variant
    assert (fp32.hits, fp32.mean_miss_j, fp32.hits_own_j) == (2, pytest.approx(0.04), pytest.approx(0.01))
    assert fp32.avoided_j == pytest.approx(2 * 0.04 - 0.01)
    assert fp32.avoided_g == pytest.approx(2 * (0.04 - 0.005) / J_PER_KWH * 50 * 1.2)
    assert int8.mean_miss_j is None and int8.avoided_j == 0
    assert savings.hits == 3 and savings.hits_without_misses == 1


def test_time_shift_reads_the_jobs_table_and_is_none_without_jobs(tmp_path):
    from energy.ledger import EnergyLedger
    from energy.ledger_record import JobRecord

    db = write_ledger(tmp_path / "ledger.sqlite", [row(i) for i in range(4)])
    with EnergyLedger(db, background=False) as ledger:
        assert read_time_shift(ledger, T0, T0 + 3600) is None  # no job in the ledger

    def job(i: int, t: float, carbon: float | None, counterfactual: float | None, tenant: str | None = "a") -> JobRecord:
        return JobRecord(f"j{i}", t, "digits", "1", "done", "shifted", "min window", "2026-11-30T00:00:00Z",
                         "2026-11-30T03:00:00Z", "2026-11-30T12:00:00Z", "FR", 40.0, 10, 1.0, carbon, counterfactual, tenant)

    with EnergyLedger(db, background=False) as ledger:
        ledger.record_job(job(1, T0 + 10, 1.0, 3.0))
        ledger.record_job(job(2, T0 + 20, 2.0, 2.5))
        ledger.record_job(job(3, T0 + 30, None, 2.0))  # carbon unknown: left out
        ledger.record_job(job(4, T0 + 7200, 1.0, 9.0))  # another period
        shift = read_time_shift(ledger, T0, T0 + 3600)
        assert shift.jobs == 2 and shift.saved_g == pytest.approx(2.5)
        ledger.record_job(job(5, T0 + 40, 0.5, 4.5, tenant="b"))
        ledger.record_job(job(6, T0 + 50, 0.5, 0.75, tenant=None))  # auth off: in the total only
        shift = read_time_shift(ledger, T0, T0 + 3600)
        assert shift.jobs == 4 and shift.saved_g == pytest.approx(2.5 + 4.0 + 0.25)
        mine = read_time_shift(ledger, T0, T0 + 3600, tenant="a")
        assert mine.jobs == 2 and mine.saved_g == pytest.approx(2.5)
        assert read_time_shift(ledger, T0, T0 + 3600, tenant="b").saved_g == pytest.approx(4.0)
        assert read_time_shift(ledger, T0, T0 + 3600, tenant="c") is None
        assert [j.job_id for j in ledger.jobs(tenant="a")] == ["j4", "j3", "j2", "j1"]
