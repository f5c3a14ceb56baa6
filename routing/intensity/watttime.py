"""WattTime API v3 client (https://docs.watttime.org/): marginal emissions (co2_moer).

``GET /login`` with HTTP basic auth returns ``{"token": ...}``, a bearer token valid for 30
minutes; we renew it before it expires and once more whenever a data call answers 401. Data
endpoints take ``region`` and ``signal_type=co2_moer`` and answer ``{"data": [{"point_time",
"value"}], "meta": {"units", "region", "signal_type", ...}}``:

* ``/v3/forecast`` (``horizon_hours``): MOER in lbs CO2/MWh; its first point is the current
  5-minute interval, which is what ``current()`` reports by default (signal ``moer``);
* ``/v3/signal-index``: a 0-100 percentile of the MOER over the recent month (the free-tier
  signal); with ``current_endpoint="signal-index"`` ``current()`` returns it, marked
  ``signal="moer-percentile"`` because the number is *not* g/kWh;
* ``/v3/historical`` (``start``, ``end``): past MOER.

lbs/MWh are converted to g/kWh (x 0.453592). HTTP 429 is honoured by ``JsonHttp``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Callable, Literal, Mapping

import httpx

from wattgate.errors import ProviderUnavailable

from .base import LB_PER_MWH_TO_G_PER_KWH, AuthRejected, IntensityReading, ReadingKind, utcnow, zone_for
from .httpjson import JsonHttp
from .traces import parse_utc

__all__ = ["WattTimeProvider"]

_SIGNAL_TYPE = "co2_moer"
# Units WattTime states in ``meta.units``; kg/MWh equals g/kWh.
_TO_G_PER_KWH = {"lbs_co2_per_mwh": LB_PER_MWH_TO_G_PER_KWH, "kg_co2_per_mwh": 1.0, "g_co2_per_kwh": 1.0}
# Renew a little early so a token never expires between our check and the server's.
_TOKEN_MARGIN_S = 60.0


class WattTimeProvider:
    name = "watttime"
    update_period_s = 300.0  # WattTime publishes a MOER point every 5 minutes

    def __init__(
        self,
        zones: Mapping[str, str],
        username: str,
        password: str,
        *,
        base_url: str = "https://api.watttime.org",
        current_endpoint: Literal["forecast", "signal-index"] = "forecast",
        token_ttl_s: float = 1800.0,
        timeout_s: float = 5.0,
        max_retry_wait_s: float = 2.0,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if current_endpoint not in ("forecast", "signal-index"):
            raise ValueError(f"current_endpoint must be 'forecast' or 'signal-index', not {current_endpoint!r}")
        self.zones = dict(zones)
        self._auth = (username, password)
        self._current_endpoint = current_endpoint
        self._token_ttl_s = token_ttl_s
        self._clock = clock
        self._monotonic = monotonic
        self._http = JsonHttp(
            self.name, base_url, timeout_s=timeout_s, max_retry_wait_s=max_retry_wait_s, monotonic=monotonic, transport=transport
        )
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0
        self.logins = 0  # how often we had to log in; renewals show up here

    def close(self) -> None:
        self._http.close()

    def _login(self) -> str:
        try:
            body = self._http.get_json("/login", auth=self._auth)
        except AuthRejected as exc:
            raise AuthRejected(f"{self.name}: login rejected; check username/password") from exc
        token = body.get("token") if isinstance(body, dict) else None
        if not token:
            raise ProviderUnavailable(f"{self.name}: login answered without a token")
        self.logins += 1
        self._token = token
        self._token_expires = self._monotonic() + max(0.0, self._token_ttl_s - _TOKEN_MARGIN_S)
        return token

    def _bearer(self, renew: bool = False) -> str:
        with self._token_lock:
            if renew or self._token is None or self._monotonic() >= self._token_expires:
                return self._login()
            return self._token

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        token = self._bearer()
        try:
            return self._http.get_json(path, params, headers={"Authorization": f"Bearer {token}"})
        except AuthRejected:
            # Tokens can be revoked or expire early server-side: log in again once, then give up.
            token = self._bearer(renew=True)
            return self._http.get_json(path, params, headers={"Authorization": f"Bearer {token}"})

    def _readings(self, region: str, body: Any, kind: ReadingKind) -> list[IntensityReading]:
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise ProviderUnavailable(f"{self.name}: expected a 'data' list in the response")
        meta = body.get("meta") or {}
        units = meta.get("units", "lbs_co2_per_mwh")
        if units == "percentile":
            factor, signal = 1.0, "moer-percentile"
        elif units in _TO_G_PER_KWH:
            factor, signal = _TO_G_PER_KWH[units], "moer"
        else:
            raise ProviderUnavailable(f"{self.name}: unknown units {units!r}")
        fetched_at = self._clock()
        out = [
            IntensityReading(
                region=region,
                intensity_g_per_kwh=float(p["value"]) * factor,
                timestamp=parse_utc(p["point_time"]),
                fetched_at=fetched_at,
                source=self.name,
                kind=kind,
                signal=signal,
                # MOER is a model output (WattTime infers the marginal unit), never a metered value.
                estimated=True,
            )
            for p in body["data"]
            if p.get("value") is not None
        ]
        return sorted(out, key=lambda r: r.timestamp)

    def signal_index(self, region: str) -> IntensityReading:
        """The current MOER percentile (0-100) from ``/v3/signal-index``."""
        params = {"region": zone_for(self.name, self.zones, region), "signal_type": _SIGNAL_TYPE}
        readings = self._readings(region, self._get("/v3/signal-index", params), "live")
        if not readings:
            raise ProviderUnavailable(f"{self.name}: empty signal-index for {region}")
        latest = readings[-1]
        if latest.signal != "moer-percentile":
            # Older responses omit meta.units; the endpoint only ever returns a percentile.
            latest = replace(latest, signal="moer-percentile")
        return latest

    def current(self, region: str) -> IntensityReading:
        if self._current_endpoint == "signal-index":
            return self.signal_index(region)
        points = self._forecast_points(region, hours=0)
        if not points:
            raise ProviderUnavailable(f"{self.name}: empty forecast for {region}")
        first = points[0]
        return replace(first, kind="live")

    def _forecast_points(self, region: str, hours: float) -> list[IntensityReading]:
        params = {
            "region": zone_for(self.name, self.zones, region),
            "signal_type": _SIGNAL_TYPE,
            "horizon_hours": max(0, int(-(-hours // 1))),  # ceil: the API takes whole hours
        }
        return self._readings(region, self._get("/v3/forecast", params), "forecast")

    def forecast(self, region: str, hours: float) -> list[IntensityReading]:
        horizon = self._clock() + timedelta(hours=hours)
        return [r for r in self._forecast_points(region, hours) if r.timestamp <= horizon]

    def history(self, region: str, start: datetime, end: datetime) -> list[IntensityReading]:
        params = {
            "region": zone_for(self.name, self.zones, region),
            "signal_type": _SIGNAL_TYPE,
            "start": start.isoformat(),
            "end": end.isoformat(),
        }
        points = self._readings(region, self._get("/v3/historical", params), "history")
        return [r for r in points if start <= r.timestamp <= end]
