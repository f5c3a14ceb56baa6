"""The report's figures from ledger rows: SCI per group with its E, I, M and R parts, daily trends, top consumers.

Pure: rows in, frozen figures out. Every figure is a sum or ratio of ledger columns, so the groups of
one table add up to the ledger's own totals (``EnergyLedger.totals``).

SCI (ISO/IEC 21031) per request: ``(E x I + M) / R``, with the PUE inside the operational part as in
``energy/carbon.py`` (O = E x PUE x I). A row without an intensity reading (carbon unknown) counts in
E, M and R but has no carbon: SCI is taken over the rows whose carbon is known.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable, Iterable, Sequence

from energy.carbon import J_PER_KWH
from energy.ledger_record import LedgerRecord

NO_TENANT = "(none)"


@dataclass(frozen=True)
class SciRow:
    """One group's SCI and its parts, and how they were obtained."""

    key: str
    requests: int
    carbon_unknown_requests: int  # no intensity reading: in E, M and R, not in carbon or SCI
    energy_j: float  # active_j + idle_j, IT energy (before PUE)
    active_j: float
    idle_j: float
    measured_energy_j: float  # the part a meter measured (NVML, RAPL); the rest is modelled
    energy_methods: tuple[str, ...]
    intensity_g_per_kwh: float | None  # energy-weighted over the rows with a reading
    pue: float | None  # energy x intensity weighted: operational_g = E_known x PUE x I
    operational_g: float
    embodied_g: float  # every row's, as the ledger sums it
    carbon_g: float  # the ledger's carbon_g: operational + embodied of the rows with a reading
    intensity_sources: tuple[str, ...]

    @property
    def energy_kwh(self) -> float:
        return self.energy_j / J_PER_KWH

    @property
    def measured_share(self) -> float:
        return self.measured_energy_j / self.energy_j if self.energy_j > 0 else 0.0

    @property
    def sci_g_per_request(self) -> float | None:
        known = self.requests - self.carbon_unknown_requests
        return self.carbon_g / known if known else None


@dataclass(frozen=True)
class DayTrend:
    day: date
    requests: int
    energy_j: float
    carbon_g: float
    carbon_known_requests: int

    @property
    def energy_j_per_1k_requests(self) -> float:
        return 1000 * self.energy_j / self.requests if self.requests else 0.0

    @property
    def carbon_g_per_1k_requests(self) -> float | None:
        return 1000 * self.carbon_g / self.carbon_known_requests if self.carbon_known_requests else None


@dataclass(frozen=True)
class Consumer:
    key: str
    requests: int
    energy_j: float
    carbon_g: float
    energy_share: float  # of the period's request energy


def model_key(r: LedgerRecord) -> str:
    return r.model


def tenant_key(r: LedgerRecord) -> str:
    return r.tenant or NO_TENANT


def region_key(r: LedgerRecord) -> str:
    return r.region


def sci_by(rows: Iterable[LedgerRecord], key: Callable[[LedgerRecord], str]) -> list[SciRow]:
    """One SciRow per group, in key order."""
    groups: dict[str, list[LedgerRecord]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r)
    return [sci_row(k, groups[k]) for k in sorted(groups)]


def sci_row(key: str, rows: Sequence[LedgerRecord]) -> SciRow:
    energy_j = active_j = idle_j = measured_j = embodied = carbon = operational = 0.0
    known_kwh = e_times_i = 0.0
    unknown = 0
    methods: set[str] = set()
    sources: set[str] = set()
    for r in rows:
        energy_j += r.energy_j
        active_j += r.active_j
        idle_j += r.idle_j
        embodied += r.embodied_g
        methods.add(f"{r.energy_method} ({'measured' if r.energy_measured else 'modelled'})")
        if r.energy_measured:
            measured_j += r.energy_j
        if r.carbon_g is None or r.intensity_g_per_kwh is None:
            unknown += 1
            sources.add("none")
            continue
        carbon += r.carbon_g
        operational += r.operational_g or 0.0
        kwh = r.energy_j / J_PER_KWH
        known_kwh += kwh
        e_times_i += kwh * r.intensity_g_per_kwh
        sources.add(r.intensity_source or "unrecorded")
    intensity = e_times_i / known_kwh if known_kwh > 0 else None
    pue = operational / e_times_i if e_times_i > 0 else None
    return SciRow(key, len(rows), unknown, energy_j, active_j, idle_j, measured_j, tuple(sorted(methods)), intensity,
                  pue, operational, embodied, carbon, tuple(sorted(sources)))


def utc_day(time_s: float) -> date:
    return datetime.fromtimestamp(time_s, timezone.utc).date()


def daily_trends(rows: Iterable[LedgerRecord]) -> list[DayTrend]:
    days: dict[date, list] = defaultdict(lambda: [0, 0.0, 0.0, 0])
    for r in rows:
        d = days[utc_day(r.time_s)]
        d[0] += 1
        d[1] += r.energy_j
        if r.carbon_g is not None:
            d[2] += r.carbon_g
            d[3] += 1
    return [DayTrend(day, *days[day]) for day in sorted(days)]


def top_consumers(rows: Sequence[LedgerRecord], key: Callable[[LedgerRecord], str], n: int = 5) -> list[Consumer]:
    """The ``n`` groups that used the most energy, most first."""
    sums: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0])
    total_j = 0.0
    for r in rows:
        s = sums[key(r)]
        s[0] += 1
        s[1] += r.energy_j
        s[2] += r.carbon_g or 0.0
        total_j += r.energy_j
    ranked = sorted(sums.items(), key=lambda kv: (-kv[1][1], kv[0]))[:n]
    return [Consumer(k, req, e, c, e / total_j if total_j > 0 else 0.0) for k, (req, e, c) in ranked]
