"""NvmlMeter against a fake NVML module whose energy counter updates only every 100 ms."""

from __future__ import annotations

import random

import pytest
from energy_fakes import FakeClock, FakeGpu, fake_nvml

from energy.meters import NvmlMeter
from wattgate.errors import DependencyError, Unavailable


def make(power_w=200.0, phase_s=0.037, **kwargs):
    clock = FakeClock()
    gpu = FakeGpu(clock, power_w=power_w, phase_s=phase_s)
    fake_kw = {k: kwargs.pop(k) for k in ("power_supported", "instant_supported") if k in kwargs}
    return clock, gpu, NvmlMeter(0, fake_nvml(gpu, **fake_kw), clock=clock, **kwargs)


def test_counter_alone_would_read_zero_for_a_5ms_window():
    # The premise: the raw counter does not move inside most short windows.
    clock, gpu, meter = make()
    clock.advance(0.040)
    before = gpu.counter_mj()
    clock.advance(0.005)
    assert gpu.counter_mj() == before


def test_5ms_windows_never_read_zero_with_nonzero_power():
    clock, gpu, meter = make(power_w=150.0)
    rng = random.Random(3)
    for i in range(400):
        clock.advance(rng.uniform(0.0, 0.03))  # idle gap at random phase to the counter
        meter.begin_window("b")
        clock.advance(0.005)
        m = meter.end_window("b")
        assert m.energy_j > 0, f"window {i} read 0 J"
        assert (m.method, m.measured) == ("nvml", True)
    # At constant power the interpolation is exact: a 5 ms window is 150 W × 5 ms, give or take a step.
    clock.advance(0.010)
    meter.begin_window("c")
    clock.advance(0.005)
    assert meter.end_window("c").energy_j == pytest.approx(0.75, rel=0.05)


def test_reading_is_monotonic_and_never_flat_when_power_drops():
    # Power falls sharply right after a counter update: the power × time estimate has run ahead.
    clock, gpu, meter = make(power_w=600.0, phase_s=0.0)
    readings = []
    for step in range(200):
        if step == 30:
            gpu.set_power(60.0)
        clock.advance(0.004)
        readings.append(meter.read().energy_j)
    diffs = [b - a for a, b in zip(readings, readings[1:])]
    assert all(d > 0 for d in diffs), "reading went flat or backwards"


def test_converges_to_the_counter_over_ten_seconds_of_bursty_load():
    clock, gpu, meter = make(power_w=90.0)
    rng = random.Random(7)
    start_true = gpu.true_energy_j()
    while clock.now - 1000.0 < 10.0:
        gpu.set_power(rng.choice([90.0, 90.0, 350.0, 650.0]))  # idle, or a batch of 2–40 ms
        clock.advance(rng.uniform(0.002, 0.040))
        meter.read()
    clock.advance(0.2)  # let the counter pass its last update after the final burst
    final = meter.read().energy_j
    true_j = gpu.true_energy_j() - start_true
    assert final == pytest.approx(true_j, rel=0.02)
    # Never further from the counter than one update period at peak power.
    assert abs(final - meter.counter_j()) <= 650.0 * 0.1 + 1e-6
    assert meter.counter_updates >= 95


def test_power_query_unsupported_falls_back_to_the_counter_step():
    clock, gpu, meter = make(power_w=100.0, power_supported=False)
    clock.advance(0.25)
    meter.read()  # sees an update
    clock.advance(0.1)
    meter.read()  # sees the next one: now a per-step average power exists
    meter.begin_window("w")
    clock.advance(0.005)
    assert meter.end_window("w").energy_j == pytest.approx(0.5, rel=0.05)


def test_instant_power_unsupported_falls_back_to_average_power():
    clock, gpu, meter = make(power_w=300.0, power="instant", instant_supported=False)
    meter.begin_window("w")
    clock.advance(0.004)
    assert meter.end_window("w").energy_j == pytest.approx(1.2, rel=1e-6)


def test_instant_power_mode_reads_the_field_value():
    clock, gpu, meter = make(power_w=300.0, power="instant")
    meter.begin_window("w")
    clock.advance(0.004)
    assert meter.end_window("w").energy_j == pytest.approx(1.2, rel=1e-6)


