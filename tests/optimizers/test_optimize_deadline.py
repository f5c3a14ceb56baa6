"""``wattgate optimize --deadline``: the window planned on a replayed forecast and waited for on a fake
clock (no real waiting), the training record's window and counterfactual, and progress lines off a terminal."""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from jobs.scheduler import Scheduler
from jobs.settings import JobsSettings
from models.registry import ModelRegistry
from optimizers import cli
from optimizers.deadline import RunWindow, expected_run_s, parse_duration_s, plan_run, wait_for
from optimizers.progress import Progress, reporting
from optimizers.settings import OptimizersSettings
from routing.intensity.factory import make_provider
from routing.intensity.traces import load_trace
from wattgate.errors import BadRequest
from wattgate.settings import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from jobs_fakes import DIRTY, TRACES  # noqa: E402

REPLAY = {"provider": "replay", "replay": {"files": {"DE": str(TRACES / "DE_2020H1.csv")},
                                           "start": DIRTY.isoformat(), "speed": 0}}


def serving_settings(tmp_path):
    return load_settings(None, intensity=REPLAY, server={"region": "DE", "state_dir": str(tmp_path / "state")})


def trace_min_within(hours: float, run_h: float = 0.0):
    trace = load_trace(TRACES / "DE_2020H1.csv", region="DE")
    points = [(t, g) for t, g in zip(trace.times, trace.intensity_g_per_kwh)
              if DIRTY <= t and t + timedelta(hours=run_h) <= DIRTY + timedelta(hours=hours)]
    return min(points, key=lambda p: p[1])


def test_durations_parse_and_bad_ones_are_400():
    assert [parse_duration_s(t) for t in ("12h", "90m", "45s", "1.5d", "3600")] == [43200, 5400, 45, 129600, 3600]
    for bad in ("", "soon", "-1h", "0h", "12 hours"):
        with pytest.raises(BadRequest):
            parse_duration_s(bad)


def test_the_run_waits_for_the_forecast_minimum_on_a_fake_clock(tmp_path):
    provider = make_provider(load_settings(None, intensity=REPLAY).intensity)
    scheduler = Scheduler(JobsSettings(), provider)
    window = plan_run(scheduler, "DE", 12 * 3600, 1800, "--expected-duration")
    best_t, best_g = trace_min_within(12)
    assert window.decision == "shifted" and abs((window.start - best_t).total_seconds()) <= 1800  # one trace step
    assert window.expected_intensity_g_per_kwh < window.counterfactual_intensity_g_per_kwh
    assert window.counterfactual_intensity_g_per_kwh == pytest.approx(provider.current("DE").intensity_g_per_kwh)
    slept, lines = [], []

    def sleep(s: float) -> None:  # the clock moves, no one waits
        slept.append(s)
        provider.clock.set(provider.clock() + timedelta(seconds=s))

    waited = wait_for(window, scheduler.now, sleep, lines.append, every_s=3600)
    assert waited == (window.start - DIRTY).total_seconds() and scheduler.now() == window.start
    assert len(lines) == len(slept) >= 2 and "waiting for the low-carbon window" in lines[0]
    with pytest.raises(BadRequest, match="past"):
        plan_run(scheduler, "DE", -5, 60, "x")
    with pytest.raises(BadRequest, match="longer than the deadline"):
        plan_run(scheduler, "DE", 600, 3600, "x")


def test_the_record_carries_the_window_the_counterfactual_and_the_carbon():
    w = RunWindow(DIRTY, DIRTY + timedelta(hours=12), DIRTY + timedelta(hours=8), DIRTY + timedelta(hours=9), "DE",
                  "shifted", "min-carbon window", 200.0, 500.0, 3600.0, "--expected-duration")
    r = w.record(energy_j=7.2e6, method="cpu-time-model", measured=False, actual_intensity_g_per_kwh=210.0)
    assert r["window"] == {"start": "2020-03-03T01:00:00Z", "end": "2020-03-03T02:00:00Z",
                           "expected_intensity_g_per_kwh": 200.0}
    assert r["counterfactual_intensity_g_per_kwh"] == 500.0 and r["energy_j"] == 7.2e6
    assert (r["carbon_g"], r["counterfactual_carbon_g"], r["carbon_avoided_g"]) == pytest.approx((420.0, 1000.0, 580.0))
    assert r["method"] == "cpu-time-model" and r["measured"] is False and "modelled" in r["carbon_basis"]


