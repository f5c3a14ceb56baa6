"""The shared wrapper: fallback order, counting, bounded logging, single-flight fetches, series fallback."""

from __future__ import annotations

import logging
import pickle
import threading
import time
from datetime import timedelta

import pytest

from routing.intensity.base import AuthRejected, CarbonIntensityProvider, IntensityReading, NotSupported, UnknownRegion
from routing.intensity.resilient import LAST_KNOWN, ResilientProvider
from routing.intensity.static import StaticProvider
from wattgate.errors import ProviderUnavailable
from wattgate.metrics import MetricsRegistry


class Scripted:
    """An in-process provider whose behaviour the test sets; counts its calls."""

    update_period_s = 60.0

    def __init__(self, name: str, clock, value: float = 100.0) -> None:
        self.name, self.clock, self.value = name, clock, value
        self.error: BaseException | None = None
        self.calls = 0
        self.delay_s = 0.0
        self.series_error: BaseException | None = None

    def _reading(self, region, kind="live", when=None) -> IntensityReading:
        now = self.clock()
        return IntensityReading(region, self.value, when or now, now, self.name, kind, "average-lca")

    def current(self, region):
        self.calls += 1
        time.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return self._reading(region)

    def history(self, region, start, end):
        self.calls += 1
        if self.series_error is not None:
            raise self.series_error
        return [self._reading(region, "history", start)]

    def forecast(self, region, hours):
        self.calls += 1
        if self.series_error is not None:
            raise self.series_error
        return [self._reading(region, "forecast", self.clock() + timedelta(hours=hours))]


def make(fake_time, *steps, metrics=None, **kw) -> ResilientProvider:
    return ResilientProvider(list(steps), clock=fake_time.utc, monotonic=fake_time.mono, metrics=metrics, **kw)


def test_chain_tries_providers_in_order_and_counts_each_one_passed_over(fake_time):
    a, b = Scripted("a", fake_time.utc, 10.0), Scripted("b", fake_time.utc, 20.0)
    metrics = MetricsRegistry()
    chain = make(fake_time, ("a", a), ("b", b), LAST_KNOWN, ("static", StaticProvider({"DE": 381.0})), metrics=metrics)
    assert chain.current("DE").source == "a"
    a.error = ProviderUnavailable("a is down")
    fake_time.advance(61)
    assert chain.current("DE").source == "b"
    b.error = KeyError("carbonIntensity")  # a malformed answer counts as an outage too
    fake_time.advance(61)
    reading = chain.current("DE")
    assert (reading.kind, reading.source, reading.intensity_g_per_kwh) == ("last-known", "b", 20.0)
    counter = metrics.counter("wattgate_intensity_fallback_total", "", ("provider", "region"))
    assert counter.value(provider="a", region="DE") == 2.0
    assert counter.value(provider="b", region="DE") == 1.0
    assert metrics.gauge("wattgate_intensity_g_per_kwh", "", ("region",)).value(region="DE") == 20.0


def test_static_answers_never_become_last_known(fake_time):
    live = Scripted("live", fake_time.utc)
    live.error = ProviderUnavailable("down from the start")
    chain = make(fake_time, ("live", live), LAST_KNOWN, ("static", StaticProvider({"DE": 381.0})), failure_backoff_s=0)
    assert chain.current("DE").kind == "static"
    assert chain.current("DE").kind == "static"  # not "last-known" wrapping a static value


def test_static_answers_never_go_stale(fake_time):
    chain = make(fake_time, ("static", StaticProvider({"DE": 381.0}, clock=fake_time.utc)), max_age_s=3600)
    chain.current("DE")
    fake_time.advance(5 * 3600)
    assert chain.current("DE").stale is False


def test_everything_down_raises_provider_unavailable(fake_time):
    live = Scripted("live", fake_time.utc)
    live.error = ProviderUnavailable("down")
    chain = make(fake_time, ("live", live), LAST_KNOWN)
    with pytest.raises(ProviderUnavailable, match="every intensity provider"):
        chain.current("DE")


def test_fallback_warnings_are_rate_limited(fake_time, caplog):
    live = Scripted("live", fake_time.utc)
    live.error = ProviderUnavailable("down")
    chain = make(fake_time, ("live", live), ("static", StaticProvider({"DE": 381.0})), failure_backoff_s=0, log_interval_s=60)
    with caplog.at_level(logging.WARNING, logger="routing.intensity.resilient"):
        for _ in range(10):
            chain.current("DE")
            fake_time.advance(1)
        assert len(caplog.records) == 1
        fake_time.advance(60)
        chain.current("DE")
    assert len(caplog.records) == 2
    assert "9 similar suppressed" in caplog.records[-1].getMessage()
    assert live.calls == 11  # back-off 0: every call tried the source, but logging stayed bounded


def test_concurrent_cold_requests_share_one_fetch(fake_time):
    live = Scripted("live", fake_time.utc)
    live.delay_s = 0.2
    chain = make(fake_time, ("live", live))
    results: list[IntensityReading] = []
    threads = [threading.Thread(target=lambda: results.append(chain.current("DE"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and live.calls == 1


def test_series_fall_back_past_unsupported_and_failing_sources(fake_time):
    a, b = Scripted("a", fake_time.utc), Scripted("b", fake_time.utc)
    a.series_error = NotSupported("a has no forecast")
    chain = make(fake_time, ("a", a), ("b", b), LAST_KNOWN)
    assert chain.forecast("DE", 2)[0].source == "b"
    chain.forecast("DE", 2)
    assert b.calls == 1  # cached for b's update period
    b.series_error = ProviderUnavailable("b is down")
    fake_time.advance(61)
    with pytest.raises(ProviderUnavailable):
        chain.forecast("DE", 2)
    b.series_error = NotSupported("b has none either")
    fake_time.advance(61)
    with pytest.raises(NotSupported):
        chain.history("DE", fake_time.utc() - timedelta(hours=1), fake_time.utc())


@pytest.mark.asyncio
async def test_acurrent_runs_off_the_event_loop(fake_time):
    chain = make(fake_time, ("static", StaticProvider({"FR": 56.0})))
    reading = await chain.acurrent("FR")
    assert reading.intensity_g_per_kwh == 56.0


def test_chain_configuration_errors_fail_loudly(fake_time):
    s = StaticProvider()
    with pytest.raises(ValueError, match="duplicate"):
        ResilientProvider([("static", s), ("static", s)])
    with pytest.raises(ValueError, match="at least one provider"):
        ResilientProvider([LAST_KNOWN])
    with pytest.raises(ValueError, match="ttl_s"):
        ResilientProvider([("static", s)], ttl_s={"electricitymaps": 5})


def test_protocol_and_errors_travel_between_processes():
    assert isinstance(ResilientProvider([("static", StaticProvider())]), CarbonIntensityProvider)
    assert isinstance(StaticProvider(), CarbonIntensityProvider)
    for exc in (NotSupported("no forecast"), UnknownRegion("no zone"), AuthRejected("401")):
        clone = pickle.loads(pickle.dumps(exc))
        assert type(clone) is type(exc) and clone.message == exc.message
    assert NotSupported("x").status_code == 501 and UnknownRegion("x").status_code == 404
    assert AuthRejected("x").status_code == 502
