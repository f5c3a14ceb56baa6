"""A fixed per-region intensity table: the last link of every fallback chain and the offline default.

Default values are 2023 yearly averages of life-cycle electricity-generation intensity
(gCO2eq/kWh) from Ember's Yearly Electricity Data, as republished by Our World in Data
(https://ourworldindata.org/grapher/carbon-intensity-electricity, retrieved 2026). They are
country averages, keyed by ISO 3166 alpha-2 code; map wattgate regions such as ``eu-west`` onto
them with your own table entries.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable, Mapping

from .base import IntensityReading, UnknownRegion, utcnow

__all__ = ["DEFAULT_INTENSITY_G_PER_KWH", "StaticProvider"]

DEFAULT_INTENSITY_G_PER_KWH: dict[str, float] = {
    "AT": 111.0,
    "AU": 549.0,
    "BE": 138.0,
    "BR": 98.0,
    "CA": 170.0,
    "CN": 582.0,
    "DE": 381.0,
    "DK": 152.0,
    "FI": 79.0,
    "FR": 56.0,
    "GB": 238.0,
    "IE": 291.0,
    "IN": 713.0,
    "NO": 30.0,
    "PL": 662.0,
    "SE": 41.0,
}


class StaticProvider:
    """Constant intensity per region; ``current`` is stamped with the clock time, so it is never stale."""

    name = "static"
    # Not cached: a dict lookup is cheaper than the cache, and a cached reading would age into "stale".
    update_period_s = 0.0

    def __init__(
        self,
        table: Mapping[str, float] | None = None,
        *,
        signal: str = "average-lca",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.table = dict(DEFAULT_INTENSITY_G_PER_KWH if table is None else table)
        for region, value in self.table.items():
            if not value >= 0:
                raise ValueError(f"static intensity for {region!r} must be >= 0 g/kWh, not {value!r}")
        self._signal = signal
        self._clock = clock

    def _value(self, region: str) -> float:
        try:
            return float(self.table[region])
        except KeyError:
            raise UnknownRegion(f"static: no intensity for region {region!r} (known: {sorted(self.table)})") from None

    def _reading(self, region: str, when: datetime, now: datetime) -> IntensityReading:
        return IntensityReading(
            region=region,
            intensity_g_per_kwh=self._value(region),
            timestamp=when,
            fetched_at=now,
            source=self.name,
            kind="static",
            signal=self._signal,
            estimated=True,
        )

    def current(self, region: str) -> IntensityReading:
        now = self._clock()
        return self._reading(region, now, now)

    def _hourly(self, region: str, start: datetime, end: datetime) -> list[IntensityReading]:
        now, out, t = self._clock(), [], start
        while t <= end:
            out.append(self._reading(region, t, now))
            t += timedelta(hours=1)
        return out

    def history(self, region: str, start: datetime, end: datetime) -> list[IntensityReading]:
        """The constant, hourly over the window (kind ``static`` says it was never observed)."""
        return self._hourly(region, start, end)

    def forecast(self, region: str, hours: float) -> list[IntensityReading]:
        now = self._clock()
        return self._hourly(region, now, now + timedelta(hours=hours))
