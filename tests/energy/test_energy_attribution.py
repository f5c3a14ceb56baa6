"""Attribution: conservation over random batches (also from many threads), shares, idle charged forward."""

from __future__ import annotations

import random
import threading

import pytest
from energy_fakes import FakeClock, FakeGpu, ScriptedMeter, fake_nvml

from energy.attribution import EnergyAttributor
from energy.coefficients import get_profile
from energy.meters import CpuTimeModelMeter, NvmlMeter


class CpuSeconds:
    def __init__(self) -> None:
        self.value = 0.0

    def __call__(self) -> float:
        return self.value


def cpu_setup(vcpus=0.5):
    clock, cpu = FakeClock(), CpuSeconds()
    meter = CpuTimeModelMeter(get_profile("aws-x86"), vcpus_reserved=vcpus, cpu_seconds=cpu, clock=clock)
    return clock, cpu, meter, EnergyAttributor(meter)


def test_idle_is_charged_forward_to_the_next_batch_and_split_by_work():
    clock, cpu, meter, attr = cpu_setup(vcpus=1.0)
    clock.advance(2.0)  # idle: 0.74 W × 2 s = 1.48 J static
    token = attr.begin_batch()
    clock.advance(0.01)
    cpu.value += 0.01  # the batch's run: 0.74 W static × 0.01 s + 2.76 W dynamic × 0.01 CPU-s = 0.035 J
    out = attr.charge_batch([1, 3], token)
    assert [r.work_share for r in out] == [0.25, 0.75]
    assert sum(r.energy_j for r in out) == pytest.approx(1.48 + 0.035)
    # Active is what the run added (dynamic power); static power over the whole period is idle.
    assert sum(r.active_j for r in out) == pytest.approx(0.0276)
    assert sum(r.idle_j for r in out) == pytest.approx(1.48 + 0.0074)
    assert out[1].energy_j == pytest.approx(3 * out[0].energy_j)
    assert all(r.energy_j == pytest.approx(r.active_j + r.idle_j) for r in out)
    assert sum(r.reserved_s for r in out) == pytest.approx(2.01)
    assert {(r.method, r.measured, r.batch_size) for r in out} == {("cpu-time-model", False, 2)}
    # The next batch gets only what came after this charge.
    clock.advance(1.0)
    (only,) = attr.charge_batch([5])
    assert only.energy_j == pytest.approx(0.74)
    # No token and no CPU burned: static power is idle, never active.
    assert (only.active_j, only.idle_j) == (pytest.approx(0.0), pytest.approx(0.74))


def test_zero_work_splits_evenly_and_bad_work_is_rejected():
    clock, cpu, meter, attr = cpu_setup()
    clock.advance(1.0)
    out = attr.charge_batch([0, 0, 0, 0])
    assert [r.work_share for r in out] == [0.25] * 4
    assert attr.charge_batch([]) == []
    with pytest.raises(ValueError):
        attr.charge_batch([1, -1])
    with pytest.raises(ValueError):
        attr.charge_batch([float("nan")])


def test_conservation_over_random_batches_with_a_fake_clock():
    clock, cpu, meter, attr = cpu_setup()
    rng = random.Random(11)
    charged = []
    for _ in range(2000):
        clock.advance(rng.expovariate(1 / 0.05))  # idle gap
        token = attr.begin_batch() if rng.random() < 0.5 else None
        run_s = rng.uniform(0.002, 0.04)
        clock.advance(run_s)
        cpu.value += run_s * rng.uniform(0.2, 1.0)
        charged += attr.charge_batch([rng.randint(1, 64) for _ in range(rng.randint(1, 32))], token)
    clock.advance(3.0)  # trailing idle: pending until a batch comes, or written off
    totals = attr.totals()
    per_request = sum(r.energy_j for r in charged)
    assert totals.pending_j == pytest.approx(0.74 * 0.5 * 3.0)
    assert per_request == pytest.approx(totals.attributed_j, rel=1e-9)
    assert per_request + totals.pending_j == pytest.approx(totals.metered_j, rel=1e-9)
    assert abs(per_request + totals.pending_j - totals.metered_j) <= 0.02 * totals.metered_j  # the bar
    written = attr.write_off()
    after = attr.totals()
    assert written == pytest.approx(totals.pending_j)
    assert after.pending_j == 0.0
    assert per_request + after.written_off_j == pytest.approx(after.metered_j, rel=1e-9)
    assert attr.unattributed_j() == pytest.approx(after.written_off_j)
    assert after.requests == len(charged) and after.batches == 2000


def test_conservation_when_batches_end_concurrently_in_threads():
    rng_lock = threading.Lock()
    rng = random.Random(5)

    def step():
        with rng_lock:
            return rng.uniform(0.0, 0.5)

    meter = ScriptedMeter(step)
    attr = EnergyAttributor(meter)
    results: list[list] = [[] for _ in range(8)]

    def worker(i: int) -> None:
        local = random.Random(i)
        for _ in range(300):
            token = attr.begin_batch()
            results[i].extend(attr.charge_batch([local.randint(1, 10) for _ in range(local.randint(1, 16))], token))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    totals = attr.totals()
    per_request = sum(r.energy_j for rs in results for r in rs)
    assert totals.batches == 8 * 300
    assert per_request == pytest.approx(totals.attributed_j, rel=1e-9)
    assert per_request + totals.pending_j == pytest.approx(totals.metered_j, rel=1e-9)
    assert all(r.energy_j >= 0 and r.idle_j >= -1e-12 for rs in results for r in rs)


