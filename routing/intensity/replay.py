"""Replay of recorded grid-intensity traces against a settable clock, and the clock itself."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping

from .base import IntensityReading, ReadingKind, UnknownRegion
from .traces import Trace

__all__ = ["ReplayClock", "ReplayProvider"]


class ReplayClock:
    """Replay time: fixed at one instant (speed 0), or running from ``start`` at ``speed`` x wall time.

    ``ReplayClock.running(t0, speed=3600)`` makes one wall second one replayed hour, counted from
    the moment the clock is created (or last ``set``). Calling the clock returns the replay time.
    """

    def __init__(self, start: datetime, speed: float = 0.0, *, wall: Callable[[], float] = time.monotonic) -> None:
        if speed < 0:
            raise ValueError(f"replay speed must be >= 0, not {speed}")
        self._wall = wall
        self._lock = threading.Lock()
        self._anchor_replay = self._utc(start)
        self._anchor_wall = wall()
        self._speed = float(speed)

    @staticmethod
    def _utc(when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError(f"replay time {when!r} must be timezone-aware")
        return when.astimezone(timezone.utc)

    @classmethod
    def fixed(cls, when: datetime) -> "ReplayClock":
        return cls(when, 0.0)

    @classmethod
    def running(cls, start: datetime, speed: float = 1.0, *, wall: Callable[[], float] = time.monotonic) -> "ReplayClock":
        return cls(start, speed, wall=wall)

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        with self._lock:
            elapsed_s = (self._wall() - self._anchor_wall) * self._speed
            return self._anchor_replay + timedelta(seconds=elapsed_s)

    __call__ = now

    def set(self, when: datetime, speed: float | None = None) -> None:
        """Jump to ``when``; a running clock keeps running from there (at ``speed`` if given)."""
        if speed is not None and speed < 0:
            raise ValueError(f"replay speed must be >= 0, not {speed}")
        with self._lock:
            self._anchor_replay = self._utc(when)
            self._anchor_wall = self._wall()
            if speed is not None:
                self._speed = float(speed)

    def advance(self, seconds: float) -> None:
        self.set(self.now() + timedelta(seconds=seconds))


class ReplayProvider:
    """Serves recorded traces as if live: ``current`` is the trace value in force at the clock's time.

    ``forecast`` returns the trace's own future, i.e. a perfect forecast; that suits simulations
    and oracles, and ``source="replay"`` keeps it from being mistaken for a real forecast.
    """

    name = "replay"
    update_period_s = 0.0  # a lookup is a bisect; caching would only hide clock jumps

    def __init__(
        self, traces: Mapping[str, Trace], clock: Callable[[], datetime], *, signal: str = "average"
    ) -> None:
        if not traces:
            raise ValueError("ReplayProvider needs at least one trace")
        self.traces = dict(traces)
        self.clock = clock
        self._signal = signal

    def _trace(self, region: str) -> Trace:
        try:
            return self.traces[region]
        except KeyError:
            raise UnknownRegion(f"replay: no trace for region {region!r} (known: {sorted(self.traces)})") from None

    def _reading(self, region: str, when: datetime, value: float, now: datetime, kind: ReadingKind) -> IntensityReading:
        return IntensityReading(
            region=region,
            intensity_g_per_kwh=value,
            timestamp=when,
            fetched_at=now,
            source=self.name,
            kind=kind,
            signal=self._signal,
        )

    def current(self, region: str) -> IntensityReading:
        trace, now = self._trace(region), self.clock()
        i = trace.index_at(now)
        return self._reading(region, trace.times[i], trace.intensity_g_per_kwh[i], now, "replay")

    def history(self, region: str, start: datetime, end: datetime) -> list[IntensityReading]:
        trace, now = self._trace(region), self.clock()
        end = min(end, now)  # the replayed past only; the future is forecast()'s business
        return [
            self._reading(region, t, v, now, "history")
            for t, v in zip(trace.times, trace.intensity_g_per_kwh)
            if start <= t <= end
        ]

    def forecast(self, region: str, hours: float) -> list[IntensityReading]:
        trace, now = self._trace(region), self.clock()
        first = trace.sample_time_at(now)
        horizon = now + timedelta(hours=hours)
        return [
            self._reading(region, t, v, now, "forecast")
            for t, v in zip(trace.times, trace.intensity_g_per_kwh)
            if first <= t <= horizon
        ]
