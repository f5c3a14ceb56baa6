"""Per-request energy: each batch is charged everything metered since the previous charge, split by work.

A response leaves before the replica's period ends, so idle energy is charged *forward*: a batch
that ends takes the energy accumulated since the last charge (the idle time since the previous
batch plus its own run) and splits it over its requests by work units (rows, or tokens). What a
response reports is then final, and energy is conserved exactly:

    metered == active + idle + start-up + written_off + pending

Each charge is split in two. ``active_j`` is the request work: the dynamic energy (above the device's
static or idle-baseline power, ``EnergyReading.static_j``) metered while the process had requests in
hand (:meth:`EnergyAttributor.request_started` / ``request_finished``). ``idle_j`` is the rest of the
period: static power since the previous charge, plus background work while no request was in hand.
A caller that reports no requests gets the dynamic energy since the batch's token (or since the
previous charge, without one) as active.

``start-up`` is what was metered before the replica was ready (model load, warm-up, the serving
framework's own start): :meth:`EnergyAttributor.end_startup` books it, once, when the replica is
ready, and it is never charged to a request. ``pending`` is metered but not yet charged (it
waits for the next batch); ``written_off`` is pending energy given up on (shutdown).
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from dataclasses import dataclass
from typing import Sequence

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
    """One consistent view of the books, from a single meter reading.

    ``metered_j == attributed_j + startup_j + written_off_j + pending_j`` and
    ``attributed_j == active_j + idle_j``.
    """

    metered_j: float
    attributed_j: float
    written_off_j: float
    pending_j: float
    method: str
    measured: bool
    requests: int
    batches: int
    active_j: float = 0.0
    idle_j: float = 0.0
    startup_j: float = 0.0


@dataclass(frozen=True)
class BatchToken:
    """Returned by :meth:`EnergyAttributor.begin_batch`; pass it to ``charge_batch``. ``owner``
    names the attributor that made it: a token that travelled to another process means nothing there."""

    id: int
    reading: EnergyReading
    owner: int = 0


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
        self._active_j = 0.0
        self._written_off_j = 0.0
        self._startup_j = 0.0
        self._starting = True
        # Requests in hand, and the dynamic energy metered while there were none (the process's own
        # background work): idle, not any request's run. Tracked once a caller reports requests.
        self._tracking = False
        self._in_flight = 0
        self._quiet_since: EnergyReading | None = first
        self._background_j = 0.0
        self._requests = 0
        self._batches = 0
        self._ids = itertools.count(1)
        self._owner = int.from_bytes(os.urandom(8), "little")

    @property
    def meter(self) -> EnergyMeter:
        return self._meter

    def begin_batch(self) -> BatchToken:
        """Call when a batch's work begins (its first request's arrival, or right before it runs), and
        pass the token to ``charge_batch``: what the meter adds from there to the charge, above
        static power, is the batch's active energy."""
        return BatchToken(next(self._ids), self._meter.read(), self._owner)

    def owns(self, token: BatchToken | None) -> bool:
        return token is not None and token.owner == self._owner

    def end_startup(self) -> float:
        """The replica is ready: everything metered so far is start-up, never a request's. Once only;
        returns the joules booked (0 on later calls)."""
        with self._lock:
            if not self._starting:
                return 0.0
            self._starting = False
            now = self._meter.read()
            startup_j = max(0.0, now.energy_j - self._charged_reading.energy_j)
            self._startup_j += startup_j
            self._background_j = 0.0  # start-up took it all
            self._quiet_since = now if self._in_flight == 0 else None
            self._charged_reading = now
            return startup_j

    def request_started(self) -> None:
        """A request is in hand: the process's dynamic energy counts as request work (active) from
        now until no request is left. Pair with :meth:`request_finished`."""
        with self._lock:
            self._tracking = True
            if self._in_flight == 0:
                self._fold_quiet(self._meter.read())
                self._quiet_since = None
            self._in_flight += 1

    def request_finished(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            if self._in_flight == 0:
                self._quiet_since = self._meter.read()

    def _fold_quiet(self, now: EnergyReading) -> None:
        # Caller holds the lock: the dynamic energy of a quiet span so far is background, not a run's.
        if self._quiet_since is not None:
            self._background_j += max(0.0, _dynamic_j(now) - _dynamic_j(self._quiet_since))
            self._quiet_since = now

    def charge_batch(self, work_units: Sequence[float], token: BatchToken | None = None) -> list[RequestEnergy]:
        """Charge everything metered since the previous charge to this batch, split by ``work_units``.

        Once requests are reported (:meth:`request_started`), active is the dynamic energy metered
        while requests were in hand; otherwise the dynamic energy since ``token`` (or since the
        previous charge, without one). With concurrent batches the split between batches is
        approximate; the total is exact either way.
        """
        if len(work_units) == 0:
            return []
        shares = _shares(work_units)
        if token is not None and not self.owns(token):
            raise ValueError("this batch token was made by another attributor")
        with self._lock:
            # Read under the lock: charges must cover consecutive, non-overlapping intervals.
            now = self._meter.read()
            last = self._charged_reading
            pool_j = max(0.0, now.energy_j - last.energy_j)
            period_s = max(0.0, now.timestamp_s - last.timestamp_s)
            if self._tracking:
                if self._in_flight == 0:
                    self._fold_quiet(now)
                dynamic_j = pool_j - (now.static_j - last.static_j) - self._background_j
                self._background_j = 0.0
            elif token is None:
                dynamic_j = pool_j - (now.static_j - last.static_j)
            else:
                start = token.reading if token.reading.energy_j >= last.energy_j else last
                dynamic_j = (now.energy_j - start.energy_j) - (now.static_j - start.static_j)
            active_pool_j = min(pool_j, max(0.0, dynamic_j))
            self._charged_reading = now
            self._attributed_j += pool_j
            self._active_j += active_pool_j
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
                active_j=self._active_j,
                idle_j=self._attributed_j - self._active_j,
                startup_j=self._startup_j,
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


def _dynamic_j(reading: EnergyReading) -> float:
    return reading.energy_j - reading.static_j
