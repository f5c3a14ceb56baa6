"""Meters: CPU-time model arithmetic, RAPL against a fake sysfs tree (with a wrap), windows."""

from __future__ import annotations

import pytest
from energy_fakes import FakeClock, build_rapl_tree, set_energy, write_zone

from energy.coefficients import get_profile
from energy.meters import CpuTimeModelMeter, RaplMeter
from wattgate.errors import BadRequest, DependencyError, Unavailable


class Counter:
    def __init__(self, start: float = 50.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value


def test_cpu_time_model_formula_static_plus_dynamic_plus_memory():
    clock, cpu = FakeClock(), Counter()
    meter = CpuTimeModelMeter(get_profile("aws-x86"), vcpus_reserved=0.5, memory_gb=2.0, cpu_seconds=cpu, clock=clock)
    clock.advance(10.0)
    cpu.value += 3.0
    r = meter.read()
    # static 0.74 W × 0.5 vCPU × 10 s; dynamic (3.5 − 0.74) W × 3 CPU-s; memory 0.392 W/GB × 2 GB × 10 s
    assert r.components["cpu_static"] == pytest.approx(3.7)
    assert r.components["cpu_dynamic"] == pytest.approx(8.28)
    assert r.components["memory"] == pytest.approx(7.84)
    assert r.energy_j == pytest.approx(3.7 + 8.28 + 7.84)
    assert (r.method, r.measured, r.timestamp_s) == ("cpu-time-model", False, clock.now)


def test_cpu_time_model_idle_replica_still_pays_static_power():
    clock, cpu = FakeClock(), Counter()
    meter = CpuTimeModelMeter(get_profile("aws-graviton2"), vcpus_reserved=2, cpu_seconds=cpu, clock=clock)
    clock.advance(100.0)
    assert meter.read().energy_j == pytest.approx(0.47 * 2 * 100)
    assert "memory" not in meter.read().components


def test_cpu_time_model_window_and_monotonic_cpu_clock():
    clock, cpu = FakeClock(), Counter()
    meter = CpuTimeModelMeter(get_profile("aws-x86"), cpu_seconds=cpu, clock=clock)
    meter.begin_window("batch")
    clock.advance(0.02)
    cpu.value += 0.015
    m = meter.end_window("batch")
    assert m.duration_s == pytest.approx(0.02)
    assert m.energy_j == pytest.approx(0.74 * 0.02 + 2.76 * 0.015)
    assert m.components["cpu_dynamic"] == pytest.approx(2.76 * 0.015)
    before = meter.read().energy_j
    cpu.value -= 1.0  # a CPU clock that steps back must not make energy go down
    assert meter.read().energy_j >= before


def test_cpu_time_model_refuses_accelerator_profiles_and_bad_shares():
    with pytest.raises(BadRequest):
        CpuTimeModelMeter(get_profile("nvidia-t4"))
    with pytest.raises(BadRequest):
        CpuTimeModelMeter(get_profile("google-tpu-v4"))
    with pytest.raises(BadRequest):
        CpuTimeModelMeter(get_profile("aws-x86"), vcpus_reserved=0)


def test_windows_are_named_and_checked():
    clock, cpu = FakeClock(), Counter()
    meter = CpuTimeModelMeter(get_profile("aws-x86"), cpu_seconds=cpu, clock=clock)
    meter.begin_window("a")
    clock.advance(1.0)
    meter.begin_window("b")
    clock.advance(1.0)
    assert meter.end_window("b").duration_s == pytest.approx(1.0)
    assert meter.end_window("a").duration_s == pytest.approx(2.0)
    with pytest.raises(ValueError):
        meter.end_window("a")
    meter.begin_window("c")
    with pytest.raises(ValueError):
        meter.begin_window("c")


def test_rapl_sums_packages_and_dram_only(tmp_path):
    zones = build_rapl_tree(tmp_path, max_range_uj=10_000_000)
    clock = FakeClock()
    meter = RaplMeter(tmp_path, clock=clock)
    assert meter.read().energy_j == 0.0
    set_energy(zones["pkg0"], 100 + 2_000_000)  # +2 J
    set_energy(zones["pkg1"], 200 + 1_000_000)  # +1 J
    set_energy(zones["core0"], 50 + 1_500_000)  # inside package-0: not added again
    set_energy(zones["dram0"], 10 + 500_000)  # +0.5 J
    set_energy(zones["psys"], 999 + 9_000_000)  # platform zone overlaps everything: ignored
    clock.advance(1.0)
    r = meter.read()
    assert r.components == pytest.approx({"package": 3.0, "dram": 0.5})
    assert r.energy_j == pytest.approx(3.5)
    assert (r.method, r.measured, r.timestamp_s) == ("rapl", True, clock.now)


def test_rapl_handles_wraparound(tmp_path):
    max_range = 1_000_000
    zones = build_rapl_tree(tmp_path, max_range_uj=max_range)
    set_energy(zones["pkg0"], max_range - 300_000)
    meter = RaplMeter(tmp_path)
    meter.begin_window("w")
    set_energy(zones["pkg0"], 100_000)  # wrapped: 300,000 µJ to the top, then 100,000 µJ
    m = meter.end_window("w")
    assert m.components["package"] == pytest.approx(0.4)
    assert m.energy_j == pytest.approx(0.4)
    set_energy(zones["pkg0"], 600_000)  # no wrap
    assert meter.read().energy_j == pytest.approx(0.9)


def test_rapl_share_scales_host_wide_counters(tmp_path):
    zones = build_rapl_tree(tmp_path, max_range_uj=10_000_000)
    meter = RaplMeter(tmp_path, share=0.25)
    set_energy(zones["pkg0"], 100 + 4_000_000)
    assert meter.read().energy_j == pytest.approx(1.0)


def test_rapl_unreadable_or_missing_is_unavailable(tmp_path):
    with pytest.raises(Unavailable):
        RaplMeter(tmp_path / "nothing-here")
    # energy_uj that cannot be read (root-only on real kernels): a directory stands in here
    zone = tmp_path / "intel-rapl:0"
    zone.mkdir()
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").mkdir()
    (zone / "max_energy_range_uj").write_text("1000\n")
    with pytest.raises(Unavailable, match="unreadable"):
        RaplMeter(tmp_path)


def test_rapl_zone_vanishing_mid_run_is_a_dependency_error(tmp_path):
    write_zone(tmp_path / "intel-rapl:0", "package-0", 5)
    meter = RaplMeter(tmp_path)
    (tmp_path / "intel-rapl:0" / "energy_uj").unlink()
    with pytest.raises(DependencyError):
        meter.read()


def test_rapl_sampler_catches_wraps_between_sparse_reads(tmp_path):
    import threading

    max_range = 1_000_000
    zones = build_rapl_tree(tmp_path, max_range_uj=max_range)
    meter = RaplMeter(tmp_path, sample_interval_s=0.01)
    try:
        # Two full wraps in quarter steps, never read by the caller: only the sampler sees them.
        # (A sample may be missed now and then; a wrap is lost only if four in a row are.)
        value = 100
        for _ in range(8):
            value = (value + 250_000) % max_range
            set_energy(zones["pkg0"], value)
            threading.Event().wait(0.05)
        assert value == 100
        assert meter.read().energy_j == pytest.approx(8 * 0.25)
    finally:
        meter.close()
