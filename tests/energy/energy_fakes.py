"""Test doubles for the energy package: a fake clock, a fake NVML module, a fake RAPL sysfs tree."""

from __future__ import annotations

import bisect
import threading
from pathlib import Path
from types import SimpleNamespace


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeGpu:
    """A GPU whose true power is piecewise constant; its energy counter updates every ``period_s``.

    The counter holds the true energy (in whole mJ) as of the last update instant, as NVML does.
    """

    def __init__(self, clock: FakeClock, power_w: float = 0.0, period_s: float = 0.1, phase_s: float = 0.0,
                 counter_start_mj: int = 5_000_000) -> None:
        self.clock = clock
        self.period_s = period_s
        self.phase_s = phase_s
        self.counter_start_mj = counter_start_mj
        self._t0 = clock()
        # breakpoints: (start time, power from then on, true energy at start)
        self._starts = [self._t0]
        self._segments = [(self._t0, power_w, 0.0)]

    def set_power(self, power_w: float) -> None:
        now = self.clock()
        energy = self.true_energy_j(now)
        self._starts.append(now)
        self._segments.append((now, power_w, energy))

    def power_w(self, t: float | None = None) -> float:
        t = self.clock() if t is None else t
        return self._segments[bisect.bisect_right(self._starts, t) - 1][1]

    def true_energy_j(self, t: float | None = None) -> float:
        t = self.clock() if t is None else t
        start, power, energy = self._segments[bisect.bisect_right(self._starts, t) - 1]
        return energy + power * (t - start)

    def counter_mj(self) -> int:
        elapsed = self.clock() - self._t0 - self.phase_s
        # The epsilon keeps 1.0 // 0.1 from giving 9 (0.1 is not exact in binary).
        updates = int(elapsed / self.period_s + 1e-9) if elapsed >= 0 else -1
        if updates < 0:
            return self.counter_start_mj
        t_update = self._t0 + self.phase_s + updates * self.period_s
        return self.counter_start_mj + int(self.true_energy_j(t_update) * 1000)


class NVMLError(Exception):
    pass


def fake_nvml(gpu: FakeGpu, *, power_supported: bool = True, instant_supported: bool = True,
              init_fails: bool = False) -> SimpleNamespace:
    """A module object with the pynvml functions NvmlMeter calls."""
    calls = {"init": 0, "shutdown": 0, "energy": 0, "power": 0}

    def nvmlInit():
        calls["init"] += 1
        if init_fails:
            raise NVMLError("NVML_ERROR_DRIVER_NOT_LOADED")

    def nvmlShutdown():
        calls["shutdown"] += 1

    def nvmlDeviceGetHandleByIndex(index):
        if index != 0:
            raise NVMLError("NVML_ERROR_INVALID_ARGUMENT")
        return "handle-0"

    def nvmlDeviceGetTotalEnergyConsumption(handle):
        calls["energy"] += 1
        return gpu.counter_mj()

    def nvmlDeviceGetPowerUsage(handle):
        calls["power"] += 1
        if not power_supported:
            raise NVMLError("NVML_ERROR_NOT_SUPPORTED")
        return int(gpu.power_w() * 1000)

    def nvmlDeviceGetFieldValues(handle, field_ids):
        calls["power"] += 1
        if not (power_supported and instant_supported):
            return [SimpleNamespace(nvmlReturn=3, value=SimpleNamespace(uiVal=0))]  # NVML_ERROR_NOT_SUPPORTED
        return [SimpleNamespace(nvmlReturn=0, value=SimpleNamespace(uiVal=int(gpu.power_w() * 1000)))]

    return SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=nvmlInit,
        nvmlShutdown=nvmlShutdown,
        nvmlDeviceGetHandleByIndex=nvmlDeviceGetHandleByIndex,
        nvmlDeviceGetTotalEnergyConsumption=nvmlDeviceGetTotalEnergyConsumption,
        nvmlDeviceGetPowerUsage=nvmlDeviceGetPowerUsage,
        nvmlDeviceGetFieldValues=nvmlDeviceGetFieldValues,
        calls=calls,
    )


def write_zone(path: Path, name: str, energy_uj: int, max_range_uj: int = 262_143_328_850) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range_uj}\n")
    return path


def build_rapl_tree(root: Path, *, max_range_uj: int = 1_000_000) -> dict[str, Path]:
    """Two packages with core and dram subzones, a psys zone and the control-type folder, as sysfs has."""
    (root / "intel-rapl").mkdir(parents=True)
    (root / "intel-rapl" / "enabled").write_text("1\n")
    zones = {
        "pkg0": write_zone(root / "intel-rapl:0", "package-0", 100, max_range_uj),
        "core0": write_zone(root / "intel-rapl:0" / "intel-rapl:0:0", "core", 50, max_range_uj),
        "dram0": write_zone(root / "intel-rapl:0" / "intel-rapl:0:1", "dram", 10, max_range_uj),
        "pkg1": write_zone(root / "intel-rapl:1", "package-1", 200, max_range_uj),
        "psys": write_zone(root / "intel-rapl:2", "psys", 999, max_range_uj),
    }
    # sysfs also links every subzone at the top level; the meter must not count it twice.
    (root / "intel-rapl:0:1").symlink_to(zones["dram0"], target_is_directory=True)
    return zones


def set_energy(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


class ScriptedMeter:
    """A thread-safe meter whose energy grows by a caller-chosen amount per read (windows unused)."""

    method = "rapl"
    measured = True

    def __init__(self, step) -> None:
        self._step = step
        self._lock = threading.Lock()
        self.energy_j = 0.0
        self.t = 0.0
        self.reads = 0

    def read(self):
        from energy.meters.base import EnergyReading

        with self._lock:
            self.energy_j += self._step()
            self.t += 0.001
            self.reads += 1
            return EnergyReading(self.energy_j, self.t, self.method, self.measured, {"package": self.energy_j})

    def begin_window(self, name):  # pragma: no cover - not used by the attributor
        raise NotImplementedError

    def end_window(self, name):  # pragma: no cover
        raise NotImplementedError
