"""WattTime v3 client against a local server: basic-auth login, token expiry and renewal, HTTP 429."""

from __future__ import annotations

import base64
import time
from datetime import datetime, timedelta, timezone

import pytest
from intensity_fakes import floor_to

from routing.intensity.base import LB_PER_MWH_TO_G_PER_KWH, AuthRejected
from routing.intensity.resilient import ResilientProvider
from routing.intensity.static import StaticProvider
from routing.intensity.watttime import WattTimeProvider
from wattgate.errors import ProviderUnavailable

USER, PASSWORD = "wattgate", "s3cret"
MOER_LBS_PER_MWH = 1000.0


class WattTimeServer:
    """The v3 schema; each token is good for ``token_uses`` data calls (the real API: 30 minutes)."""

    def __init__(self, token_uses: int = 1000) -> None:
        self.token_uses = token_uses
        self.tokens: dict[str, int] = {}  # token -> data calls left
        self.now = floor_to(datetime.now(timezone.utc), 5)

    def _login(self, req):
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if req.headers.get("authorization") != expected:
            return 401, {}, {"error": "Invalid credentials"}
        token = f"tok-{len(self.tokens) + 1}"
        self.tokens[token] = self.token_uses
        return 200, {}, {"token": token}

    def _authorised(self, req) -> bool:
        auth = req.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        if not auth.startswith("Bearer ") or self.tokens.get(token, 0) <= 0:
            return False
        self.tokens[token] -= 1
        return True

    def _series(self, start: datetime, count: int, value, units: str, region: str) -> dict:
        data = [
            {"point_time": (start + timedelta(minutes=5 * i)).isoformat(), "value": value(i)} for i in range(count)
        ]
        meta = {
            "region": region,
            "signal_type": "co2_moer",
            "units": units,
            "data_point_period_seconds": 300,
            "model": {"date": "2024-10-01"},
            "generated_at": self.now.isoformat(),
            "warnings": [],
        }
        return {"data": data, "meta": meta}

    def __call__(self, req):
        if req.path == "/login":
            return self._login(req)
        if not self._authorised(req):
            return 401, {}, {"error": "Unauthorized"}
        region = req.arg("region")
        if req.arg("signal_type") != "co2_moer" or region != "CAISO_NORTH":
            return 400, {}, {"error": "bad region or signal_type"}
        if req.path == "/v3/forecast":
            steps = int(req.arg("horizon_hours") or 24) * 12 + 1
            return 200, {}, self._series(self.now, steps, lambda i: MOER_LBS_PER_MWH + i, "lbs_co2_per_mwh", region)
        if req.path == "/v3/signal-index":
            return 200, {}, self._series(self.now, 1, lambda i: 42, "percentile", region)
        if req.path == "/v3/historical":
            start = datetime.fromisoformat(req.arg("start"))
            end = datetime.fromisoformat(req.arg("end"))
            steps = int((end - start).total_seconds() // 300) + 1
            return 200, {}, self._series(start, steps, lambda i: 800.0, "lbs_co2_per_mwh", region)
        return 404, {}, {"error": "no such endpoint"}


def wt(url: str, password: str = PASSWORD, **kw) -> WattTimeProvider:
    return WattTimeProvider({"us-west": "CAISO_NORTH"}, USER, password, base_url=url, timeout_s=2, **kw)


def test_login_then_bearer_and_moer_converted_to_g_per_kwh(fake_api):
    server = WattTimeServer()
    api = fake_api(server)
    provider = wt(api.url, clock=lambda: server.now)
    reading = provider.current("us-west")
    assert reading.intensity_g_per_kwh == pytest.approx(MOER_LBS_PER_MWH * LB_PER_MWH_TO_G_PER_KWH)
    assert (reading.signal, reading.kind, reading.source, reading.estimated) == ("moer", "live", "watttime", True)
    assert reading.timestamp == server.now
    assert [h.path for h in api.hits] == ["/login", "/v3/forecast"]
    assert api.hits[1].headers["authorization"] == "Bearer tok-1"
    assert api.hits[1].arg("horizon_hours") == "0"

    forecast = provider.forecast("us-west", hours=1)
    assert len(forecast) == 13 and forecast[-1].intensity_g_per_kwh == pytest.approx(1012 * LB_PER_MWH_TO_G_PER_KWH)
    history = provider.history("us-west", server.now - timedelta(hours=1), server.now)
    assert len(history) == 13 and history[0].kind == "history"
    assert history[0].intensity_g_per_kwh == pytest.approx(800 * LB_PER_MWH_TO_G_PER_KWH)
    assert provider.logins == 1


def test_server_side_expiry_triggers_one_relogin(fake_api):
    server = WattTimeServer(token_uses=2)
    api = fake_api(server)
    provider = wt(api.url)
    values = [provider.current("us-west").intensity_g_per_kwh for _ in range(5)]
    assert len(set(values)) == 1  # no call surfaced the expiry
    assert provider.logins == 3  # tokens of 2 uses each: 5 data calls need 3 tokens
    statuses = [h.path for h in api.hits]
    assert statuses.count("/login") == 3


def test_token_is_renewed_before_it_expires(fake_api, fake_time):
    server = WattTimeServer()
    api = fake_api(server)
    provider = wt(api.url, token_ttl_s=1800, monotonic=fake_time.mono)
    provider.current("us-west")
    fake_time.advance(1000)
    provider.current("us-west")
    assert provider.logins == 1  # still valid: reused
    fake_time.advance(750)  # 1750 s: inside the 60 s safety margin before 30 minutes
    provider.current("us-west")
    assert provider.logins == 2
    assert len(server.tokens) == 2
    assert api.count("/v3/") == 3  # the renewal was proactive: no 401 round trip


def test_wrong_password_is_rejected_and_chain_serves_static(fake_api):
    api = fake_api(WattTimeServer())
    with pytest.raises(AuthRejected, match="login rejected"):
        wt(api.url, password="wrong").current("us-west")
    chain = ResilientProvider([("watttime", wt(api.url, password="wrong")), ("static", StaticProvider({"us-west": 250.0}))])
    assert chain.current("us-west").intensity_g_per_kwh == 250.0


def test_short_retry_after_is_waited_out(fake_api):
    server = WattTimeServer()
    api = fake_api(server)
    provider = wt(api.url)
    provider.current("us-west")  # logged in
    api.faults.append((429, {"Retry-After": "1"}, {"error": "rate limited"}))
    started = time.monotonic()
    reading = provider.current("us-west")
    assert reading.signal == "moer"
    assert time.monotonic() - started >= 0.95
    limited, retried = api.hits[-2], api.hits[-1]
    assert retried.at_s - limited.at_s >= 0.95  # no request inside the Retry-After window


def test_long_retry_after_pauses_the_source_and_falls_back(fake_api):
    server = WattTimeServer()
    api = fake_api(server)
    provider = wt(api.url, max_retry_wait_s=2)
    provider.current("us-west")
    api.faults.append((429, {"Retry-After": "120"}, {"error": "rate limited"}))
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="429"):
        provider.current("us-west")
    assert time.monotonic() - started < 0.5  # did not sit out two minutes in the request path
    seen = api.count()
    for _ in range(3):
        with pytest.raises(ProviderUnavailable, match="rate limited"):
            provider.current("us-west")
    assert api.count() == seen  # never hammered while paused

    chain = ResilientProvider([("watttime", provider), ("static", StaticProvider({"us-west": 250.0}))])
    assert chain.current("us-west").kind == "static"
    assert api.count() == seen


def test_signal_index_is_a_percentile_and_says_so(fake_api):
    api = fake_api(WattTimeServer())
    reading = wt(api.url, current_endpoint="signal-index").current("us-west")
    assert (reading.signal, reading.intensity_g_per_kwh) == ("moer-percentile", 42.0)
    assert api.hits[-1].path == "/v3/signal-index" and api.hits[-1].arg("signal_type") == "co2_moer"
