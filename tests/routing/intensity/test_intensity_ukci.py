"""UK Carbon Intensity API client against a local server speaking its national and regional schema."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from intensity_fakes import floor_to

from routing.intensity.resilient import LAST_KNOWN, ResilientProvider
from routing.intensity.static import StaticProvider
from routing.intensity.ukci import UKCarbonIntensityProvider

_T = r"(\d{4}-\d\d-\d\dT\d\d:\d\dZ)"


def _z(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%MZ").replace(tzinfo=timezone.utc)


class UkciServer:
    def __init__(self) -> None:
        self.now = floor_to(datetime.now(timezone.utc), 30)
        self.actual: float | None = 180.0

    def national_item(self, start: datetime, actual: float | None) -> dict:
        return {
            "from": _z(start),
            "to": _z(start + timedelta(minutes=30)),
            "intensity": {"forecast": 200 + start.hour, "actual": actual, "index": "moderate"},
        }

    def regional_item(self, start: datetime) -> dict:
        return {
            "from": _z(start),
            "to": _z(start + timedelta(minutes=30)),
            "intensity": {"forecast": 100 + start.hour, "index": "low"},
            "generationmix": [{"fuel": "wind", "perc": 40.1}, {"fuel": "gas", "perc": 30.2}],
        }

    @staticmethod
    def _halfhours(start: datetime, end: datetime) -> list[datetime]:
        out, t = [], start
        while t < end:
            out.append(t)
            t += timedelta(minutes=30)
        return out

    def __call__(self, req):
        p = req.path
        region_head = {"regionid": 13, "dnoregion": "UKPN London", "shortname": "London"}
        if p == "/intensity":
            return 200, {}, {"data": [self.national_item(self.now, self.actual)]}
        if p == "/regional/regionid/13":
            return 200, {}, {"data": [{**region_head, "data": [self.regional_item(self.now)]}]}
        if m := re.fullmatch(rf"/intensity/{_T}/fw48h", p):
            items = [self.national_item(t, None) for t in self._halfhours(_parse(m[1]), _parse(m[1]) + timedelta(hours=48))]
            return 200, {}, {"data": items}
        if m := re.fullmatch(rf"/intensity/{_T}/{_T}", p):
            return 200, {}, {"data": [self.national_item(t, 150.0) for t in self._halfhours(_parse(m[1]), _parse(m[2]))]}
        if m := re.fullmatch(rf"/regional/intensity/{_T}/fw48h/regionid/13", p):
            times = self._halfhours(_parse(m[1]), _parse(m[1]) + timedelta(hours=48))
            return 200, {}, {"data": {**region_head, "data": [self.regional_item(t) for t in times]}}
        if m := re.fullmatch(rf"/regional/intensity/{_T}/{_T}/regionid/13", p):
            times = self._halfhours(_parse(m[1]), _parse(m[2]))
            return 200, {}, {"data": {**region_head, "data": [self.regional_item(t) for t in times]}}
        return 400, {}, {"error": {"code": "400 Bad Request", "message": f"unknown path {p}"}}


def ukci(url: str, clock) -> UKCarbonIntensityProvider:
    return UKCarbonIntensityProvider({"GB": "national", "GB-london": "13"}, base_url=url, clock=clock, timeout_s=2)


def test_national_current_prefers_actual_over_forecast(fake_api):
    server = UkciServer()
    api = fake_api(server)
    provider = ukci(api.url, lambda: server.now + timedelta(minutes=10))
    reading = provider.current("GB")
    assert (reading.intensity_g_per_kwh, reading.estimated, reading.timestamp) == (180.0, False, server.now)
    assert (reading.signal, reading.source, reading.kind) == ("average-direct", "ukci", "live")
    assert "authorization" not in api.hits[-1].headers  # no key needed

    server.actual = None  # not metered yet: the forecast stands in and says so
    reading = provider.current("GB")
    assert (reading.intensity_g_per_kwh, reading.estimated) == (200 + server.now.hour, True)


def test_regional_current_history_and_forecast(fake_api):
    server = UkciServer()
    api = fake_api(server)
    provider = ukci(api.url, lambda: server.now)
    reading = provider.current("GB-london")
    assert (reading.intensity_g_per_kwh, reading.estimated) == (100 + server.now.hour, True)
    assert api.hits[-1].path == "/regional/regionid/13"

    history = provider.history("GB-london", server.now - timedelta(hours=2), server.now)
    assert [r.timestamp for r in history] == [server.now - timedelta(minutes=30 * k) for k in (4, 3, 2, 1)]
    assert api.hits[-1].path.startswith("/regional/intensity/") and api.hits[-1].path.endswith("/regionid/13")

    forecast = provider.forecast("GB-london", hours=2)
    assert len(forecast) == 5 and all(r.kind == "forecast" for r in forecast)
    national = provider.history("GB", server.now - timedelta(hours=1), server.now)
    assert [r.intensity_g_per_kwh for r in national] == [150.0, 150.0] and not national[0].estimated


def test_server_error_falls_back_to_last_known_then_static(fake_api, fake_time):
    server = UkciServer()
    api = fake_api(server)
    chain = ResilientProvider(
        [("ukci", ukci(api.url, fake_time.utc)), LAST_KNOWN, ("static", StaticProvider(clock=fake_time.utc))],
        clock=fake_time.utc,
        monotonic=fake_time.mono,
        last_known_max_age_s=3600,
    )
    assert chain.current("GB").kind == "live"
    api.down_status = 502
    fake_time.advance(1801)
    assert chain.current("GB").kind == "last-known"
    fake_time.advance(3600)
    reading = chain.current("GB")
    assert (reading.kind, reading.intensity_g_per_kwh) == ("static", 238.0)
    assert api.count("/intensity") == 3  # one success, then one try per expired back-off


def test_bad_zone_config_fails_loudly():
    with pytest.raises(ValueError, match="region id"):
        UKCarbonIntensityProvider({"GB": "london"})
