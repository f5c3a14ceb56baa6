"""The EnergyMeter interface: a cumulative reading plus Zeus-style named measurement windows."""

from __future__ import annotations

import math
import threading
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

METHODS = ("nvml", "rapl", "cpu-time-model")


@dataclass(frozen=True)
class EnergyReading:
    """Energy accumulated since the meter started, and how it was obtained.

    ``timestamp_s`` is on the meter's clock (monotonic by default), not the unix epoch.
    ``components`` sum to ``energy_j`` (e.g. ``{"package": .., "dram": ..}``).
    ``static_j`` is the part of ``energy_j`` that the device's idle power accounts for (drawn
    whether or not anything runs): modelled static power for the CPU-time model, the measured idle
    baseline for NVML and RAPL. The rest is what work added.
    """

    energy_j: float
    timestamp_s: float
    method: str
    measured: bool
    components: Mapping[str, float] = field(default_factory=dict)
    static_j: float = 0.0


@dataclass(frozen=True)
class EnergyMeasurement:
    """Energy used during one named window."""

    energy_j: float
    duration_s: float
    method: str
    measured: bool
    components: Mapping[str, float] = field(default_factory=dict)


@runtime_checkable
class EnergyMeter(Protocol):
    method: str
    measured: bool

    def read(self) -> EnergyReading: ...

    def begin_window(self, name: str) -> None: ...

    def end_window(self, name: str) -> EnergyMeasurement: ...


def difference(start: EnergyReading, end: EnergyReading) -> EnergyMeasurement:
    keys = set(start.components) | set(end.components)
    return EnergyMeasurement(
        energy_j=end.energy_j - start.energy_j,
        duration_s=end.timestamp_s - start.timestamp_s,
        method=end.method,
        measured=end.measured,
        components={k: end.components.get(k, 0.0) - start.components.get(k, 0.0) for k in sorted(keys)},
    )


class IdleBaseline:
    """A device's idle power, measured when it is quiet, and the static energy it accounts for.

    The baseline is the lowest power seen over the last ``window_s`` (a device idles at its floor
    between batches; a lower reading means it was quieter than the baseline assumed). Power comes
    from instant samples (``observe_power``, NVML) or from an energy counter averaged over spans of
    at least ``span_s`` (``observe_energy``, RAPL). ``accrue(now)`` integrates the baseline over time:
    the cumulative static energy, monotonic, in the meter's own units before any share is applied.
    Given the power sampled at each read, it also integrates the power above the baseline
    (``active_j``): over a short span that is steadier than the difference of an energy counter
    that moves every 100 ms.
    """

    def __init__(self, initial_w: float | None = None, window_s: float = 300.0, span_s: float = 0.5) -> None:
        self.window_s = window_s
        self.span_s = span_s
        self._mins: deque[tuple[float, float]] = deque()  # (time, power): increasing power front to back
        self._initial_w = initial_w
        self._static_j = 0.0
        self.active_j = 0.0
        self._last_s: float | None = None
        self._span_start: tuple[float, float] | None = None  # (time, energy) where the current span began

    @property
    def power_w(self) -> float:
        if self._mins:
            return self._mins[0][1]
        return self._initial_w or 0.0

    def observe_power(self, power_w: float, now: float) -> None:
        if not math.isfinite(power_w) or power_w < 0:
            return
        while self._mins and self._mins[-1][1] >= power_w:
            self._mins.pop()
        self._mins.append((now, power_w))
        while self._mins and now - self._mins[0][0] > self.window_s and len(self._mins) > 1:
            self._mins.popleft()

    def observe_energy(self, energy_j: float, now: float) -> None:
        if self._span_start is None:
            self._span_start = (now, energy_j)
            return
        t0, e0 = self._span_start
        if now - t0 >= self.span_s:
            self.observe_power((energy_j - e0) / (now - t0), now)
            self._span_start = (now, energy_j)

    def accrue(self, now: float, power_w: float | None = None) -> float:
        if self._last_s is not None and now > self._last_s:
            baseline_w = self.power_w
            self._static_j += baseline_w * (now - self._last_s)
            if power_w is not None:
                self.active_j += max(0.0, power_w - baseline_w) * (now - self._last_s)
        self._last_s = now if self._last_s is None else max(self._last_s, now)
        return self._static_j


class WindowedMeter(ABC):
    """Implements the named windows on top of ``read()``; subclasses supply ``_read()``.

    ``read()`` is serialised by a lock because the reading of every meter here carries state
    (wraparound, interpolation) that two threads must not update at once.
    """

    method: str = ""
    measured: bool = False

    def __init__(self) -> None:
        self._read_lock = threading.Lock()
        self._windows: dict[str, EnergyReading] = {}
        self._windows_lock = threading.Lock()

    @abstractmethod
    def _read(self) -> EnergyReading: ...

    def read(self) -> EnergyReading:
        with self._read_lock:
            return self._read()

    def begin_window(self, name: str) -> None:
        start = self.read()
        with self._windows_lock:
            if name in self._windows:
                raise ValueError(f"measurement window {name!r} is already open")
            self._windows[name] = start

    def end_window(self, name: str) -> EnergyMeasurement:
        end = self.read()
        with self._windows_lock:
            try:
                start = self._windows.pop(name)
            except KeyError:
                raise ValueError(f"measurement window {name!r} was never begun") from None
        return difference(start, end)

    def close(self) -> None:
        """Release what the meter holds (threads, library handles). Reading after close is undefined."""
