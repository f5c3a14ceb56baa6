"""``wattgate routing show|set`` (the gateway's admin API) and ``wattgate simulate SCENARIO.yaml``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import httpx

from routing.policies import make_policy, policy_names
from wattgate.errors import WattgateError

__all__ = ["register", "run", "parse_weights", "parse_params"]

DEFAULT_URL = "http://127.0.0.1:8000"
AUTOSCALING_PATH = "/v2/admin/autoscaling"
ADMIN_PATH = "/v2/admin/routing"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``routing`` (with ``show`` / ``set``) and ``simulate`` to a parent parser's subcommands."""
    routing = subparsers.add_parser("routing", help="show or change the live routing policy")
    sub = routing.add_subparsers(dest="routing_command", required=True)

    show = sub.add_parser("show", help="print the active policy, its params and recent changes")
    _connection(show)
    show.set_defaults(_routing_run=_show)

    change = sub.add_parser("set", help="switch the live policy, or change an autoscaled pool (validated by the gateway)")
    change.add_argument("policy", nargs="?", help=f"one of: {', '.join(policy_names())}")
    change.add_argument("--pool", help="an autoscaled pool to change live (with --min-replicas/--max-replicas/--headroom)")
    change.add_argument("--min-replicas", type=int, default=None)
    change.add_argument("--max-replicas", type=int, default=None)
    change.add_argument("--headroom", type=float, default=None, help="size pools for intent x (1 + headroom)")
    change.add_argument("--weights", help="for 'weighted': e.g. carbon=1,latency=0.5,energy=0")
    change.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="another policy parameter, e.g. max_utilisation=0.9 (repeatable)")
    _connection(change)
    change.set_defaults(_routing_run=_set)

    sim = subparsers.add_parser("simulate", help="compare routing policies on a scenario of replayed grid traces")
    sim.add_argument("scenario", help="scenario YAML (trace paths resolve relative to it)")
    sim.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    sim.add_argument("--weeks", help="'all' (every week the traces cover) or N (the first N): a spread over weeks")
    sim.add_argument("--seeds", type=int, default=None, help="run each week with this many seeds (default 1)")
    sim.add_argument("--policies", help="comma-separated policy labels to run (the baseline always runs)")
    sim.add_argument("--seed", type=int, default=None, help="one run with this seed instead of the workload's")
    sim.add_argument("--jobs", type=int, default=1, help="processes for --weeks/--seeds (default 1)")
    sim.set_defaults(_routing_run=_simulate)


def run(args: argparse.Namespace) -> int:
    """Dispatch a parsed ``routing`` or ``simulate`` command; returns the process exit code."""
    handler = getattr(args, "_routing_run", None)
    if handler is None:
        print("not a routing command", file=sys.stderr)
        return 2
    try:
        return handler(args)
    except WattgateError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2


def _connection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=DEFAULT_URL, help=f"gateway base URL (default {DEFAULT_URL})")
    p.add_argument("--token", default=None, help="admin bearer token")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")


def parse_weights(text: str) -> dict[str, float]:
    """'carbon=1,latency=0.5' -> {'carbon': 1.0, 'latency': 0.5}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"bad weight {part!r}: use NAME=NUMBER, e.g. carbon=1,latency=0.5") from None
    return out


def parse_params(items: list[str]) -> dict[str, Any]:
    """['max_utilisation=0.9', 'threshold=0.8'] -> params; values are JSON where they parse as JSON."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise argparse.ArgumentTypeError(f"bad --param {item!r}: use KEY=VALUE")
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def _request(args: argparse.Namespace, method: str, body: dict | None = None, path: str = ADMIN_PATH,
             extra: dict | None = None) -> int:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    url = args.url.rstrip("/") + path
    try:
        resp = httpx.request(method, url, json=body, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    try:
        payload = resp.json()
    except ValueError:
        payload = {"error": resp.text.strip() or resp.reason_phrase}
    if resp.status_code >= 400:
        detail = payload.get("error", payload) if isinstance(payload, dict) else payload
        print(f"error: {method} {url} -> {resp.status_code}: {detail}", file=sys.stderr)
        return 1
    if extra and isinstance(payload, dict):
        payload = {**payload, **extra}
    print(json.dumps(payload, indent=2, ensure_ascii=False))
    return 0


def _autoscaling(args: argparse.Namespace) -> dict:
    """The autoscaled pools' replicas and last decisions, when the gateway has any."""
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    try:
        resp = httpx.get(args.url.rstrip("/") + AUTOSCALING_PATH, headers=headers, timeout=args.timeout)
        doc = resp.json() if resp.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
    return {"autoscaling": doc} if isinstance(doc, dict) and doc.get("pools") else {}


def _show(args: argparse.Namespace) -> int:
    return _request(args, "GET", extra=_autoscaling(args))


def _set(args: argparse.Namespace) -> int:
    if args.pool:
        change = {k: v for k, v in (("min_replicas", args.min_replicas), ("max_replicas", args.max_replicas),
                                    ("headroom", args.headroom)) if v is not None}
        if not change:
            print("error: --pool needs --min-replicas, --max-replicas or --headroom", file=sys.stderr)
            return 2
        return _request(args, "PUT", change, path=f"{AUTOSCALING_PATH}/{args.pool}")
    if not args.policy:
        print("error: name a policy, or --pool with the settings to change", file=sys.stderr)
        return 2
    try:
        params = parse_params(args.param)
        if args.weights:
            params["weights"] = parse_weights(args.weights)
    except argparse.ArgumentTypeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    make_policy(args.policy, **params)  # fail here, with the same message, before touching the gateway
    return _request(args, "PUT", {"policy": args.policy, "params": params})


def _simulate(args: argparse.Namespace) -> int:
    from routing.simulator import format_table, simulate  # scipy and the traces only when simulating

    only = [p.strip() for p in args.policies.split(",") if p.strip()] if args.policies else None
    if args.weeks or args.seeds:
        from routing.simulator.sweep import format_sweep, sweep

        def progress(done: int, total: int) -> None:
            print(f"  {done}/{total} runs", file=sys.stderr, flush=True)

        spread = sweep(args.scenario, args.weeks or "1", args.seeds or 1, only, args.jobs, progress)
        print(json.dumps(_finite(spread.to_dict()), indent=2, ensure_ascii=False, allow_nan=False) if args.json
              else format_sweep(spread))
        return 0
    result = simulate(args.scenario, seed=args.seed, only=only)
    if args.json:
        print(json.dumps(_finite(result.to_dict()), indent=2, ensure_ascii=False, allow_nan=False))
    else:
        print(format_table(result))
    return 0


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: such numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
