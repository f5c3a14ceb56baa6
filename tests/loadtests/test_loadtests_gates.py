"""``--fail-on`` parsing and judging, the CLI's option handling, and the Prometheus scraper."""

from __future__ import annotations

import argparse
import math

import pytest

from loadtests import scrape
from loadtests.cli import duration_s, register, settings_from_args
from loadtests.scrape import MetricsDelta, parse_prometheus
from loadtests.settings import LoadtestSettings
from loadtests.thresholds import Threshold, judge, parse_fail_on
from wattgate.errors import BadRequest
from wattgate.metrics import MetricsRegistry, render


def test_fail_on_uses_each_metrics_natural_direction():
    got = parse_fail_on("p99_ms=200,j_per_1k=50,error_rate=0,requests_per_s=100,cache_hit_rate=0.3")
    assert got == [
        Threshold("p99_ms", 200.0, floor=False),
        Threshold("j_per_1k", 50.0, floor=False),
        Threshold("error_rate", 0.0, floor=False),
        Threshold("requests_per_s", 100.0, floor=True),
        Threshold("cache_hit_rate", 0.3, floor=True),
    ]


def test_fail_on_explicit_operators_and_whitespace():
    assert parse_fail_on(" p95_ms >= 1 , requests_per_s<=5e3,") == [
        Threshold("p95_ms", 1.0, floor=True), Threshold("requests_per_s", 5000.0, floor=False)]


@pytest.mark.parametrize("spec", ["p99=200", "p99_ms", "p99_ms=fast", "p99_ms==2", "", " , ", "p99_ms=nan"])
def test_fail_on_rejects_bad_specs(spec):
    with pytest.raises(BadRequest):
        parse_fail_on(spec)


def test_judge_passes_at_the_limit_fails_past_it_and_on_missing_values():
    ts = parse_fail_on("p99_ms=200,error_rate=0,requests_per_s=100,j_per_1k=50")
    verdicts = judge(ts, {"p99_ms": 200.0, "error_rate": 0.001, "requests_per_s": 99.9, "j_per_1k": None})
    assert [v.passed for v in verdicts] == [True, False, False, False]
    assert verdicts[3].value is None and "not measured" in str(verdicts[3])
    assert judge(parse_fail_on("p50_ms=10"), {"p50_ms": math.nan})[0].passed is False


def test_settings_validate_fail_on_spec():
    with pytest.raises(ValueError, match="unknown metric"):
        LoadtestSettings(fail_on="latency=3")


def test_duration_parsing():
    assert duration_s("45") == 45
    assert duration_s("30s") == 30
    assert duration_s("2m") == 120
    assert duration_s("1h30m") == 5400
    with pytest.raises(argparse.ArgumentTypeError):
        duration_s("soon")


def _parse(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["loadtest", *argv])


def test_flags_override_defaults_and_invalid_values_raise_bad_request():
    args = _parse(["-u", "3", "-t", "1m", "--classes", "SteadyUser,BadInputUser", "--tags", "binary", "--fail-on", "p99_ms=5"])
    s = settings_from_args(args, LoadtestSettings(spawn_rate=2))
    assert (s.users, s.duration_s, s.spawn_rate) == (3, 60.0, 2.0)
    assert s.classes == ("SteadyUser", "BadInputUser") and s.tags == ("binary",) and s.fail_on == "p99_ms=5"
    with pytest.raises(BadRequest, match="users"):
        settings_from_args(_parse(["-u", "0"]))
    with pytest.raises(BadRequest, match="unknown metric"):
        settings_from_args(_parse(["--fail-on", "joules=1"]))


def test_parse_prometheus_reads_the_gateways_own_rendering():
    reg = MetricsRegistry()
    c = reg.counter("wattgate_energy_joules_total", "J", ("model", "region"))
    c.inc(1.5, model="digits", region='F"R')
    c.inc(0.5, model="minilm", region="DE")
    reg.histogram("wattgate_request_energy_joules", "J", ("model",)).observe(0.002, model="digits")
    samples = parse_prometheus(render(reg.snapshot()))
    assert samples[("wattgate_energy_joules_total", (("model", "digits"), ("region", 'F"R')))] == 1.5
    assert samples[("wattgate_request_energy_joules_bucket", (("le", "+Inf"), ("model", "digits")))] == 1.0
    assert samples[("wattgate_request_energy_joules_count", (("model", "digits"),))] == 1.0


def test_metrics_delta_sums_filters_and_survives_resets():
    before = parse_prometheus('wattgate_requests_total{model="digits",region="FR"} 10\nwattgate_requests_total{model="m",region="DE"} 4\n')
    after = parse_prometheus(
        "# HELP x\nwattgate_requests_total{model=\"digits\",region=\"FR\"} 25\n"
        "wattgate_requests_total{model=\"m\",region=\"DE\"} 3\n"  # a restarted replica: counts from zero
        "wattgate_requests_total{model=\"new\",region=\"DE\"} 2 1700000000000\n"
        "garbage line\n"
    )
    d = MetricsDelta(before, after)
    assert d.total(scrape.REQUESTS) == 15 + 3 + 2
    assert d.total(scrape.REQUESTS, region="DE") == 5
    assert d.by_label(scrape.REQUESTS, "model") == {"digits": 15, "m": 3, "new": 2}
    assert d.total(scrape.CACHE_HITS) is None  # absent, not zero


def test_loadtest_reads_its_section_of_the_shared_config_file(tmp_path, monkeypatch):
    from loadtests.cli import config_section

    cfg = tmp_path / "wattgate.yaml"
    # The serving and optimizers sections are not the load test's to validate.
    cfg.write_text("server:\n  port: 0\noptimizers:\n  torch_threads: 0\n"
                   "loadtest:\n  users: 5\n  models: [digits:fp32, minilm:int8@0.5]\n  fail_on: p99_ms=200\n")
    monkeypatch.setenv("WATTGATE_LOADTEST_SPAWN_RATE", "2.5")
    args = _parse(["--config", str(cfg), "-t", "2m"])
    s = settings_from_args(args, config_section(args.config))
    assert (s.users, s.spawn_rate, s.duration_s, s.fail_on) == (5, 2.5, 120.0, "p99_ms=200")
    assert s.models == ("digits:fp32", "minilm:int8@0.5")
    assert config_section(None) == LoadtestSettings(spawn_rate=2.5)
    cfg.write_text("loadtest:\n  fail_on: joules=1\n")
    with pytest.raises(BadRequest, match=r"loadtest\.fail_on: .*unknown metric"):
        config_section(cfg)