def test_share_scales_and_close_shuts_nvml_down():
    clock = FakeClock()
    gpu = FakeGpu(clock, power_w=100.0, phase_s=0.037)
    nvml = fake_nvml(gpu)
    meter = NvmlMeter(0, nvml, share=0.5, clock=clock)
    clock.advance(1.0)
    # Half of 100 W × 1 s, to within half of one 100 ms counter step (the update instant is estimated).
    assert meter.read().energy_j == pytest.approx(50.0, abs=0.5 * 100.0 * 0.1 / 2 + 1e-9)
    meter.close()
    assert (nvml.calls["init"], nvml.calls["shutdown"]) == (1, 1)


def test_unreadable_nvml_is_unavailable_and_read_errors_convert():
    clock = FakeClock()
    gpu = FakeGpu(clock)
    with pytest.raises(Unavailable):
        NvmlMeter(0, fake_nvml(gpu, init_fails=True), clock=clock)
    with pytest.raises(Unavailable):
        NvmlMeter(3, fake_nvml(gpu), clock=clock)
    nvml = fake_nvml(gpu)
    meter = NvmlMeter(0, nvml, clock=clock)

    def broken(handle):
        raise nvml.NVMLError("NVML_ERROR_GPU_IS_LOST")

    nvml.nvmlDeviceGetTotalEnergyConsumption = broken
    with pytest.raises(DependencyError):
        meter.read()


def test_sampled_mode_reads_without_calling_nvml():
    clock = FakeClock()
    gpu = FakeGpu(clock, power_w=200.0, phase_s=0.021)
    nvml = fake_nvml(gpu)
    # The thread's first sample is an hour away: this test drives poll() itself, deterministically.
    meter = NvmlMeter(0, nvml, sample_interval_s=3600.0, clock=clock)
    try:
        readings = []
        for step in range(300):  # 3 s in 10 ms polls, reads at 1 ms in between
            meter.poll()
            for _ in range(10):
                clock.advance(0.001)
                before = dict(nvml.calls)
                readings.append(meter.read().energy_j)
                assert nvml.calls == before, "read() called NVML in sampled mode"
        assert all(b > a for a, b in zip(readings, readings[1:]))
        assert readings[-1] == pytest.approx(gpu.true_energy_j(), rel=0.02)
        assert meter.counter_updates >= 29

        def broken(handle):
            raise nvml.NVMLError("NVML_ERROR_GPU_IS_LOST")

        nvml.nvmlDeviceGetTotalEnergyConsumption = broken
        with pytest.raises(DependencyError):
            meter.poll()
    finally:
        meter.close()
    assert not meter._sampler.is_alive()


def test_sampler_thread_failure_surfaces_in_read():
    import time

    gpu = FakeGpu(FakeClock(), power_w=100.0)
    nvml = fake_nvml(gpu)
    meter = NvmlMeter(0, nvml, sample_interval_s=0.005)
    try:
        def broken(handle):
            raise nvml.NVMLError("NVML_ERROR_GPU_IS_LOST")

        nvml.nvmlDeviceGetTotalEnergyConsumption = broken
        deadline = time.monotonic() + 5
        while meter._poll_error is None and time.monotonic() < deadline:
            time.sleep(0.005)
        with pytest.raises(DependencyError):
            meter.read()
    finally:
        meter.close()


def test_counter_polled_sparsely_still_converges_and_costs_fewer_counter_calls():
    clock = FakeClock()
    gpu = FakeGpu(clock, power_w=120.0, phase_s=0.063)
    nvml = fake_nvml(gpu)
    meter = NvmlMeter(0, nvml, sample_interval_s=3600.0, clock=clock)
    rng = random.Random(4)
    try:
        start = nvml.calls["energy"]
        last = meter.read().energy_j
        for tick in range(2000):  # 10 s: power every 5 ms, the counter every 50 ms
            if tick % 40 == 0:
                gpu.set_power(rng.choice([120.0, 400.0, 650.0]))
            clock.advance(0.005)
            meter.poll(counter=tick % 10 == 0)
            now = meter.read().energy_j
            assert now > last
            last = now
        assert nvml.calls["energy"] - start == 200
        clock.advance(0.2)
        meter.poll()
        assert meter.read().energy_j == pytest.approx(gpu.true_energy_j(), rel=0.01)
    finally:
        meter.close()