def test_expected_duration_comes_from_the_previous_training_record(digits_repository, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(digits_repository, repo)
    registry = ModelRegistry(repo)
    with pytest.raises(BadRequest, match="--expected-duration"):
        expected_run_s(registry, "digits", None)  # the built card has no training records
    assert expected_run_s(registry, "digits", 600.0) == (600.0, "--expected-duration")
    card = registry.show("digits")
    names = list(card.variants)
    for name in names:  # the teacher step is shared by every variant: counted once
        registry.update_variant("digits", card.version, name, training={"step": "teacher-s0", "duration_s": 100.0,
                                                                        "details": {"seed": 0}})
    registry.update_variant("digits", card.version, names[0], training={"step": "kd-s0", "duration_s": 50.0,
                                                                        "details": {"seed": 0}})
    run_s, basis = expected_run_s(registry, "digits", None)
    assert run_s == 150.0 and "2 steps" in basis


def test_optimize_with_a_deadline_waits_runs_and_records_the_window(digits_repository, tmp_path, capsys):
    repo = tmp_path / "repo"
    shutil.copytree(digits_repository, repo)
    serving = serving_settings(tmp_path)
    settings = OptimizersSettings(repository=repo, work_dir=tmp_path / "work")
    card = ModelRegistry(repo).show("digits")
    provider = make_provider(serving.intensity)
    ran_at = []

    def pipeline(name, s, quick=False):  # stands in for the real pipeline (which takes minutes)
        ran_at.append(provider.clock())
        sum(i * i for i in range(200_000))  # some CPU for the run meter to see
        return {"model": "digits", "version": card.version, "registered": True}

    def sleep(s: float) -> None:
        provider.clock.set(provider.clock() + timedelta(seconds=s))

    args = argparse.Namespace(pipeline="digits", repository=None, work_dir=None, seeds=None, quick=True, config=None,
                              deadline="12h", expected_duration="30m")
    log = io.StringIO()
    assert cli.run(args, settings, serving=serving, provider=provider, sleep=sleep, stream=log, pipeline=pipeline) == 0
    best_t, _ = trace_min_within(12)
    assert abs((ran_at[0] - best_t).total_seconds()) <= 1800  # it ran in the window, after waiting
    assert "waiting for the low-carbon window" in log.getvalue()
    record = json.loads(capsys.readouterr().out)["carbon_window"]
    assert record["window"]["start"] == ran_at[0].isoformat().replace("+00:00", "Z")
    assert record["counterfactual_intensity_g_per_kwh"] > record["window"]["expected_intensity_g_per_kwh"]
    assert record["carbon_g"] < record["counterfactual_carbon_g"] and record["method"] == "cpu-time-model"
    for v in ModelRegistry(repo).show("digits", card.version).variants.values():
        assert v.training[-1]["step"] == "carbon-window" and v.training[-1]["window"] == record["window"]
    args.deadline = "10m"  # shorter than the expected run: refused before anything runs
    assert cli.run(args, settings, serving=serving, provider=provider, sleep=sleep, stream=log, pipeline=pipeline) == 1
    assert len(ran_at) == 1 and "longer than the deadline" in capsys.readouterr().out


def test_progress_lines_off_a_terminal_for_a_tiny_training_run():
    torch = pytest.importorskip("torch")
    from optimizers.training import TrainConfig, fit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = (x.sum(1) > 0).long()

    def batches(epoch, gen):
        for i in range(0, 64, 16):
            yield x[i:i + 16], y[i:i + 16]

    stream = io.StringIO()
    joules = iter(range(1, 100))
    with reporting(Progress(stream, energy_j=lambda: float(next(joules)), energy_method="cpu-time-model",
                            tty=False, log_every_s=0)):
        fit(torch.nn.Linear(8, 2), batches, lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]),
            lambda m: 0.5, TrainConfig(epochs=3, patience=None, amp="off"))
    lines = stream.getvalue().splitlines()
    assert [ln.split(" loss ")[0] for ln in lines] == [f"train: epoch {i}/3" for i in (1, 2, 3)]
    assert all(" eta " in ln and "J (cpu-time-model)" in ln for ln in lines)
    assert lines[-1].split(" eta ")[1].startswith("0 s")


def test_on_a_terminal_the_bar_shows_epoch_loss_and_energy():
    torch = pytest.importorskip("torch")
    from optimizers.progress import stage
    from optimizers.training import TrainConfig, fit

    x, y = torch.randn(32, 4), torch.randn(32, 1)
    stream = io.StringIO()
    with reporting(Progress(stream, energy_j=lambda: 12.5, energy_method="cpu-time-model", tty=True,
                            min_interval_s=0)), stage("kd-s0"):
        fit(torch.nn.Linear(4, 1), lambda e, g: [(x, y)], lambda m, b: torch.nn.functional.mse_loss(m(b[0]), b[1]),
            lambda m: 0.5, TrainConfig(epochs=2, patience=None, amp="off"))
    out = stream.getvalue()
    assert "kd-s0" in out and "2/2" in out and "loss" in out and "12.5 J (cpu-time-model)" in out
