"""``wattgate optimize PIPELINE``: run an optimization pipeline and register its variants."""

from __future__ import annotations

import argparse
import json
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
    p.add_argument("--config", type=Path, default=None, help="YAML settings file (section optimizers)")
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


def run(args: argparse.Namespace, settings=None) -> int:
    """Run the pipeline; ``settings`` is an OptimizersSettings, else the config file's section (or defaults)."""
    from wattgate.errors import WattgateError

    settings = settings_from_args(args, settings)
    try:
        summary = run_pipeline(args.pipeline, settings, quick=args.quick)
    except (WattgateError, RuntimeError, ValueError) as exc:
        print(f"optimize {args.pipeline} failed: {exc}")
        return 1
    print(json.dumps({k: v for k, v in summary.items() if k != "table"}, indent=2, default=str))
    return 0


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
