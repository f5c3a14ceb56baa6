"""Per-request energy: each batch is charged everything metered since the previous charge, split by work.

A response leaves before the replica's period ends, so idle energy is charged *forward*: a batch
that ends takes the energy accumulated since the last charge (the idle time since the previous
batch plus its own run) and splits it over its requests by work units (rows, or tokens). What a
response reports is then final, and energy is conserved exactly:

    metered == attributed + written_off + pending

``pending`` is what has been metered but not yet charged (it waits for the next batch);
``written_off`` is pending energy explicitly given up on (shutdown, failed batches).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from energy.coefficients import HardwareProfile
from energy.meters.base import EnergyMeter, EnergyReading


@dataclass(frozen=True)
class RequestEnergy:
    """One request's share of a charge. ``energy_j == active_j + idle_j``.

    ``reserved_s`` is the request's share (by work) of the wall time the charge covered, the
    "time reserved" that embodied carbon is amortised over.
    """

    energy_j: float
    active_j: float
    idle_j: float
    method: str
    measured: bool
    batch_size: int
    work_share: float
    reserved_s: float = 0.0


@dataclass(frozen=True)
class AttributionTotals:
    """One consistent view of the books, from a single meter reading."""

    metered_j: float
    attributed_j: float
    written_off_j: float
    pending_j: float
    method: str
    measured: bool
    requests: int
    batches: int


@dataclass(frozen=True)
class BatchToken:
    """Returned by :meth:`EnergyAttributor.begin_batch`; pass it to ``charge_batch``."""

    id: int
    reading: EnergyReading


def _shares(work_units: Sequence[float]) -> list[float]:
    units = [float(u) for u in work_units]
    if any(not (u >= 0) for u in units):  # also rejects NaN
        raise ValueError(f"work units must be >= 0, got {units}")
    total = sum(units)
    if total == 0:
        return [1.0 / len(units)] * len(units)
    return [u / total for u in units]


class EnergyAttributor:
    """One per replica process; thread-safe, so batches of several models may end concurrently."""

    def __init__(self, meter: EnergyMeter) -> None:
        self._meter = meter
        self._lock = threading.Lock()
        first = meter.read()
        self._start = first
        self._charged_reading = first  # energy up to this reading has been charged or written off
        self._attributed_j = 0.0
        self._written_off_j = 0.0
        self._requests = 0
        self._batches = 0
        self._ids = itertools.count(1)

    @property
    def meter(self) -> EnergyMeter:
        return self._meter

    def begin_batch(self) -> BatchToken:
        """Optional: call right before a batch runs so its charge separates active from idle energy."""
        return BatchToken(next(self._ids), self._meter.read())

    def charge_batch(self, work_units: Sequence[float], token: BatchToken | None = None) -> list[RequestEnergy]:
        """Charge everything metered since the previous charge to this batch, split by ``work_units``.

        Without a token all of it is reported as ``active_j``. With concurrent batches the
        active/idle split is approximate (one batch's active span may overlap another's); the
        total is exact either way.
        """
        if len(work_units) == 0:
            return []
        shares = _shares(work_units)
        with self._lock:
            # Read under the lock: charges must cover consecutive, non-overlapping intervals.
            now = self._meter.read()
            pool_j = max(0.0, now.energy_j - self._charged_reading.energy_j)
            period_s = max(0.0, now.timestamp_s - self._charged_reading.timestamp_s)
            if token is None:
                active_pool_j = pool_j
            else:
                active_pool_j = min(pool_j, max(0.0, now.energy_j - token.reading.energy_j))
            self._charged_reading = now
            self._attributed_j += pool_j
            self._requests += len(shares)
            self._batches += 1
        return _split(pool_j, active_pool_j, period_s, shares, now)

    def write_off(self) -> float:
        """Give up on the pending energy (e.g. at shutdown, or after a failed batch); returns joules."""
        with self._lock:
            now = self._meter.read()
            pending_j = max(0.0, now.energy_j - self._charged_reading.energy_j)
            self._charged_reading = now
            self._written_off_j += pending_j
            return pending_j

    def totals(self) -> AttributionTotals:
        with self._lock:
            now = self._meter.read()
            metered_j = now.energy_j - self._start.energy_j
            return AttributionTotals(
                metered_j=metered_j,
                attributed_j=self._attributed_j,
                written_off_j=self._written_off_j,
                pending_j=max(0.0, now.energy_j - self._charged_reading.energy_j),
                method=now.method,
                measured=now.measured,
                requests=self._requests,
                batches=self._batches,
            )

    def unattributed_j(self) -> float:
        """Metered but not charged to any request: pending plus written off."""
        t = self.totals()
        return t.pending_j + t.written_off_j


def _split(pool_j: float, active_j: float, period_s: float, shares: list[float], now: EnergyReading) -> list[RequestEnergy]:
    out: list[RequestEnergy] = []
    given_j = 0.0
    given_active = 0.0
    last = len(shares) - 1
    for i, share in enumerate(shares):
        if i < last:
            e, a = pool_j * share, active_j * share
            given_j += e
            given_active += a
        else:
            # The last request takes the remainder so the batch sums to the pool exactly.
            e, a = pool_j - given_j, active_j - given_active
        out.append(
            RequestEnergy(
                energy_j=e,
                active_j=a,
                idle_j=e - a,
                method=now.method,
                measured=now.measured,
                batch_size=len(shares),
                work_share=share,
                reserved_s=period_s * share,
            )
        )
    return out


def combine_energy(parts: Sequence[RequestEnergy]) -> RequestEnergy:
    """One request made of several charged pieces (e.g. one per sentence) pays their sum."""
    if len(parts) == 1:
        return parts[0]
    return dataclasses.replace(
        parts[0],
        energy_j=sum(p.energy_j for p in parts),
        active_j=sum(p.active_j for p in parts),
        idle_j=sum(p.idle_j for p in parts),
        reserved_s=sum(p.reserved_s for p in parts),
        work_share=sum(p.work_share for p in parts),
        batch_size=max(p.batch_size for p in parts),
    )


def cache_hit_energy(cpu_s: float, profile: HardwareProfile) -> RequestEnergy:
    """A cache hit's own modelled cost: its CPU-seconds at one busy vCPU's full power (CCF max watts).

    Charged outside every model's pool: a hit never ran the model, so it takes none of its energy.
    """
    if cpu_s < 0:
        raise ValueError("cpu_s must be >= 0")
    if profile.unit != "vcpu":
        raise ValueError(f"cache hits are charged with a per-vCPU profile, got {profile.name}")
    energy_j = cpu_s * profile.max_power_w
    return RequestEnergy(
        energy_j=energy_j,
        active_j=energy_j,
        idle_j=0.0,
        method="cpu-time-model",
        measured=False,
        batch_size=1,
        work_share=1.0,
        reserved_s=cpu_s,
    )


class CpuTimer:
    """Times CPU-seconds of a code span (the thread's own, by default), for :func:`cache_hit_energy`."""

    def __init__(self, cpu_seconds: Callable[[], float] = time.thread_time) -> None:
        self._cpu_seconds = cpu_seconds
        self.cpu_s = 0.0

    def __enter__(self) -> "CpuTimer":
        self._t0 = self._cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_s = max(0.0, self._cpu_seconds() - self._t0)
