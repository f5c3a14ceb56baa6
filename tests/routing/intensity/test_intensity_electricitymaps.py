"""Electricity Maps v3 client against a local server speaking its schema; shared cache/fallback behaviour."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from intensity_fakes import floor_to, iso_z, refused_url

from routing.intensity.base import AuthRejected
from routing.intensity.electricitymaps import ElectricityMapsProvider
from routing.intensity.resilient import LAST_KNOWN, ResilientProvider
from routing.intensity.static import StaticProvider
from wattgate.errors import ProviderUnavailable
from wattgate.metrics import MetricsRegistry

KEY = "em-test-key"
BASE_G_PER_KWH = {"DE": 400.0, "FR": 50.0}


class EmState:
    def __init__(self) -> None:
        self.latest_time = floor_to(datetime.now(timezone.utc), 60)

    @staticmethod
    def point(zone: str, when: datetime, estimated: bool = False) -> dict:
        return {
            "zone": zone,
            "carbonIntensity": BASE_G_PER_KWH[zone] + when.hour,
            "datetime": iso_z(when),
            "updatedAt": iso_z(when + timedelta(minutes=7)),
            "createdAt": iso_z(when - timedelta(days=1)),
            "emissionFactorType": "lifecycle",
            "isEstimated": estimated,
            "estimationMethod": "TIME_SLICER_AVERAGE" if estimated else None,
        }

    def __call__(self, req):
        if req.headers.get("auth-token") != KEY:
            return 401, {}, {"status": "error", "message": "Please provide a valid auth-token"}
        zone = req.arg("zone")
        if zone not in BASE_G_PER_KWH:
            return 400, {}, {"status": "error", "message": f"Zone '{zone}' does not exist."}
        t = self.latest_time
        if req.path == "/v3/carbon-intensity/latest":
            return 200, {}, self.point(zone, t)
        if req.path == "/v3/carbon-intensity/history":
            return 200, {}, {"zone": zone, "history": [self.point(zone, t - timedelta(hours=h)) for h in range(23, -1, -1)]}
        if req.path == "/v3/carbon-intensity/past-range":
            start, end = datetime.fromisoformat(req.arg("start")), datetime.fromisoformat(req.arg("end"))
            points, when = [], floor_to(start, 60)
            while when <= end:
                points.append(self.point(zone, when))
                when += timedelta(hours=1)
            return 200, {}, {"zone": zone, "data": points}
        if req.path == "/v3/carbon-intensity/forecast":
            forecast = [
                {"carbonIntensity": BASE_G_PER_KWH[zone] + 1000 + h, "datetime": iso_z(t + timedelta(hours=h))}
                for h in range(1, 25)
            ]
            return 200, {}, {"zone": zone, "forecast": forecast, "updatedAt": iso_z(t)}
        return 404, {}, {"error": "no such endpoint"}


def em(url: str, clock, key: str | None = KEY) -> ElectricityMapsProvider:
    return ElectricityMapsProvider({"DE": "DE", "FR": "FR", "eu-west": "FR"}, key, base_url=url, clock=clock, timeout_s=2)


def chain(provider, fake_time, metrics=None, **kw) -> ResilientProvider:
    return ResilientProvider(
        [("electricitymaps", provider), LAST_KNOWN, ("static", StaticProvider({"DE": 381.0}, clock=fake_time.utc))],
        clock=fake_time.utc,
        monotonic=fake_time.mono,
        metrics=metrics,
        **kw,
    )


def test_latest_follows_schema_and_sends_auth_token(fake_api, fake_time):
    state = EmState()
    api = fake_api(state)
    reading = em(api.url, fake_time.utc).current("eu-west")
    assert reading.region == "eu-west" and reading.source == "electricitymaps"
    assert reading.intensity_g_per_kwh == BASE_G_PER_KWH["FR"] + state.latest_time.hour
    assert reading.timestamp == state.latest_time
    assert (reading.kind, reading.signal, reading.estimated) == ("live", "average-lca", False)
    (hit,) = api.hits
    assert hit.path == "/v3/carbon-intensity/latest" and hit.arg("zone") == "FR"
    assert hit.headers["auth-token"] == KEY


def test_missing_token_is_rejected_and_chain_falls_back_to_static(fake_api, fake_time):
    api = fake_api(EmState())
    with pytest.raises(AuthRejected):
        em(api.url, fake_time.utc, key=None).current("DE")
    assert "auth-token" not in api.hits[-1].headers

    metrics = MetricsRegistry()
    reading = chain(em(api.url, fake_time.utc, key=None), fake_time, metrics).current("DE")
    assert (reading.source, reading.kind, reading.intensity_g_per_kwh) == ("static", "static", 381.0)
    snap = metrics.snapshot()["wattgate_intensity_fallback_total"]["series"]
    assert snap == [[["electricitymaps", "DE"], 1.0]]


def test_history_and_forecast(fake_api, fake_time):
    state = EmState()
    api = fake_api(state)
    provider = em(api.url, lambda: state.latest_time)
    start = state.latest_time - timedelta(hours=5)
    history = provider.history("DE", start, state.latest_time)
    assert [r.timestamp for r in history] == [start + timedelta(hours=h) for h in range(6)]
    assert all(r.kind == "history" for r in history)
    assert api.hits[-1].path.endswith("/history")

    old_start = state.latest_time - timedelta(days=3)
    old = provider.history("DE", old_start, old_start + timedelta(hours=2))
    assert len(old) == 3 and api.hits[-1].path.endswith("/past-range")

    forecast = provider.forecast("DE", hours=3)
    assert [r.intensity_g_per_kwh for r in forecast] == [1401.0, 1402.0, 1403.0]
    assert all(r.kind == "forecast" and r.estimated is None for r in forecast)


def test_readings_are_cached_for_the_update_period(fake_api, fake_time):
    api = fake_api(EmState())
    provider = chain(em(api.url, fake_time.utc), fake_time, ttl_s={"electricitymaps": 300})
    for _ in range(5):
        provider.current("DE")
    assert api.count("/v3/carbon-intensity/latest") == 1
    provider.current("FR")  # another region is another cache entry
    assert api.count("/v3/carbon-intensity/latest") == 2
    fake_time.advance(301)
    provider.current("DE")
    assert api.count("/v3/carbon-intensity/latest") == 3


def test_outage_falls_back_to_last_known_then_static(fake_api, fake_time):
    api = fake_api(EmState())
    metrics = MetricsRegistry()
    provider = chain(em(api.url, fake_time.utc), fake_time, metrics, max_age_s=7200, last_known_max_age_s=5 * 3600)
    live = provider.current("DE")
    assert live.kind == "live"

    api.down_status = 500
    fake_time.advance(400)  # past the cache lifetime
    during_500 = provider.current("DE")
    assert (during_500.kind, during_500.source) == ("last-known", "electricitymaps")
    assert during_500.intensity_g_per_kwh == live.intensity_g_per_kwh
    assert api.hits[-1].path == "/v3/carbon-intensity/latest"

    api.close()  # now connection refused
    fake_time.advance(2 * 3600)
    during_refused = provider.current("DE")
    assert during_refused.kind == "last-known"
    assert during_refused.stale is True  # the grid value is now > 2 h old

    fake_time.advance(3 * 3600)  # the last-known reading is too old to use
    assert provider.current("DE").kind == "static"
    counted = metrics.snapshot()["wattgate_intensity_fallback_total"]["series"]
    assert counted == [[["electricitymaps", "DE"], 3.0]]


def test_refused_connection_without_history_goes_straight_to_static(fake_time):
    reading = chain(em(refused_url(), fake_time.utc), fake_time).current("DE")
    assert reading.kind == "static"
    with pytest.raises(ProviderUnavailable):
        em(refused_url(), fake_time.utc).current("DE")


def test_stale_flag_follows_the_grid_timestamp(fake_api, fake_time):
    state = EmState()
    api = fake_api(state)
    provider = chain(em(api.url, fake_time.utc), fake_time, max_age_s=3600, ttl_s={"electricitymaps": 0})
    assert provider.current("DE").stale is False
    state.latest_time -= timedelta(hours=3)  # the source itself lags
    lagging = provider.current("DE")
    assert lagging.kind == "live" and lagging.stale is True


def test_failed_provider_is_not_called_again_during_backoff(fake_api, fake_time):
    api = fake_api(EmState())
    api.down_status = 503
    provider = chain(em(api.url, fake_time.utc), fake_time, failure_backoff_s=30)
    for _ in range(10):
        assert provider.current("DE").kind == "static"
    assert api.count() == 1
    fake_time.advance(31)
    api.down_status = None
    assert provider.current("DE").kind == "live"
    assert api.count() == 2
