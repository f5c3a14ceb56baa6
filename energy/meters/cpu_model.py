"""CPU-time model meter: modelled (not measured) energy from CPU-seconds and CCF per-vCPU watts.

CCF models a vCPU's average power as ``min_w + util × (max_w − min_w)``. For a replica that holds
``v`` vCPUs (0.5 if Ray reserves half a CPU) for wall time ``t`` and burns ``c`` CPU-seconds,
with util = c / (v·t), the energy is

    E = v·t·(min_w + c/(v·t)·(max_w − min_w))
      = min_w·v·t            ("cpu_static": idle power of the reserved share, paid even when idle)
      + (max_w − min_w)·c    ("cpu_dynamic": what the work adds)
      + mem_w_per_gb·gb·t    ("memory": CCF 0.392 W/GB for the reserved memory, if any)

``c`` is not capped at ``v·t``: Ray's CPU reservation is a scheduling hint, not a limit, and
CPU-seconds actually burned cost energy whoever reserved them.
"""

from __future__ import annotations

import time
from typing import Callable

from energy.coefficients import MEMORY_POWER_W_PER_GB, HardwareProfile
from energy.meters.base import EnergyReading, WindowedMeter
from wattgate.errors import BadRequest


class CpuTimeModelMeter(WindowedMeter):
    method = "cpu-time-model"
    measured = False

    def __init__(
        self,
        profile: HardwareProfile,
        *,
        vcpus_reserved: float = 1.0,
        memory_gb: float = 0.0,
        cpu_seconds: Callable[[], float] = time.process_time,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if profile.unit != "vcpu" or profile.idle_power_w is None:
            raise BadRequest(f"the CPU-time model needs a per-vCPU profile with idle power, got {profile.name}")
        if vcpus_reserved <= 0 or memory_gb < 0:
            raise BadRequest("vcpus_reserved must be > 0 and memory_gb >= 0")
        self.profile = profile
        self.vcpus_reserved = float(vcpus_reserved)
        self.memory_gb = float(memory_gb)
        self._cpu_seconds = cpu_seconds
        self._clock = clock
        self._t0 = clock()
        self._c0 = cpu_seconds()
        self._last_c = 0.0

    def _read(self) -> EnergyReading:
        now = self._clock()
        wall_s = max(0.0, now - self._t0)
        # max() keeps the reading monotonic should the CPU clock ever step back.
        cpu_s = max(self._last_c, self._cpu_seconds() - self._c0)
        self._last_c = cpu_s
        p = self.profile
        static_j = p.idle_power_w * self.vcpus_reserved * wall_s
        dynamic_j = p.dynamic_power_w * cpu_s
        memory_j = MEMORY_POWER_W_PER_GB * self.memory_gb * wall_s
        components = {"cpu_static": static_j, "cpu_dynamic": dynamic_j}
        if self.memory_gb:
            components["memory"] = memory_j
        return EnergyReading(
            energy_j=static_j + dynamic_j + memory_j,
            timestamp_s=now,
            method=self.method,
            measured=False,
            components=components,
            static_j=static_j + memory_j,
        )
