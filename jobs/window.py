"""The minimum-carbon window before a deadline, chosen on intensity forecasts (pure: no I/O, no clock).

A forecast is a step function: each reading holds from its timestamp until the next one (the last
for one more median step, the horizon). For each region the job may run in and each start (now,
or a forecast point before the deadline), the window is ``[start, start + run_s]``; its cost is the
time-weighted mean intensity over it. The least cost wins; ties go to the earliest start, so a job
is never delayed for nothing. The router then runs it in whatever pool is cleanest at that time, so
minimising over regions chooses *when* and *where* together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import median
from typing import Mapping, Sequence

from routing.intensity.base import IntensityReading

__all__ = ["Window", "best_window", "horizon_end"]

# A cost within this share of the best counts as equal: the earlier window wins.
TIE = 1e-6


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    region: str
    mean_g_per_kwh: float
    now_g_per_kwh: float  # the best region's mean over a window starting now (the run-now cost)


def horizon_end(points: Sequence[IntensityReading]) -> datetime | None:
    """Where a forecast stops being a forecast: its last point plus one median step."""
    if not points:
        return None
    times = [p.timestamp for p in points]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    step = timedelta(seconds=median(gaps)) if gaps else timedelta(hours=1)
    return times[-1] + step


def _mean(points: Sequence[IntensityReading], end_of_last: datetime, start: datetime, end: datetime) -> float | None:
    """Time-weighted mean of the step function over [start, end]; None if the forecast does not cover it."""
    if not points or start < points[0].timestamp - timedelta(hours=1) or end > end_of_last:
        return None
    total = weight = 0.0
    for i, p in enumerate(points):
        seg_start = max(p.timestamp, start) if i else start  # the first point also covers just before it
        seg_end = min(points[i + 1].timestamp if i + 1 < len(points) else end_of_last, end)
        if seg_end > seg_start:
            dt = (seg_end - seg_start).total_seconds()
            total += p.intensity_g_per_kwh * dt
            weight += dt
    if weight <= 0:  # a zero-length window: the value in force at start
        at = [p for p in points if p.timestamp <= start]
        return (at[-1] if at else points[0]).intensity_g_per_kwh
    return total / weight


def best_window(forecasts: Mapping[str, Sequence[IntensityReading]], now: datetime, deadline: datetime,
                run_s: float) -> Window | None:
    """The least-carbon window of ``run_s`` seconds that starts at or after ``now`` and ends by
    ``deadline``, over every region's forecast; None if no forecast covers even a run that starts now."""
    length = timedelta(seconds=max(run_s, 1.0))
    best: Window | None = None
    now_best: float | None = None
    for region, points in sorted(forecasts.items()):
        points = sorted(points, key=lambda p: p.timestamp)
        end_of_last = horizon_end(points)
        if end_of_last is None:
            continue
        starts = [now] + [p.timestamp for p in points if now < p.timestamp and p.timestamp + length <= deadline]
        for s in starts:
            cost = _mean(points, end_of_last, s, s + length)
            if cost is None:
                continue
            if s == now:
                now_best = cost if now_best is None else min(now_best, cost)
            if best is None or cost < best.mean_g_per_kwh * (1 - TIE) or (
                    cost <= best.mean_g_per_kwh * (1 + TIE) and s < best.start):
                best = Window(s, s + length, region, cost, 0.0)
    if best is None:
        return None
    return Window(best.start, best.end, best.region, best.mean_g_per_kwh,
                  now_best if now_best is not None else best.mean_g_per_kwh)
