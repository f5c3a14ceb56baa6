"""Settings validation and the factory: every provider name builds, unknown names fail loudly."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from pydantic import ValidationError

from routing.intensity.carbon_aware_sdk import CarbonAwareSdkProvider
from routing.intensity.electricitymaps import ElectricityMapsProvider
from routing.intensity.factory import make_provider, make_replay_clock, make_single_provider
from routing.intensity.replay import ReplayClock, ReplayProvider
from routing.intensity.settings import IntensitySettings
from routing.intensity.static import StaticProvider
from routing.intensity.ukci import UKCarbonIntensityProvider
from routing.intensity.watttime import WattTimeProvider
from wattgate.errors import BadRequest
from wattgate.metrics import MetricsRegistry


def trace_file(tmp_path, region="DE"):
    path = tmp_path / f"{region}.csv"
    path.write_text(
        "datetime_utc,carbon_intensity_g_per_kwh\n2020-01-01T00:00:00Z,300\n2020-01-01T01:00:00Z,100\n", encoding="utf-8"
    )
    return path


def test_default_is_the_static_table():
    provider = make_provider(IntensitySettings())
    assert provider.chain == ["static"]
    assert provider.current("DE").intensity_g_per_kwh == 381.0


@pytest.mark.parametrize(
    "name,cls,extra",
    [
        ("electricitymaps", ElectricityMapsProvider, {"electricitymaps": {"api_key": "k"}}),
        ("watttime", WattTimeProvider, {"watttime": {"username": "u", "password": "p"}}),
        ("ukci", UKCarbonIntensityProvider, {}),
        ("carbon-aware-sdk", CarbonAwareSdkProvider, {"carbon_aware_sdk": {"zones": {"eu-west": "westeurope"}}}),
        ("static", StaticProvider, {}),
    ],
)
def test_every_name_builds_its_provider(name, cls, extra):
    settings = IntensitySettings(provider=name, **extra)
    assert isinstance(make_single_provider(name, settings), cls)
    chain = make_provider(settings)
    assert chain.chain[0] == name and isinstance(chain.providers()[name], cls)
    if name != "static":
        assert chain.chain == [name, "last-known", "static"]
    chain.close()


def test_replay_settings_build_a_running_clock(tmp_path):
    settings = IntensitySettings(
        provider="replay", replay={"files": {"DE": str(trace_file(tmp_path))}, "speed": 0}, fallback=["static"]
    )
    provider = make_provider(settings)
    assert isinstance(provider.providers()["replay"], ReplayProvider)
    assert isinstance(provider.clock, ReplayClock)
    assert provider.clock() == datetime(2020, 1, 1, tzinfo=timezone.utc)  # defaults to the trace start
    assert provider.current("DE").intensity_g_per_kwh == 300.0
    provider.clock.set(datetime(2020, 1, 1, 1, 30, tzinfo=timezone.utc))  # ops move the replay at run time
    assert provider.current("DE").intensity_g_per_kwh == 100.0
    assert provider.current("FR").kind == "static"  # static runs on the replay clock too: not stale
    assert provider.current("FR").stale is False

    started = IntensitySettings(
        provider="replay", replay={"files": {"DE": str(trace_file(tmp_path))}, "start": "2020-01-01T01:00:00", "speed": 60}
    )
    assert make_replay_clock(started)().hour == 1  # naive start is read as UTC
    assert make_replay_clock(started).speed == 60


def test_ttl_overrides_reach_the_wrapper(tmp_path):
    settings = IntensitySettings(provider="ukci", ukci={"ttl_s": 5}, fallback=["static"])
    provider = make_provider(settings, metrics=MetricsRegistry())
    assert provider._steps[0].ttl_s == 5  # noqa: SLF001 (the one knob a test can see only here)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"provider": "nope"}, "provider"),
        ({"provider": "ukci", "fallback": ["nope"]}, "unknown fallback"),
        ({"provider": "ukci", "fallback": ["static", "static"]}, "twice"),
        ({"provider": "watttime"}, "username"),
        ({"provider": "replay"}, "replay.files"),
        ({"max_age_s": 0}, "max_age_s"),
        ({"electricitymaps": {"base_url": "ftp://x"}}, "base_url"),
        ({"electricitymaps": {"api_token": "k"}}, "api_token"),
        ({"static": {"table": {"FR": -5}}}, "g/kWh"),
    ],
)
def test_bad_settings_fail_loudly(kwargs, match):
    with pytest.raises(ValidationError, match=match):
        IntensitySettings(**kwargs)


def test_unknown_name_in_factory_raises():
    with pytest.raises(BadRequest, match="unknown intensity provider 'nope'"):
        make_single_provider("nope", IntensitySettings())
