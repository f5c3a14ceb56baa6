"""The EnergyMeter interface: a cumulative reading plus Zeus-style named measurement windows."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

METHODS = ("nvml", "rapl", "cpu-time-model")


@dataclass(frozen=True)
class EnergyReading:
    """Energy accumulated since the meter started, and how it was obtained.

    ``timestamp_s`` is on the meter's clock (monotonic by default), not the unix epoch.
    ``components`` sum to ``energy_j`` (e.g. ``{"package": .., "dram": ..}``).
    """

    energy_j: float
    timestamp_s: float
    method: str
    measured: bool
    components: Mapping[str, float] = field(default_factory=dict)


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
