"""EnergyAnomalyDetector: flags rises in active J per inference with a likely cause, never more traffic."""

from __future__ import annotations

import math
import random

import pytest

from energy.anomaly import EnergyAnomalyDetector, EnergyObservation, batch_band


_now = [0.0]


def _tick(every_s: float) -> float:
    _now[0] += every_s
    return _now[0]


def obs(j_per_inf: float, batch: int = 8, rows: int = 1, hardware: str = "x86", version: str = "1", every_s: float = 0.01,
        **over) -> EnergyObservation:
    fields = dict(model="digits", variant="fp32", pool="fr-x86", hardware=hardware, version=version,
                  batch_size=batch, rows=rows, active_j=j_per_inf * rows, time_s=_tick(every_s))
    fields.update(over)
    return EnergyObservation(**fields)


def feed(det, n, make, rng):
    events = []
    for _ in range(n):
        e = det.observe(make(rng))
        if e is not None:
            events.append(e)
    return events


def noisy(j, rng, spread=0.05):
    return j * (1 + rng.uniform(-spread, spread))


def learned(rng, batch=8):
    det = EnergyAnomalyDetector(warmup=30, window=20)
    assert feed(det, 200, lambda r: obs(noisy(0.002, r), batch=batch), rng) == []
    return det


def test_batch_bands_are_powers_of_two():
    assert [batch_band(b) for b in (1, 2, 3, 4, 7, 8, 31, 32)] == [0, 1, 1, 2, 2, 3, 4, 5]


def test_thread_spin_same_batches_is_flagged_then_clears():
    rng = random.Random(1)
    det = learned(rng)
    events = feed(det, 40, lambda r: obs(noisy(0.006, r)), rng)
    assert [e.state for e in events] == ["started"]
    e = events[0]
    assert (e.model, e.variant, e.pool) == ("digits", "fp32", "fr-x86")
    assert "thread spin" in e.cause and e.ratio >= 1.3 and e.z_score >= 4
    assert det.anomalous()[("digits", "fp32", "fr-x86")] is True
    # The spin stops: the series comes back within its baseline.
    events = feed(det, 40, lambda r: obs(noisy(0.002, r)), rng)
    assert [e.state for e in events] == ["cleared"]
    assert det.anomalous()[("digits", "fp32", "fr-x86")] is False


def test_more_traffic_means_bigger_batches_and_is_not_an_anomaly():
    rng = random.Random(2)
    det = EnergyAnomalyDetector()
    # Light load (10/s): batches of 1-2 at 4 mJ; heavy load (1,000/s): batches of 16-32 at 1 mJ per inference.
    assert feed(det, 200, lambda r: obs(noisy(0.004, r), batch=r.choice([1, 2]), every_s=0.1), rng) == []
    assert feed(det, 300, lambda r: obs(noisy(0.001, r), batch=r.choice([16, 24, 32]), every_s=0.001), rng) == []
    # And back to light load: small batches again because traffic fell, not because batching broke.
    assert feed(det, 100, lambda r: obs(noisy(0.004, r), batch=1, every_s=0.1), rng) == []


def test_batches_collapsed_names_the_cause():
    rng = random.Random(3)
    det = EnergyAnomalyDetector()
    # The series was learned at batch 16 (1 mJ); the band of batch 1 is known to cost 4 mJ.
    feed(det, 60, lambda r: obs(noisy(0.004, r), batch=1, pool="de-x86"), rng)
    feed(det, 200, lambda r: obs(noisy(0.001, r), batch=16), rng)
    events = feed(det, 60, lambda r: obs(noisy(0.004, r), batch=1), rng)
    assert [e.state for e in events] == ["started"]
    assert events[0].cause.startswith("batch sizes collapsed: median batch 16 -> 1")


def test_slower_version_behind_the_same_variant_names_the_variant():
    rng = random.Random(4)
    det = learned(rng)
    events = feed(det, 40, lambda r: obs(noisy(0.005, r), version="2"), rng)
    assert len(events) == 1 and events[0].cause.startswith("variant changed: version 1 -> 2")


def test_hardware_change_is_compared_with_the_old_hardware():
    rng = random.Random(5)
    det = learned(rng)
    events = feed(det, 40, lambda r: obs(noisy(0.004, r), hardware="arm"), rng)
    assert len(events) == 1 and events[0].cause == "hardware changed: x86 -> arm"


def test_a_slow_drift_is_learned_not_flagged():
    rng = random.Random(6)
    det = learned(rng)
    j = 0.002
    for _ in range(3000):
        j *= 1.0002  # +0.02 % per request: x1.8 in the end
        assert det.observe(obs(noisy(j, rng, 0.02))) is None


def test_bad_energy_is_ignored_and_counted_hits_are_skipped():
    rng = random.Random(7)
    det = learned(rng)
    for bad in (math.nan, -1.0, math.inf):
        assert det.observe(obs(0.0, active_j=bad)) is None
    assert det.observe(obs(0.002, rows=0)) is None
    assert det.ignored == 4
    assert det.observe(obs(0.5, batch=0)) is None and det.skipped == 1
    # None of it moved the baseline: a spin is still caught.
    assert [e.state for e in feed(det, 40, lambda r: obs(noisy(0.006, r)), rng)] == ["started"]


def test_per_inference_divides_by_rows():
    rng = random.Random(8)
    det = learned(rng)
    # Four-row requests at 4 x 2 mJ are the same 2 mJ per inference: normal.
    assert feed(det, 60, lambda r: obs(noisy(0.002, r), rows=4), rng) == []


def test_bad_settings_fail_loudly():
    with pytest.raises(ValueError):
        EnergyAnomalyDetector(min_ratio=1.0)
