"""``wattgate optimize PIPELINE``: run an optimization pipeline and register its variants; with
``--deadline``, first wait for the low-carbon window before it (``optimizers/deadline.py``).
Progress (``optimizers/progress.py``) goes to stderr: a bar on a terminal, log lines otherwise."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

PIPELINES = ("digits", "minilm")


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``optimize`` sub-command to the ``wattgate`` console script's subparsers."""
    p = subparsers.add_parser("optimize", help="distil, quantize, prune and profile a model into registered variants")
    p.add_argument("pipeline", choices=PIPELINES)
    p.add_argument("--repository", type=Path, default=None, help="model repository (default: model_repository)")
    p.add_argument("--work-dir", type=Path, default=None, help="run outputs and step cache (default: var/optimize)")
    p.add_argument("--seeds", type=int, default=None, help="digits: seeds to average test accuracy over (default 5)")
    p.add_argument("--quick", action="store_true", help="a small, fast run for smoke tests (separate cache and no targets)")
    p.add_argument("--config", type=Path, default=None,
                   help="YAML settings file (section optimizers; with --deadline also intensity, server.region, jobs)")
    p.add_argument("--deadline", default=None,
                   help="finish by then (e.g. 12h): wait for the minimum-carbon window before it, using the "
                        "configured intensity provider's forecast, and record it in the training record")
    p.add_argument("--expected-duration", default=None,
                   help="how long the run takes (e.g. 40m); default: the previous version's training records")
    p.set_defaults(func=run)
    return p


def settings_from_args(args: argparse.Namespace, settings=None):
    """``settings`` (else the config file's ``optimizers:`` section under ``WATTGATE_OPTIMIZERS_*``) with the flags applied."""
    from optimizers.settings import OptimizersSettings

    if settings is None:
        from wattgate.config_file import load_section

        settings = load_section(getattr(args, "config", None), "optimizers", OptimizersSettings)
    update = {}
    if args.repository is not None:
        update["repository"] = args.repository
    if getattr(args, "work_dir", None) is not None:
        update["work_dir"] = args.work_dir
    if args.seeds is not None:
        update["digits"] = settings.digits.model_copy(update={"seeds": args.seeds})
    return OptimizersSettings.model_validate({**settings.model_dump(), **update})


def run(args: argparse.Namespace, settings=None, *, serving=None, provider=None, sleep=time.sleep, stream=None,
        pipeline=None) -> int:
    """Run the pipeline; ``settings`` is an OptimizersSettings, else the config file's section (or defaults).
    ``serving``: the gateway Settings for --deadline (else the config file's), ``provider`` its intensity
    provider (else built from it); ``sleep``, ``stream`` and ``pipeline`` (as ``run_pipeline``) are for tests."""
    from optimizers.metering import make_run_meter, metered
    from optimizers.progress import Progress, reporting
    from wattgate.errors import WattgateError

    settings = settings_from_args(args, settings)
    pipeline = pipeline or run_pipeline
    meter = make_run_meter(settings.profile.host_profile)
    progress = Progress(stream or sys.stderr, energy_method=meter.method)
    try:
        planned = _plan(args, settings, serving, provider, sleep, progress.log) if getattr(args, "deadline", None) else None
        with reporting(progress), metered(meter, f"optimize-{args.pipeline}") as run_record:
            e0 = meter.read().energy_j
            progress.energy_j = lambda: meter.read().energy_j - e0
            summary = pipeline(args.pipeline, settings, quick=args.quick)
        if planned is not None:
            summary["carbon_window"] = _record(planned, run_record, settings, summary)
    except (WattgateError, RuntimeError, ValueError) as exc:
        print(f"optimize {args.pipeline} failed: {exc}")
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k != "table"}, indent=2, default=str))
    return 0


def _plan(args, settings, serving, provider, sleep, log):
    """Plan the window with the jobs scheduler on the configured provider, then wait for it."""
    from jobs.scheduler import Scheduler
    from models.registry import ModelRegistry
    from optimizers.deadline import expected_run_s, parse_duration_s, plan_run, wait_for
    from routing.intensity.factory import make_provider

    if serving is None:
        from wattgate.settings import load_settings

        serving = load_settings(args.config)
    flag = parse_duration_s(args.expected_duration) if args.expected_duration else None
    model = {"digits": "digits", "minilm": "minilm"}[args.pipeline]
    run_s, basis = expected_run_s(ModelRegistry(settings.repository), model, flag)
    provider = provider or make_provider(serving.intensity)
    scheduler = Scheduler(serving.jobs, provider)
    window = plan_run(scheduler, serving.server.region, parse_duration_s(args.deadline), run_s, basis)
    log(f"optimize {args.pipeline}: {window.describe()}")
    wait_for(window, scheduler.now, sleep, log)
    actual = scheduler.intensity_now([window.region]).get(window.region)  # when it really starts
    return window, actual


def _record(planned, run_record, settings, summary) -> dict:
    """The carbon-window entry, appended to the training records of the version this run registered."""
    from models.registry import ModelRegistry

    window, actual = planned
    record = window.record(run_record.energy_j, run_record.method, run_record.measured, actual)
    if summary.get("registered"):
        registry = ModelRegistry(settings.repository)
        card = registry.show(summary["model"], str(summary["version"]))
        for name in card.variants:
            registry.update_variant(card.name, card.version, name, training=record)
    else:  # nothing new was registered: the record is only printed
        record["note"] = "no new version was registered, so no card holds this record"
    return record


def run_pipeline(name: str, settings, quick: bool = False, log=print) -> dict:
    from models.registry import ModelRegistry

    registry = ModelRegistry(settings.repository)
    if name == "digits":
        from optimizers.pipelines import digits as pipeline
    elif name == "minilm":
        from optimizers.pipelines import minilm as pipeline
    else:
        raise ValueError(f"unknown pipeline {name!r}; known: {', '.join(PIPELINES)}")
    return pipeline.run(settings, registry, quick=quick, log=log)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="wattgate")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
