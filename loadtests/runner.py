"""The headless load-test run: start (or target) a gateway, run locust, scrape, read the ledger, report.

Output: one table on stdout, ``<results>/loadtest-<stamp>.json`` and ``.png``, and the raw locust
CSVs, tallies and gateway log under ``<results>/loadtest-<stamp>/``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from loadtests import scrape
from loadtests.plots import plot_loadtest
from loadtests.procs import ServerProcess, free_port
from loadtests.report import LoadReport, build_report, read_ledger, render_table, write_json
from loadtests.scrape import MetricsDelta
from loadtests.settings import LoadtestSettings
from loadtests.shapes import pick_profile
from loadtests.thresholds import Verdict, judge, parse_fail_on
from wattgate.errors import Unavailable

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


@dataclass(frozen=True)
class RunOutcome:
    report: LoadReport
    verdicts: list[Verdict]
    json_path: Path
    png_path: Path | None
    run_dir: Path

    @property
    def exit_code(self) -> int:
        return 0 if all(v.passed for v in self.verdicts) else 1


def ledger_path_of(settings) -> Path:
    """The gateway's ledger file (the same rule the gateway uses: ``Settings.ledger_file``)."""
    return settings.ledger_file()


def _env_with_root() -> dict[str, str]:
    """Children import our packages from this checkout even without an installed wheel."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def locust_command(s: LoadtestSettings, url: str, prefix: Path, tally_path: Path) -> list[str]:
    # Classes go before the options: ``--tags`` takes every word after it.
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *s.classes, "--headless",
        "-u", str(s.users), "-r", f"{s.spawn_rate:g}", "-t", f"{max(1, math.ceil(s.duration_s))}s",
        "--host", url, "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
        "--wg-models", ",".join(s.models), "--wg-profile", s.profile, "--wg-user-rps", f"{s.user_rps:g}",
        "--wg-binary-share", f"{s.binary_share:g}", "--wg-bad-share", f"{s.bad_share:g}",
        "--wg-zipf-s", f"{s.zipf_s:g}", "--wg-burst-factor", f"{s.burst_factor:g}", "--wg-tally", str(tally_path),
    ]
    if s.tags:
        argv += ["--tags", *s.tags]
    return argv


def run_locust(s: LoadtestSettings, url: str, run_dir: Path) -> tuple[Path, dict | None, float, float]:
    """Runs locust to completion; returns (CSV prefix, response tally, start, end in unix seconds)."""
    prefix, tally_path = run_dir / "locust", run_dir / "locust_wattgate.json"
    env = _env_with_root()
    started = time.time()
    with (run_dir / "locust.log").open("wb") as log:
        proc = subprocess.run(locust_command(s, url, prefix, tally_path), stdout=log, stderr=subprocess.STDOUT,
                              env=env, cwd=ROOT, timeout=s.duration_s + 120)
    ended = time.time()
    if not Path(f"{prefix}_stats.csv").exists():
        log_tail = (run_dir / "locust.log").read_text(errors="replace")[-3000:]
        raise Unavailable(f"locust exited with {proc.returncode} and wrote no stats:\n{log_tail}")
    tally = json.loads(tally_path.read_text()) if tally_path.exists() else None
    if tally and tally.get("started_at_s"):
        started = tally["started_at_s"]
    return prefix, tally, started, ended


def start_gateway(config: Path | None, run_dir: Path, timeout_s: float) -> tuple[ServerProcess, str]:
    port = free_port()
    # No gRPC: the load is HTTP, and Triton's 8001 may be taken.
    argv = [sys.executable, "-m", "wattgate.cli", "serve", "--host", "127.0.0.1", "--port", str(port), "--grpc-port", "0",
            "--build-missing"]
    if config:
        argv += ["--config", str(config)]
    server = ServerProcess(argv, run_dir / "gateway.log", env=_env_with_root(), cwd=Path.cwd())
    url = f"http://127.0.0.1:{port}"
    print(f"loadtest: starting the gateway on {url} (pid {server.pid}, log {server.log_path})", flush=True)
    server.wait_ready(url + "/v2/health/ready", timeout_s)
    return server, url


def run(s: LoadtestSettings, *, url: str | None = None, config: Path | None = None, ledger: Path | None = None,
        plot: bool = True) -> RunOutcome:
    thresholds = parse_fail_on(s.fail_on) if s.fail_on else []
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = s.results_dir / f"loadtest-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    if ledger is None:
        from wattgate.settings import load_settings

        ledger = ledger_path_of(load_settings(config))
    server = None
    try:
        if url is None:
            server, url = start_gateway(config, run_dir, s.gateway_start_timeout_s)
        url = url.rstrip("/")
        before = scrape.scrape(url)
        print(f"loadtest: locust, {s.users} users, {s.duration_s:g} s against {url}", flush=True)
        prefix, tally, started, ended = run_locust(s, url, run_dir)
        after = scrape.scrape(url)
        time.sleep(s.ledger_settle_s)  # the gateway's ledger writer flushes about once a second
        summary = read_ledger(ledger, since_s=started - 1.0, until_s=ended + 1.0)
    finally:
        if server is not None:
            server.stop()
    profile = (tally or {}).get("profile") or pick_profile(s.profile, list(s.classes), list(s.tags))
    scenario = f"{profile}: {'+'.join(s.classes) or 'all users'}" + (f" [tags {','.join(s.tags)}]" if s.tags else "")
    report = build_report(prefix=prefix, scenario=scenario, url=url, users=s.users, started_at_s=started, ended_at_s=ended,
                          metrics=MetricsDelta(before, after), ledger=summary, tally=tally)
    json_path = write_json(report, s.results_dir / f"loadtest-{stamp}.json")
    png_path = plot_loadtest(report.to_dict(), s.results_dir / f"loadtest-{stamp}.png") if plot else None
    return RunOutcome(report, judge(thresholds, report.values()), json_path, png_path, run_dir)


def print_outcome(outcome: RunOutcome) -> None:
    print(render_table(outcome.report))
    for v in outcome.verdicts:
        print(f"fail-on: {v}")
    print(f"wrote {outcome.json_path}" + (f" and {outcome.png_path}" if outcome.png_path else "") + f" (raw: {outcome.run_dir})")
