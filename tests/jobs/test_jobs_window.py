"""The window choice on forecasts: pure, no clock, no provider."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from jobs.window import best_window, horizon_end
from routing.intensity.base import IntensityReading

T0 = datetime(2020, 3, 2, 17, 0, tzinfo=timezone.utc)


def series(region: str, values: list[float], step_min: int = 30) -> list[IntensityReading]:
    return [IntensityReading(region, v, T0 + timedelta(minutes=step_min * i), T0, "test", "forecast", "average")
            for i, v in enumerate(values)]


def test_the_cleanest_window_before_the_deadline_wins():
    f = {"DE": series("DE", [500, 480, 300, 250, 260, 100, 90])}
    w = best_window(f, T0, T0 + timedelta(hours=2, minutes=30), run_s=3600)
    # 100 and 90 would be cleaner but a 1 h run from 02:30 ends past the deadline.
    assert w.start == T0 + timedelta(minutes=90) and w.mean_g_per_kwh == (250 + 260) / 2
    assert w.now_g_per_kwh == (500 + 480) / 2


def test_a_run_longer_than_a_step_averages_over_the_steps_it_spans():
    f = {"DE": series("DE", [100, 500, 500, 120, 130, 500])}
    w = best_window(f, T0, T0 + timedelta(hours=3), run_s=3600)
    assert w.start == T0 + timedelta(minutes=90) and w.mean_g_per_kwh == 125


def test_ties_go_to_the_earliest_start_and_regions_compete():
    f = {"DE": series("DE", [300, 200, 200]), "FR": series("FR", [250, 250, 60])}
    w = best_window(f, T0, T0 + timedelta(hours=2), run_s=60)
    assert (w.region, w.start) == ("FR", T0 + timedelta(minutes=60))
    flat = best_window({"DE": series("DE", [200, 200, 200])}, T0, T0 + timedelta(hours=2), run_s=60)
    assert flat.start == T0  # never delayed for nothing


def test_no_forecast_is_no_window_and_the_horizon_is_one_step_past_the_last_point():
    assert best_window({}, T0, T0 + timedelta(hours=1), 60) is None
    assert horizon_end(series("DE", [1, 2, 3])) == T0 + timedelta(minutes=90)
