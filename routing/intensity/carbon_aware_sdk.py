"""Green Software Foundation Carbon Aware SDK WebAPI client
(https://carbon-aware-sdk.greensoftware.foundation/docs/tutorial-basics/carbon-aware-webapi).

* ``GET /emissions/bylocations?location=L&time=T0&toTime=T1`` answers a list of
  ``{"location", "time", "rating", "duration"}`` (rating in g/kWh; 204 when there is no data);
* ``GET /emissions/forecasts/current?location=L`` answers a list with one forecast per location
  whose ``forecastData`` holds ``{"location", "timestamp", "duration", "value"}`` points.

What the rating means depends on the data source the SDK is configured with (WattTime: marginal,
Electricity Maps: average), so the caller states it as ``signal``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Mapping

import httpx

from wattgate.errors import ProviderUnavailable

from .base import IntensityReading, ReadingKind, utcnow, zone_for
from .httpjson import JsonHttp
from .traces import parse_utc

__all__ = ["CarbonAwareSdkProvider"]


class CarbonAwareSdkProvider:
    name = "carbon-aware-sdk"
    update_period_s = 300.0

    def __init__(
        self,
        zones: Mapping[str, str],
        *,
        base_url: str = "http://127.0.0.1:8080",
        signal: str = "unspecified",
        lookback_s: float = 3600.0,
        timeout_s: float = 5.0,
        max_retry_wait_s: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.zones = dict(zones)
        self._signal = signal
        self._lookback = timedelta(seconds=lookback_s)
        self._clock = clock
        self._http = JsonHttp(self.name, base_url, timeout_s=timeout_s, max_retry_wait_s=max_retry_wait_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _reading(self, region: str, when: str, value: Any, kind: ReadingKind) -> IntensityReading:
        return IntensityReading(
            region=region,
            intensity_g_per_kwh=float(value),
            timestamp=parse_utc(when),
            fetched_at=self._clock(),
            source=self.name,
            kind=kind,
            signal=self._signal,
        )

    def _emissions(self, region: str, start: datetime, end: datetime, kind: ReadingKind) -> list[IntensityReading]:
        params = {"location": zone_for(self.name, self.zones, region), "time": start.isoformat(), "toTime": end.isoformat()}
        body = self._http.get_json("/emissions/bylocations", params)
        if body is None:
            return []
        if not isinstance(body, list):
            raise ProviderUnavailable(f"{self.name}: expected a list from bylocations, got {body!r:.200}")
        out = [self._reading(region, p["time"], p["rating"], kind) for p in body if p.get("rating") is not None]
        return sorted(out, key=lambda r: r.timestamp)

    def current(self, region: str) -> IntensityReading:
        now = self._clock()
        readings = [r for r in self._emissions(region, now - self._lookback, now, "live") if r.timestamp <= now]
        if not readings:
            raise ProviderUnavailable(f"{self.name}: no emissions data for {region} in the last {self._lookback}")
        return readings[-1]

    def history(self, region: str, start: datetime, end: datetime) -> list[IntensityReading]:
        return [r for r in self._emissions(region, start, end, "history") if start <= r.timestamp <= end]

    def forecast(self, region: str, hours: float) -> list[IntensityReading]:
        body = self._http.get_json("/emissions/forecasts/current", {"location": zone_for(self.name, self.zones, region)})
        if not isinstance(body, list) or not body or not isinstance(body[0].get("forecastData"), list):
            raise ProviderUnavailable(f"{self.name}: no current forecast for {region}")
        horizon = self._clock() + timedelta(hours=hours)
        points = [self._reading(region, p["timestamp"], p["value"], "forecast") for p in body[0]["forecastData"]]
        return sorted((r for r in points if r.timestamp <= horizon), key=lambda r: r.timestamp)
