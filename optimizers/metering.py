"""Meters optimizer runs through the energy/ meters and turns a window into a card's training record."""

from __future__ import annotations

import platform
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Protocol


class Measurement(Protocol):
    energy_j: float
    duration_s: float
    method: str
    measured: bool


class Meter(Protocol):
    """The slice of energy.meters.base.EnergyMeter we use; a late change there is a fix here only."""

    method: str
    measured: bool

    def begin_window(self, name: str) -> None: ...

    def end_window(self, name: str) -> Measurement: ...


def make_run_meter(host_profile: str = "aws-x86", vcpus: float = 1.0) -> Meter:
    """A CPU-time model meter for this process (modelled, never measured: this host has no RAPL access)."""
    from energy.coefficients import get_profile
    from energy.meters.cpu_model import CpuTimeModelMeter

    return CpuTimeModelMeter(get_profile(host_profile), vcpus_reserved=vcpus)


def hardware_description() -> str:
    from wattgate.machine import cpu_model

    return f"{platform.machine()} {cpu_model()}"


@dataclass
class RunRecord:
    """What a metered step cost; ``to_dict`` is the card's training-record entry."""

    step: str
    energy_j: float = 0.0
    duration_s: float = 0.0
    cpu_s: float = 0.0
    method: str = ""
    measured: bool = False
    hardware: str = field(default_factory=hardware_description)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["energy_j"] = round(self.energy_j, 4)
        out["duration_s"] = round(self.duration_s, 4)
        out["cpu_s"] = round(self.cpu_s, 4)
        return out


_window_ids = iter(range(1 << 62))


@contextmanager
def metered(meter: Meter, step: str, **details: Any) -> Iterator[RunRecord]:
    """Meter the body; the yielded record is filled in when the body ends (also on error)."""
    record = RunRecord(step=step, method=meter.method, measured=meter.measured, details=dict(details))
    window = f"optimizers:{step}:{next(_window_ids)}"
    cpu0 = time.process_time()
    meter.begin_window(window)
    try:
        yield record
    finally:
        m = meter.end_window(window)
        record.energy_j, record.duration_s = m.energy_j, m.duration_s
        record.method, record.measured = m.method, m.measured
        record.cpu_s = time.process_time() - cpu0
