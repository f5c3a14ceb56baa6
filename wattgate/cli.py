"""The ``wattgate`` console script: serve, models, ledger, routing, simulate, optimize, loadtest, report, jobs, keys, audit."""

from __future__ import annotations

import argparse
import importlib
import sys

from wattgate.errors import WattgateError

# Each room registers its own subcommands; a room whose optional dependencies are missing is skipped.
_PACKAGES = {"wattgate", "gateway", "models", "energy", "routing", "optimizers", "loadtests", "cache", "reports", "jobs",
             "tenants"}
_ROOMS = ["gateway.cli", "models.cli", "energy.cli", "routing.cli", "optimizers.cli", "loadtests.cli", "reports.cli",
          "jobs.cli", "tenants.cli"]


def build_parser() -> tuple[argparse.ArgumentParser, dict]:
    parser = argparse.ArgumentParser(prog="wattgate", description="Energy- and carbon-aware inference gateway.")
    sub = parser.add_subparsers(dest="command", required=True)
    handlers = {}
    for name in _ROOMS:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            # A room whose optional extra is not installed (torch, locust) simply has no commands.
            if exc.name == name or (exc.name or "").split(".")[0] not in _PACKAGES:
                continue
            raise
        before = set(sub.choices)
        module.register(sub)
        for cmd in set(sub.choices) - before:
            handlers[cmd] = module.run
    return parser, handlers


def main(argv: list[str] | None = None) -> int:
    parser, handlers = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(handlers[args.command](args) or 0)
    except WattgateError as exc:
        print(f"wattgate: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
