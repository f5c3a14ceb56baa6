"""Electricity Maps API v3 client (https://docs.electricitymaps.com/, "carbon-intensity" endpoints).

``GET /v3/carbon-intensity/latest|history|forecast?zone=Z`` (and ``/past-range`` for windows
older than the last 24 h) with the ``auth-token`` header. Each point carries ``zone``,
``carbonIntensity`` (gCO2eq/kWh), ``datetime``, ``updatedAt``, ``emissionFactorType``
("lifecycle" | "direct") and ``isEstimated``; history and forecast wrap their points in
``history: [...]`` / ``forecast: [...]`` (``data: [...]`` for past-range).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Literal, Mapping

import httpx

from wattgate.errors import ProviderUnavailable

from .base import IntensityReading, ReadingKind, utcnow, zone_for
from .httpjson import JsonHttp
from .traces import parse_utc

__all__ = ["ElectricityMapsProvider"]

_SIGNALS = {"lifecycle": "average-lca", "direct": "average-direct"}
_HISTORY_SPAN = timedelta(hours=24)  # what /history covers; older windows need /past-range


class ElectricityMapsProvider:
    name = "electricitymaps"
    # Live values are recomputed as new grid data lands (5-60 min depending on the zone).
    update_period_s = 300.0

    def __init__(
        self,
        zones: Mapping[str, str],
        api_key: str | None,
        *,
        base_url: str = "https://api.electricitymap.org",
        emission_factor_type: Literal["lifecycle", "direct"] = "lifecycle",
        timeout_s: float = 5.0,
        max_retry_wait_s: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.zones = dict(zones)
        self._headers = {"auth-token": api_key} if api_key else {}
        self._factor = emission_factor_type
        self._clock = clock
        self._http = JsonHttp(
            self.name, base_url, timeout_s=timeout_s, max_retry_wait_s=max_retry_wait_s, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def _get(self, endpoint: str, params: dict[str, str]) -> Any:
        params = {**params, "emissionFactorType": self._factor}
        return self._http.get_json(f"/v3/carbon-intensity/{endpoint}", params, headers=self._headers)

    def _reading(self, region: str, point: Mapping[str, Any], kind: ReadingKind) -> IntensityReading:
        value = point.get("carbonIntensity")
        if value is None or not point.get("datetime"):
            raise ProviderUnavailable(f"{self.name}: no carbonIntensity for {region} in {dict(point)!r:.200}")
        factor = point.get("emissionFactorType") or self._factor
        estimated = point.get("isEstimated")
        return IntensityReading(
            region=region,
            intensity_g_per_kwh=float(value),
            timestamp=parse_utc(point["datetime"]),
            fetched_at=self._clock(),
            source=self.name,
            kind=kind,
            signal=_SIGNALS.get(factor, f"average-{factor}"),
            estimated=None if estimated is None else bool(estimated),
        )

    def _points(self, region: str, body: Any, key: str, kind: ReadingKind) -> list[IntensityReading]:
        if not isinstance(body, dict) or not isinstance(body.get(key), list):
            raise ProviderUnavailable(f"{self.name}: expected a '{key}' list in the response")
        out = [self._reading(region, p, kind) for p in body[key] if p.get("carbonIntensity") is not None]
        return sorted(out, key=lambda r: r.timestamp)

    def current(self, region: str) -> IntensityReading:
        body = self._get("latest", {"zone": zone_for(self.name, self.zones, region)})
        if not isinstance(body, dict):
            raise ProviderUnavailable(f"{self.name}: unexpected latest response {body!r:.200}")
        return self._reading(region, body, "live")

    def history(self, region: str, start: datetime, end: datetime) -> list[IntensityReading]:
        zone = zone_for(self.name, self.zones, region)
        if start >= self._clock() - _HISTORY_SPAN:
            points = self._points(region, self._get("history", {"zone": zone}), "history", "history")
        else:
            params = {"zone": zone, "start": start.isoformat(), "end": end.isoformat()}
            points = self._points(region, self._get("past-range", params), "data", "history")
        return [r for r in points if start <= r.timestamp <= end]

    def forecast(self, region: str, hours: float) -> list[IntensityReading]:
        body = self._get("forecast", {"zone": zone_for(self.name, self.zones, region)})
        horizon = self._clock() + timedelta(hours=hours)
        return [r for r in self._points(region, body, "forecast", "forecast") if r.timestamp <= horizon]
