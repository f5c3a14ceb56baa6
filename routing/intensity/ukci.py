"""GB National Grid ESO Carbon Intensity API client (https://carbon-intensity.github.io/api-definitions/).

No key. Zones are ``"national"`` or a DNO region id (1-17, e.g. ``"13"`` for London):

* national: ``GET /intensity`` (current half hour), ``/intensity/{from}/{to}``,
  ``/intensity/{from}/fw48h``; each ``data[]`` item has ``from``, ``to`` and
  ``intensity: {forecast, actual, index}`` where ``actual`` is null until metered;
* regional: ``GET /regional/regionid/{id}``, ``/regional/intensity/{from}/{to}/regionid/{id}``,
  ``/regional/intensity/{from}/fw48h/regionid/{id}``; the half-hour items sit in
  ``data[0].data[]`` (``data.data[]`` for ranges) and carry only ``intensity.forecast``.

Values are gCO2/kWh of generation (combustion only, no life-cycle share), so ``signal`` is
``average-direct``; a reading without ``actual`` is marked ``estimated=True``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping

import httpx

from wattgate.errors import ProviderUnavailable

from .base import IntensityReading, ReadingKind, utcnow, zone_for
from .httpjson import JsonHttp
from .traces import parse_utc

__all__ = ["UKCarbonIntensityProvider"]

NATIONAL = "national"


def _path_time(when: datetime) -> str:
    # The API's path format is ISO 8601 to the minute with a Z: 2018-01-20T12:00Z.
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


class UKCarbonIntensityProvider:
    name = "ukci"
    update_period_s = 1800.0  # half-hourly settlement periods

    def __init__(
        self,
        zones: Mapping[str, str] | None = None,
        *,
        base_url: str = "https://api.carbonintensity.org.uk",
        timeout_s: float = 5.0,
        max_retry_wait_s: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.zones = dict(zones if zones is not None else {"GB": NATIONAL})
        for region, zone in self.zones.items():
            if zone != NATIONAL and not (zone.isdigit() and 1 <= int(zone) <= 17):
                raise ValueError(f"ukci zone for {region!r} must be 'national' or a region id 1-17, not {zone!r}")
        self._clock = clock
        self._http = JsonHttp(self.name, base_url, timeout_s=timeout_s, max_retry_wait_s=max_retry_wait_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def _items(self, body: Any, regional: bool) -> list[Mapping[str, Any]]:
        data = body.get("data") if isinstance(body, dict) else None
        if regional:
            # Current-period answers wrap the region in a list, range answers in an object.
            region_obj = data[0] if isinstance(data, list) and data else data
            data = region_obj.get("data") if isinstance(region_obj, dict) else None
        if not isinstance(data, list):
            raise ProviderUnavailable(f"{self.name}: unexpected response shape {body!r:.200}")
        return data

    def _readings(self, region: str, items: list[Mapping[str, Any]], kind: ReadingKind) -> list[IntensityReading]:
        fetched_at = self._clock()
        out = []
        for item in items:
            intensity = item.get("intensity") or {}
            actual, forecast = intensity.get("actual"), intensity.get("forecast")
            value = actual if actual is not None else forecast
            if value is None:
                continue
            out.append(
                IntensityReading(
                    region=region,
                    intensity_g_per_kwh=float(value),
                    timestamp=parse_utc(item["from"]),
                    fetched_at=fetched_at,
                    source=self.name,
                    kind=kind,
                    signal="average-direct",
                    estimated=actual is None,
                )
            )
        return sorted(out, key=lambda r: r.timestamp)

    def _fetch(self, region: str, national_path: str, regional_path: str, kind: ReadingKind) -> list[IntensityReading]:
        zone = zone_for(self.name, self.zones, region)
        regional = zone != NATIONAL
        path = regional_path.format(id=zone) if regional else national_path
        return self._readings(region, self._items(self._http.get_json(path), regional), kind)

    def current(self, region: str) -> IntensityReading:
        readings = self._fetch(region, "/intensity", "/regional/regionid/{id}", "live")
        now = self._clock()
        # The current-period answer holds one item; if it ever holds more, take the one in force now.
        past = [r for r in readings if r.timestamp <= now] or readings
        if not past:
            raise ProviderUnavailable(f"{self.name}: no intensity value for {region}")
        return past[-1]

    def history(self, region: str, start: datetime, end: datetime) -> list[IntensityReading]:
        span = f"{_path_time(start)}/{_path_time(end)}"
        readings = self._fetch(region, f"/intensity/{span}", f"/regional/intensity/{span}/regionid/{{id}}", "history")
        return [r for r in readings if start <= r.timestamp <= end]

    def forecast(self, region: str, hours: float) -> list[IntensityReading]:
        now = self._clock()
        start = _path_time(now)
        readings = self._fetch(
            region, f"/intensity/{start}/fw48h", f"/regional/intensity/{start}/fw48h/regionid/{{id}}", "forecast"
        )
        horizon = now + timedelta(hours=hours)
        return [r for r in readings if r.timestamp <= horizon]
