"""Replay clock and provider over traces; the static table."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from routing.intensity.base import UnknownRegion
from routing.intensity.replay import ReplayClock, ReplayProvider
from routing.intensity.resilient import LAST_KNOWN, ResilientProvider
from routing.intensity.static import DEFAULT_INTENSITY_G_PER_KWH, StaticProvider
from routing.intensity.traces import Trace, load_trace

UTC = timezone.utc
T0 = datetime(2020, 3, 1, tzinfo=UTC)


class Wall:
    def __init__(self) -> None:
        self.s = 0.0

    def __call__(self) -> float:
        return self.s


def hourly(values) -> Trace:
    return Trace.from_points([(T0 + timedelta(hours=i), v) for i, v in enumerate(values)])


def test_clock_fixed_running_and_set():
    wall = Wall()
    fixed = ReplayClock(T0, 0.0, wall=wall)
    wall.s = 1000
    assert fixed() == T0

    running = ReplayClock.running(T0, speed=3600, wall=wall)  # one wall second = one replayed hour
    wall.s += 2.5
    assert running() == T0 + timedelta(hours=2.5)
    running.set(T0 + timedelta(days=1))
    assert running() == T0 + timedelta(days=1)
    wall.s += 1
    assert running() == T0 + timedelta(days=1, hours=1)  # keeps running from the new point
    running.set(T0, speed=0)
    wall.s += 100
    assert running() == T0
    running.advance(90)
    assert running() == T0 + timedelta(seconds=90)
    with pytest.raises(ValueError):
        ReplayClock(T0, -1)
    with pytest.raises(ValueError):
        ReplayClock(datetime(2020, 1, 1))


def test_replay_follows_the_clock():
    wall = Wall()
    clock = ReplayClock.running(T0, speed=3600, wall=wall)
    provider = ReplayProvider({"DE": hourly([300, 200, 100]), "FR": hourly([50, 60, 70])}, clock)
    first = provider.current("DE")
    assert (first.intensity_g_per_kwh, first.kind, first.source, first.timestamp) == (300.0, "replay", "replay", T0)
    wall.s = 1.5
    moved = provider.current("DE")
    assert moved.intensity_g_per_kwh == 200.0 and moved.fetched_at == T0 + timedelta(hours=1.5)
    assert [r.intensity_g_per_kwh for r in provider.history("DE", T0, T0 + timedelta(days=1))] == [300.0, 200.0]
    assert [r.intensity_g_per_kwh for r in provider.forecast("DE", hours=1)] == [200.0, 100.0]
    with pytest.raises(UnknownRegion):
        provider.current("PL")


def test_replay_past_the_end_is_flagged_stale():
    clock = ReplayClock.fixed(T0)
    chain = ResilientProvider([("replay", ReplayProvider({"DE": hourly([300, 200])}, clock))], clock=clock, max_age_s=3600)
    assert chain.current("DE").stale is False
    clock.set(T0 + timedelta(hours=5))  # the trace ended at T0+1h: its last value is held but old
    late = chain.current("DE")
    assert late.intensity_g_per_kwh == 200.0 and late.stale is True


def test_replay_real_traces_pick_the_cleanest_region(grid_data, tmp_path):
    files = {r: grid_data / f"{r}_2020H1.csv" for r in ("DE", "GB", "FR")}
    if not all(p.exists() for p in files.values()):
        pytest.skip("../shared/data/grid is not available")
    traces = {r: load_trace(p) for r, p in files.items()}
    clock = ReplayClock.fixed(datetime(2020, 4, 15, 12, tzinfo=UTC))
    provider = ReplayProvider(traces, clock)
    values = {r: provider.current(r).intensity_g_per_kwh for r in traces}
    assert min(values, key=values.get) == "FR"
    assert values == {r: traces[r].at(clock()) for r in traces}


def test_static_defaults_are_documented_country_averages():
    provider = StaticProvider()
    reading = provider.current("FR")
    assert (reading.intensity_g_per_kwh, reading.kind, reading.signal) == (56.0, "static", "average-lca")
    assert reading.timestamp == reading.fetched_at  # constant: stamped now, so never stale
    assert DEFAULT_INTENSITY_G_PER_KWH["PL"] > DEFAULT_INTENSITY_G_PER_KWH["DE"] > DEFAULT_INTENSITY_G_PER_KWH["FR"]
    assert len(provider.forecast("FR", hours=3)) == 4
    with pytest.raises(UnknownRegion):
        provider.current("XX")
    with pytest.raises(ValueError):
        StaticProvider({"FR": -1.0})


def test_static_table_overrides_defaults():
    provider = StaticProvider({"eu-west": 56.0, "eu-central": 381.0})
    assert provider.current("eu-central").intensity_g_per_kwh == 381.0
    with pytest.raises(UnknownRegion):
        provider.current("FR")  # an explicit table replaces the defaults
    chain = ResilientProvider([("static", provider), LAST_KNOWN])
    with pytest.raises(UnknownRegion):
        chain.current("nowhere")  # an unconfigured region is a configuration error, not a fallback
