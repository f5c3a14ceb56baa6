"""``wattgate report --period P [--tenant T] --out DIR``: gathers the ledger, cards, topology and intensity history, writes the report."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path

from energy.anomaly import EnergyAnomalyDetector
from energy.ledger import EnergyLedger
from models.card import ModelCard
from models.registry import ModelRegistry
from reports.build import Report, build_report
from reports.document import to_html, to_markdown
from reports.period import FORMATS, Period, parse_period
from reports.plots import write_plots
from reports.review import DEFAULT_RETIRE_BELOW_REQUESTS_PER_DAY
from reports.savings import IntensityTimeline, PoolSite
from reports.sections import figures_json, report_blocks
from reports.time_shift import read_time_shift
from routing.intensity.base import utcnow
from routing.intensity.factory import make_single_provider
from routing.intensity.replay import ReplayClock
from routing.topology import ANY_VARIANT, load_topology
from wattgate.errors import BadRequest, WattgateError
from wattgate.settings import Settings, load_settings

FILES = ("report.md", "report.html", "report.json")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("report", help="energy and carbon report for a period: Markdown, HTML and PNG plots")
    p.add_argument("--period", required=True, help=FORMATS)
    p.add_argument("--tenant", default=None, help="only this tenant's requests")
    p.add_argument("--out", required=True, type=Path, help="folder to write report.md, report.html, report.json and the PNGs")
    p.add_argument("--config", type=Path, default=None, help="wattgate YAML settings (ledger, models, topology, intensity)")
    p.add_argument("--db", type=Path, default=None, help="ledger SQLite file (default: the settings' ledger)")
    p.add_argument("--retire-below-requests-per-day", type=float, default=DEFAULT_RETIRE_BELOW_REQUESTS_PER_DAY,
                   help="a model with energy but fewer requests a day than this is a retirement candidate (default %(default)s)")
    p.set_defaults(report_run=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        if args.retire_below_requests_per_day < 0:
            raise BadRequest("--retire-below-requests-per-day must be >= 0")
        period = parse_period(args.period)
        settings = load_settings(args.config)
        db = args.db or settings.ledger_file()
        if not Path(db).is_file():
            raise BadRequest(f"no ledger at {db}")
        report = gather(settings, Path(db), period, args.tenant, args.retire_below_requests_per_day)
        write_report(report, args.out)
    except WattgateError as exc:
        print(f"wattgate report: {exc.message}", file=sys.stderr)
        return 2
    t = report.total
    print(f"wrote {', '.join(FILES)} to {args.out}: {t.requests} requests, {t.energy_kwh:.4g} kWh, {t.carbon_g:.4g} gCO2eq")
    return 0


def gather(settings: Settings, db: Path, period: Period, tenant: str | None, retire_below: float) -> Report:
    """Everything the report is built from, read once."""
    with EnergyLedger(db, background=False) as ledger:  # the CLI only reads
        rows = ledger.records(limit=None, since_s=period.start_s, until_s=period.end_s)
        accounts = ledger.accounts(since_s=period.start_s, until_s=period.end_s)
        time_shift = read_time_shift(ledger, period.start_s, period.end_s, tenant)
    if tenant is not None:
        rows = [r for r in rows if r.tenant == tenant]
    pools, note = _pools(settings)
    timeline = None
    if pools:
        timeline, note = _timeline(settings, period, sorted({p.region for p in pools}))
    a = settings.energy.anomaly
    detector = EnergyAnomalyDetector(warmup=a.warmup, window=a.window, z_threshold=a.z_threshold, min_ratio=a.min_ratio)
    return build_report(
        period, rows, accounts=accounts, tenant=tenant, cards=_cards(settings), pools=pools, timeline=timeline,
        routing_note=note, time_shift=time_shift, detector=detector,
        retire_below_requests_per_day=retire_below,
    )


def _cards(settings: Settings) -> list[ModelCard]:
    return ModelRegistry(settings.models.repository).list_models()


def _pools(settings: Settings) -> tuple[list[PoolSite], str]:
    path = settings.routing.topology_file
    if not path.is_file():
        return [], f"no topology at {path}: one local pool, so nothing to compare routing with"
    topology = load_topology(path)
    return [PoolSite(p.name, p.region, p.pue, None if ANY_VARIANT in p.energy else tuple(p.energy))
            for p in topology.pools], ""


def _timeline(settings: Settings, period: Period, regions: list[str]) -> tuple[IntensityTimeline | None, str]:
    s = settings.intensity
    # A replay provider answers history up to its clock: hold it at the period's end.
    clock = ReplayClock.fixed(period.end) if s.provider == "replay" else utcnow
    max_age_s = s.max_age_s
    try:
        provider = make_single_provider(s.provider, s, clock)
        points = {}
        for region in regions:
            readings = provider.history(region, period.start - timedelta(seconds=max_age_s), min(period.end, clock()))
            points[region] = [(r.timestamp.timestamp(), r.intensity_g_per_kwh) for r in readings]
    except WattgateError as exc:
        return None, f"no intensity history from the {s.provider} provider: {exc.message}"
    covered = [r for r in regions if points.get(r)]
    note = (f"Intensity history: the {s.provider} provider, regions {', '.join(covered) or 'none'}; a reading counts for "
            f"up to {max_age_s:g} s (intensity.max_age_s).")
    return IntensityTimeline(points, max_age_s), note


def write_report(report: Report, out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadRequest(f"cannot create the output folder {out}: {exc}") from exc
    plots = write_plots(report, out)
    blocks = report_blocks(report, plots)
    title = f"wattgate report {report.period.label}" + (f" (tenant {report.tenant})" if report.tenant else "")
    (out / "report.md").write_text(to_markdown(blocks), encoding="utf-8")
    (out / "report.html").write_text(to_html(blocks, title), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(figures_json(report), indent=2) + "\n", encoding="utf-8")
