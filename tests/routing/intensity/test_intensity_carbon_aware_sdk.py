"""Carbon Aware SDK WebAPI client against a local server speaking its emissions and forecast schema."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from intensity_fakes import floor_to

from routing.intensity.carbon_aware_sdk import CarbonAwareSdkProvider
from routing.intensity.resilient import LAST_KNOWN, ResilientProvider
from routing.intensity.static import StaticProvider
from wattgate.errors import ProviderUnavailable


class SdkServer:
    def __init__(self) -> None:
        self.now = floor_to(datetime.now(timezone.utc), 5)
        self.has_data = True

    def __call__(self, req):
        location = req.arg("location")
        if location != "westeurope":
            return 400, {}, {"type": "https://tools.ietf.org/html/rfc7231#section-6.5.1", "title": "ArgumentException", "status": 400}
        if req.path == "/emissions/bylocations":
            if not self.has_data:
                return 204, {}, None
            start, end = datetime.fromisoformat(req.arg("time")), datetime.fromisoformat(req.arg("toTime"))
            points, t = [], floor_to(start, 5)
            while t <= min(end, self.now):
                points.append({"location": location, "time": t.isoformat(), "rating": 300.0 + t.minute, "duration": "00:05:00"})
                t += timedelta(minutes=5)
            return 200, {}, points
        if req.path == "/emissions/forecasts/current":
            data = [
                {"location": "IE", "timestamp": (self.now + timedelta(minutes=5 * i)).isoformat(), "duration": 5, "value": 400.0 - i}
                for i in range(288)
            ]
            body = {
                "requestedAt": self.now.isoformat(),
                "generatedAt": self.now.isoformat(),
                "location": location,
                "dataStartAt": data[0]["timestamp"],
                "dataEndAt": data[-1]["timestamp"],
                "windowSize": 5,
                "optimalDataPoints": [data[-1]],
                "forecastData": data,
            }
            return 200, {}, [body]
        return 404, {}, None


def sdk(url: str, clock) -> CarbonAwareSdkProvider:
    return CarbonAwareSdkProvider({"eu-west": "westeurope"}, base_url=url, signal="average-lca", clock=clock, timeout_s=2)


def test_current_is_the_latest_rating_in_the_lookback(fake_api):
    server = SdkServer()
    api = fake_api(server)
    reading = sdk(api.url, lambda: server.now).current("eu-west")
    assert reading.timestamp == server.now and reading.intensity_g_per_kwh == 300.0 + server.now.minute
    assert (reading.source, reading.signal, reading.kind) == ("carbon-aware-sdk", "average-lca", "live")
    hit = api.hits[-1]
    assert hit.path == "/emissions/bylocations" and hit.arg("location") == "westeurope"
    assert datetime.fromisoformat(hit.arg("toTime")) == server.now
    assert datetime.fromisoformat(hit.arg("time")) == server.now - timedelta(hours=1)


def test_history_and_forecast(fake_api):
    server = SdkServer()
    api = fake_api(server)
    provider = sdk(api.url, lambda: server.now)
    history = provider.history("eu-west", server.now - timedelta(minutes=30), server.now)
    assert len(history) == 7 and history[0].kind == "history"
    forecast = provider.forecast("eu-west", hours=1)
    assert [r.intensity_g_per_kwh for r in forecast] == [400.0 - i for i in range(13)]
    assert api.hits[-1].path == "/emissions/forecasts/current"


def test_no_content_is_an_outage_and_falls_back(fake_api, fake_time):
    server = SdkServer()
    api = fake_api(server)
    server.has_data = False
    with pytest.raises(ProviderUnavailable, match="no emissions data"):
        sdk(api.url, lambda: server.now).current("eu-west")
    chain = ResilientProvider(
        [("carbon-aware-sdk", sdk(api.url, fake_time.utc)), LAST_KNOWN, ("static", StaticProvider({"eu-west": 56.0}))],
        clock=fake_time.utc,
        monotonic=fake_time.mono,
    )
    assert chain.current("eu-west").intensity_g_per_kwh == 56.0
    server.has_data = True
    fake_time.advance(31)  # past the failure back-off
    assert chain.current("eu-west").kind == "live"
    api.down_status = 500
    fake_time.advance(301)  # past the cache lifetime
    seen = api.count()
    reading = chain.current("eu-west")
    assert api.count() == seen + 1
    assert (reading.kind, reading.intensity_g_per_kwh) == ("last-known", 300.0 + server.now.minute)
