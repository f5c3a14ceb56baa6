"""Carbon saved, all modelled: by routing (against round-robin over the same requests), by the cache, by time-shifting.

Pure: ledger rows, pool sites and an intensity timeline in; frozen results out.

Routing. The counterfactual places each request's energy evenly over the topology's pools that
serve its variant, each share at the pool's region intensity in force at the request's time (from
the provider's history) and the pool's PUE. It ASSUMES a request costs the same energy wherever it
runs (the hardware classes' different energy per inference is left out) and leaves embodied carbon
alike in both. The actual side is the ledger's own operational carbon. Requests whose carbon is
unknown, or for which some pool's region has no reading at that time, are left out and counted.

Cache. Each hit avoided one computation: the mean energy (active + idle) of the period's misses of
the same model and variant, less the hit's own energy; converted to carbon at the hit's own
intensity and PUE. A model and variant with hits but no misses in the period cannot be estimated.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from energy.carbon import J_PER_KWH
from energy.ledger_record import LedgerRecord


@dataclass(frozen=True)
class PoolSite:
    """Where the round-robin counterfactual may place work: a pool's region, PUE and variants (None: any)."""

    name: str
    region: str
    pue: float
    variants: tuple[str, ...] | None = None

    def serves(self, variant: str) -> bool:
        return self.variants is None or variant in self.variants


class IntensityTimeline:
    """Per region, the reading in force at a time: the latest one at or before it, if no older than ``max_age_s``."""

    def __init__(self, points: Mapping[str, Sequence[tuple[float, float]]], max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._times: dict[str, list[float]] = {}
        self._values: dict[str, list[float]] = {}
        for region, pts in points.items():
            ordered = sorted(pts)
            self._times[region] = [t for t, _ in ordered]
            self._values[region] = [v for _, v in ordered]

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(sorted(r for r, t in self._times.items() if t))

    def at(self, region: str, time_s: float) -> float | None:
        times = self._times.get(region)
        if not times:
            return None
        i = bisect.bisect_right(times, time_s) - 1
        if i < 0 or time_s - times[i] > self.max_age_s:
            return None
        return self._values[region][i]


@dataclass(frozen=True)
class RoutingSavings:
    pools: tuple[str, ...]
    requests_compared: int
    requests_left_out: int  # carbon unknown, or no reading for some pool's region at the time
    actual_operational_g: float  # the ledger's, over the compared requests
    round_robin_operational_g: float  # modelled

    @property
    def saved_g(self) -> float:
        return self.round_robin_operational_g - self.actual_operational_g

    @property
    def saved_share(self) -> float | None:
        return self.saved_g / self.round_robin_operational_g if self.round_robin_operational_g > 0 else None


def routing_savings(rows: Iterable[LedgerRecord], pools: Sequence[PoolSite], timeline: IntensityTimeline) -> RoutingSavings:
    compared = left_out = 0
    actual = counterfactual = 0.0
    for r in rows:
        if r.operational_g is None:
            left_out += 1
            continue
        sites = [p for p in pools if p.serves(r.variant)] or list(pools)
        per_pool_kwh = r.energy_j / J_PER_KWH / len(sites)
        grams = 0.0
        for site in sites:
            intensity = timeline.at(site.region, r.time_s)
            if intensity is None:
                break
            grams += per_pool_kwh * intensity * site.pue
        else:
            compared += 1
            actual += r.operational_g
            counterfactual += grams
            continue
        left_out += 1
    return RoutingSavings(tuple(p.name for p in pools), compared, left_out, actual, counterfactual)


@dataclass(frozen=True)
class CacheSaving:
    model: str
    variant: str
    hits: int
    mean_miss_j: float | None  # None: no misses in the period to compare with
    hits_own_j: float
    avoided_j: float
    avoided_g: float  # operational, at each hit's own intensity and PUE; hits without a reading add none


@dataclass(frozen=True)
class CacheSavings:
    by_model_variant: tuple[CacheSaving, ...]

    @property
    def avoided_j(self) -> float:
        return sum(s.avoided_j for s in self.by_model_variant)

    @property
    def avoided_g(self) -> float:
        return sum(s.avoided_g for s in self.by_model_variant)

    @property
    def hits(self) -> int:
        return sum(s.hits for s in self.by_model_variant)

    @property
    def hits_without_misses(self) -> int:
        return sum(s.hits for s in self.by_model_variant if s.mean_miss_j is None)


def row_pue(r: LedgerRecord, pue_by_pool: Mapping[str, float]) -> float:
    """The pool's PUE from the topology; else what the row's own carbon implies; else 1."""
    if r.pool in pue_by_pool:
        return pue_by_pool[r.pool]
    if r.operational_g and r.intensity_g_per_kwh and r.energy_j > 0:
        return r.operational_g / (r.energy_j / J_PER_KWH * r.intensity_g_per_kwh)
    return 1.0


def cache_savings(rows: Sequence[LedgerRecord], pue_by_pool: Mapping[str, float]) -> CacheSavings:
    misses: dict[tuple[str, str], list[float]] = defaultdict(list)
    hits: dict[tuple[str, str], list[LedgerRecord]] = defaultdict(list)
    for r in rows:
        if r.cache == "miss":
            misses[(r.model, r.variant)].append(r.active_j + r.idle_j)
        elif r.cache == "hit":
            hits[(r.model, r.variant)].append(r)
    out = []
    for (model, variant), hit_rows in sorted(hits.items()):
        own_j = sum(h.energy_j for h in hit_rows)
        miss_j = misses.get((model, variant))
        if not miss_j:
            out.append(CacheSaving(model, variant, len(hit_rows), None, own_j, 0.0, 0.0))
            continue
        mean_j = sum(miss_j) / len(miss_j)
        grams = 0.0
        for h in hit_rows:
            if h.intensity_g_per_kwh is not None:
                grams += (mean_j - h.energy_j) / J_PER_KWH * h.intensity_g_per_kwh * row_pue(h, pue_by_pool)
        out.append(CacheSaving(model, variant, len(hit_rows), mean_j, own_j, len(hit_rows) * mean_j - own_j, grams))
    return CacheSavings(tuple(out))


@dataclass(frozen=True)
class TimeShiftSavings:
    """Deferrable jobs run in a low-carbon window (issue 15): their actual carbon and had they run at submission."""

    jobs: int
    actual_carbon_g: float
    counterfactual_carbon_g: float

    @property
    def saved_g(self) -> float:
        return self.counterfactual_carbon_g - self.actual_carbon_g