def test_nvml_attribution_conserves_against_a_100ms_counter():
    """Batches of 2–40 ms on a GPU whose counter moves every 100 ms: requests sum to the true energy."""
    clock = FakeClock()
    gpu = FakeGpu(clock, power_w=70.0, phase_s=0.013)
    meter = NvmlMeter(0, fake_nvml(gpu), clock=clock)
    attr = EnergyAttributor(meter)
    rng = random.Random(2)
    charged = []
    true_start = gpu.true_energy_j()
    while clock.now - 1000.0 < 10.0:
        gpu.set_power(70.0)
        clock.advance(rng.uniform(0.0, 0.05))
        token = attr.begin_batch()
        gpu.set_power(rng.uniform(250.0, 650.0))
        clock.advance(rng.uniform(0.002, 0.040))
        out = attr.charge_batch([rng.randint(1, 32) for _ in range(rng.randint(1, 8))], token)
        assert all(r.energy_j > 0 and r.active_j > 0 for r in out), "a short batch was charged 0 J"
        charged += out
    gpu.set_power(70.0)
    clock.advance(0.5)
    charged += attr.charge_batch([1])
    true_j = gpu.true_energy_j() - true_start
    per_request = sum(r.energy_j for r in charged)
    assert per_request == pytest.approx(true_j, rel=0.02)
    assert per_request == pytest.approx(attr.totals().metered_j, rel=1e-9)


def test_a_cache_hit_is_charged_from_the_same_books_its_own_cpu_once():
    clock, cpu, meter, attr = cpu_setup(vcpus=1.0)
    clock.advance(1.0)
    arrival = attr.begin_batch()  # the hit's request arrives
    clock.advance(0.001)
    cpu.value += 0.002  # its own work: the cache lookup, decoding the value
    (hit,) = attr.charge_batch([1], arrival)
    assert hit.active_j == pytest.approx(2.76 * 0.002)  # counted once, here, not again in the next batch
    assert hit.idle_j == pytest.approx(0.74 * 1.001)
    t = attr.totals()
    assert t.attributed_j == pytest.approx(hit.energy_j) and t.pending_j == pytest.approx(0.0)


def test_a_token_from_another_attributor_is_refused():
    _, _, _, attr = cpu_setup()
    _, _, _, other = cpu_setup()
    with pytest.raises(ValueError):
        attr.charge_batch([1], other.begin_batch())
    assert not attr.owns(other.begin_batch()) and attr.owns(attr.begin_batch())


def test_start_up_is_its_own_account_and_never_a_requests():
    clock, cpu, meter, attr = cpu_setup(vcpus=1.0)
    clock.advance(5.0)
    cpu.value += 3.0  # model load and warm-up: 0.74 × 5 + 2.76 × 3 = 11.98 J
    assert attr.end_startup() == pytest.approx(11.98)
    assert attr.end_startup() == 0.0  # once
    clock.advance(0.5)
    token = attr.begin_batch()
    cpu.value += 0.001
    (first,) = attr.charge_batch([1], token)
    assert first.energy_j == pytest.approx(0.74 * 0.5 + 2.76 * 0.001)
    t = attr.totals()
    assert t.startup_j == pytest.approx(11.98)
    assert t.metered_j == pytest.approx(t.active_j + t.idle_j + t.startup_j + t.written_off_j + t.pending_j)
    assert t.active_j == pytest.approx(2.76 * 0.001) and t.idle_j == pytest.approx(0.37)


def test_background_work_between_batches_is_idle_not_active():
    clock, cpu, meter, attr = cpu_setup(vcpus=1.0)
    clock.advance(1.0)
    cpu.value += 0.2  # the process's own background work (event loop, framework threads)
    token = attr.begin_batch()
    cpu.value += 0.001
    (r,) = attr.charge_batch([1], token)
    assert r.active_j == pytest.approx(2.76 * 0.001)
    assert r.idle_j == pytest.approx(0.74 + 2.76 * 0.2)


def test_with_requests_reported_active_is_the_work_done_while_requests_were_in_hand():
    clock, cpu, meter, attr = cpu_setup(vcpus=1.0)
    clock.advance(1.0)
    cpu.value += 0.1  # background while no request was in hand: idle
    attr.request_started()
    cpu.value += 0.004  # parsing, routing, queueing: request work
    token = attr.begin_batch()
    cpu.value += 0.001  # the run
    (r,) = attr.charge_batch([1], token)
    cpu.value += 0.002  # accounting and encoding after the charge: still request work, for the next charge
    attr.request_finished()
    clock.advance(1.0)
    cpu.value += 0.05  # background again
    assert r.active_j == pytest.approx(2.76 * 0.005)
    assert r.idle_j == pytest.approx(0.74 * 1.0 + 2.76 * 0.1)
    attr.request_started()
    (hit,) = attr.charge_batch([1])
    attr.request_finished()
    assert hit.active_j == pytest.approx(2.76 * 0.002)
    assert hit.idle_j == pytest.approx(0.74 * 1.0 + 2.76 * 0.05)
