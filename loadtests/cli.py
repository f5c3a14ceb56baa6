"""``wattgate loadtest``: a headless locust run against a gateway it starts (or ``--url``), with CI gates."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from loadtests.settings import LoadtestSettings
from wattgate.config_file import load_section
from wattgate.errors import BadRequest


def duration_s(text: str) -> float:
    """``90``, ``90s``, ``2m``, ``1h30m`` -> seconds."""
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?", text)
    if not text or parts is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 30, 30s, 2m or 1h30m")
    h, m, s = (float(x) if x else 0.0 for x in parts.groups())
    return h * 3600 + m * 60 + s


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def register(sub) -> None:
    p = sub.add_parser("loadtest", help="run locust headless against the gateway and report energy per 1,000 requests",
                       description=__doc__)
    p.add_argument("--url", help="target this gateway instead of starting one (e.g. http://127.0.0.1:8000)")
    p.add_argument("--config", type=Path, help="YAML settings: its loadtest section, and the started gateway's settings and ledger path")
    p.add_argument("--ledger", type=Path, help="energy ledger to read (default: the settings' energy.ledger_path)")
    p.add_argument("-u", "--users", type=int, help="locust users (burst: base; diurnal: peak)")
    p.add_argument("-r", "--spawn-rate", type=float, help="users started per second")
    p.add_argument("-t", "--duration", type=duration_s, help="run time: 30, 30s, 2m")
    p.add_argument("--profile", choices=["auto", "steady", "burst", "diurnal"])
    p.add_argument("--classes", type=_csv, help="locust user classes, comma-separated (SteadyUser,CacheHeavyUser,BadInputUser,BurstUser,DiurnalUser)")
    p.add_argument("--tags", type=_csv, help="locust tags, comma-separated (steady,cache-heavy,bad-input,burst,diurnal,json,binary)")
    p.add_argument("--models", type=_csv, help="model mix: name[:variant][@weight],...")
    p.add_argument("--user-rps", type=float, help="requests/s per user (0: back to back)")
    p.add_argument("--binary-share", type=float, help="share of requests with binary tensors")
    p.add_argument("--bad-share", type=float, help="share of malformed requests sent by BadInputUser")
    p.add_argument("--zipf-s", type=float, help="Zipf exponent for CacheHeavyUser")
    p.add_argument("--results-dir", type=Path)
    p.add_argument("--fail-on", help="CI gate, e.g. p99_ms=200,j_per_1k=50,error_rate=0 (exit 1 when passed)")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")


_FLAGS = {
    "users": "users", "spawn_rate": "spawn_rate", "duration": "duration_s", "profile": "profile", "classes": "classes",
    "tags": "tags", "models": "models", "user_rps": "user_rps", "binary_share": "binary_share", "bad_share": "bad_share",
    "zipf_s": "zipf_s", "results_dir": "results_dir", "fail_on": "fail_on",
}


def settings_from_args(args: argparse.Namespace, base: LoadtestSettings | None = None) -> LoadtestSettings:
    """Flags override ``base`` (the config section, else the defaults); invalid values raise BadRequest."""
    from pydantic import ValidationError

    base = base or LoadtestSettings()
    update = {field: getattr(args, flag) for flag, field in _FLAGS.items() if getattr(args, flag, None) is not None}
    try:
        return LoadtestSettings(**(base.model_dump() | update))
    except ValidationError as exc:
        raise BadRequest("invalid load-test options: " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())) from None


def config_section(config: Path | None) -> LoadtestSettings:
    """The config file's ``loadtest:`` section under ``WATTGATE_LOADTEST_*`` variables; defaults without either."""
    return load_section(config, "loadtest", LoadtestSettings)


def run(args: argparse.Namespace) -> int:
    from loadtests.runner import print_outcome
    from loadtests.runner import run as run_loadtest

    s = settings_from_args(args, config_section(args.config))
    outcome = run_loadtest(s, url=args.url, config=args.config, ledger=args.ledger, plot=not args.no_plot)
    print_outcome(outcome)
    return outcome.exit_code
