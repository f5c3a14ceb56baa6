"""NVML meter: measured GPU energy from the driver's energy counter, interpolated between its updates.

``nvmlDeviceGetTotalEnergyConsumption`` (mJ since driver load) moves only about every 100 ms,
while a batch takes 2–40 ms, so read alone a short window would see 0 J or a whole 100 ms step.
The reading is therefore

    counter_j(at its last update) + power_w × (now − that update)

with power from ``nvmlDeviceGetPowerUsage`` (mW); the update instant is estimated as the middle
of the span in which it must have happened (since the last read, and within ``update_period_s``).
When the counter moves, the estimate snaps to
it; if the estimate had run ahead (power fell), it does not step back: it keeps rising at
``catchup_fraction`` of the sampled power until the counter passes it. So the reading is
monotonic, never flat while power is nonzero, and stays within one update period's energy of the
counter: over long periods it converges to the counter.

With ``sample_interval_s`` set, a thread polls NVML and ``read()`` only does arithmetic (~3 µs
instead of ~2.5 ms per read on the H200 we measured): use it wherever batches are short.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Literal

from energy.meters.base import EnergyReading, IdleBaseline, WindowedMeter
from wattgate.errors import DependencyError, Unavailable

# pynvml's NVML_FI_DEV_POWER_INSTANT; kept here so a fake module needs not define it.
_FI_DEV_POWER_INSTANT = 186


def load_nvml() -> Any:
    try:
        import pynvml  # nvidia-ml-py; imported lazily so CPU-only hosts never need it
    except ImportError as exc:
        raise Unavailable("NVML is not available: the nvidia-ml-py package is not installed") from exc
    return pynvml


class NvmlMeter(WindowedMeter):
    method = "nvml"
    measured = True

    def __init__(
        self,
        device_index: int = 0,
        nvml: Any = None,
        *,
        share: float = 1.0,
        power: Literal["average", "instant"] = "instant",
        catchup_fraction: float = 0.5,
        update_period_s: float = 0.1,
        sample_interval_s: float | None = None,
        counter_interval_s: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if not 0 < share <= 1:
            raise ValueError("share must lie in (0, 1]")
        if not 0 < catchup_fraction <= 1:
            raise ValueError("catchup_fraction must lie in (0, 1]")
        if update_period_s <= 0 or counter_interval_s <= 0 or (sample_interval_s is not None and sample_interval_s <= 0):
            raise ValueError("update_period_s, counter_interval_s and sample_interval_s must be > 0")
        self._nvml = nvml if nvml is not None else load_nvml()
        self.device_index = device_index
        self.share = float(share)
        self.power_mode = power
        self.update_period_s = update_period_s
        self._catchup = catchup_fraction
        self._clock = clock
        try:
            self._nvml.nvmlInit()
            self._handle = self._nvml.nvmlDeviceGetHandleByIndex(device_index)
            counter = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception as exc:  # NVMLError and its many subclasses, or a missing symbol
            raise Unavailable(f"NVML device {device_index} has no readable energy counter: {exc}") from exc
        now = clock()
        self._counter0_mj = counter
        self._last_counter_mj = counter
        self._changed_at_s = now  # estimated instant of the counter's last update
        self._counter_power_w = 0.0  # average power over the last counter step: fallback
        self._power_w = 0.0
        self._last_counter_poll_s = now
        self._reported_j = 0.0  # before ``share``
        self._last_read_s = now
        self._poll_error: Exception | None = None
        self.counter_updates = 0
        # Idle power: measured at start (the GPU is assumed quiet while the meter is built), then
        # re-measured as the lowest power sampled over the last few minutes.
        self.idle = IdleBaseline()
        self.idle.observe_power(self._sample_power_w() or 0.0, now)
        self.idle.accrue(now)
        # With a sampler, NVML is polled off the request path and read() makes no NVML call. On the
        # H200 we measured, one energy-counter call burns ~3-4 ms of CPU while a power call takes
        # ~2 µs: so power is sampled every ``sample_interval_s`` and the counter only every
        # ``counter_interval_s`` (it moves every 100 ms anyway).
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        if sample_interval_s is not None:
            self._sampler = threading.Thread(
                target=self._sample_loop,
                args=(float(sample_interval_s), float(counter_interval_s)),
                name="nvml-sampler",
                daemon=True,
            )
            self._sampler.start()

    def _sample_power_w(self) -> float | None:
        nvml = self._nvml
        try:
            if self.power_mode == "instant":
                value = nvml.nvmlDeviceGetFieldValues(self._handle, [_FI_DEV_POWER_INSTANT])[0]
                if value.nvmlReturn == 0:
                    return value.value.uiVal / 1000.0
            return nvml.nvmlDeviceGetPowerUsage(self._handle) / 1000.0
        except Exception:
            return None  # some boards expose the counter but not power

    def _query_counter(self) -> int:
        try:
            return int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except Exception as exc:
            raise DependencyError(f"NVML energy counter read failed: {exc}") from exc

    def _observe(self, counter: int | None, power_w: float | None, now: float) -> None:
        """Fold one NVML sample into the state (caller holds the read lock)."""
        if counter is not None and counter != self._last_counter_mj:
            # The update happened in (last counter poll, now], and within the last period: take the
            # middle of that span, so the error is at most half of it either way rather than a lag.
            earliest = max(self._last_counter_poll_s, now - self.update_period_s)
            changed_at = min(now, 0.5 * (earliest + now))
            step_s = changed_at - self._changed_at_s
            if step_s > 0:
                self._counter_power_w = (counter - self._last_counter_mj) / 1000.0 / step_s
            self._last_counter_mj = counter
            self._changed_at_s = changed_at
            self.counter_updates += 1
        if counter is not None:
            self._last_counter_poll_s = now
        # Without a power reading, the counter's own last step is the best power estimate.
        self._power_w = max(0.0, self._counter_power_w if power_w is None else power_w)
        if power_w is not None:
            self.idle.observe_power(power_w, now)

    def poll(self, counter: bool = True) -> None:
        """Take one NVML sample now (the sampler thread calls this; so may a test)."""
        # NVML calls happen outside the lock: readers never wait on them.
        value = self._query_counter() if counter else None
        power_w = self._sample_power_w()
        with self._read_lock:
            self._observe(value, power_w, self._clock())

    def _sample_loop(self, interval_s: float, counter_interval_s: float) -> None:
        next_counter_s = 0.0
        while not self._stop.wait(interval_s):
            try:
                due = time.monotonic() >= next_counter_s
                self.poll(counter=due)
                if due:
                    next_counter_s = time.monotonic() + counter_interval_s
                self._poll_error = None
            except DependencyError as exc:
                self._poll_error = exc

    def _read(self) -> EnergyReading:
        if self._sampler is None:
            counter, power_w = self._query_counter(), self._sample_power_w()
            self._observe(counter, power_w, self._clock())
        elif self._poll_error is not None:
            raise self._poll_error
        now = self._clock()
        counter_j = (self._last_counter_mj - self._counter0_mj) / 1000.0
        target_j = counter_j + self._power_w * max(0.0, now - self._changed_at_s)
        if target_j >= self._reported_j:
            self._reported_j = target_j
        else:
            # Ran ahead of the counter: keep moving (a short window must not read 0 J) but slower.
            self._reported_j += self._catchup * self._power_w * max(0.0, now - self._last_read_s)
        self._last_read_s = now
        energy_j = self._reported_j * self.share
        return EnergyReading(
            energy_j=energy_j,
            timestamp_s=now,
            method=self.method,
            measured=True,
            components={"gpu": energy_j},
            # Above-baseline energy from the sampled power; the rest of the reading is idle power.
            static_j=max(0.0, energy_j - self._active_j(now)),
        )

    def _active_j(self, now: float) -> float:
        self.idle.accrue(now, self._power_w)
        return self.idle.active_j * self.share

    def counter_j(self) -> float:
        """The raw driver counter since this meter started (× share), for reconciliation checks."""
        counter = int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        return (counter - self._counter0_mj) / 1000.0 * self.share

    def close(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=1.0)
        try:
            self._nvml.nvmlShutdown()
        except Exception:
            pass
