"""`wattgate ledger export|summary`: the ledger's command-line face, hooked into the wattgate console script."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from energy.ledger import GROUPABLE, EnergyLedger
from energy.ledger_export import FORMATS
from wattgate.errors import BadRequest

DEFAULT_DB = "var/ledger.sqlite"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``ledger export`` and ``ledger summary`` to a console script's subparsers."""
    ledger = subparsers.add_parser("ledger", help="read and export the energy ledger")
    commands = ledger.add_subparsers(dest="ledger_command", required=True)

    export = commands.add_parser("export", help="export ledger records to CSV or Parquet")
    export.add_argument("--db", default=DEFAULT_DB, help="ledger SQLite file (default %(default)s)")
    export.add_argument("--out", required=True, help="file to write")
    export.add_argument("--format", choices=FORMATS, default=None, help="default: from --out's suffix, else csv")
    export.add_argument("--since-s", type=float, default=None, help="only records at or after this unix time")

    summary = commands.add_parser(
        "summary", help="energy and carbon totals, grouped, with the energy the cache avoided (estimated)")
    summary.add_argument("--db", default=DEFAULT_DB, help="ledger SQLite file (default %(default)s)")
    summary.add_argument("--since-s", type=float, default=None, help="only records at or after this unix time")
    summary.add_argument(
        "--group-by", default="model,variant,region,hardware", help=f"comma-separated, from {','.join(GROUPABLE)}; '' for one total"
    )
    summary.add_argument("--by", dest="group_by", help="same as --group-by (e.g. --by tenant for chargeback)")
    summary.add_argument("--period", help="a calendar month or day, UTC: 2026-11 or 2026-11-05")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")

    ledger.set_defaults(energy_cli=run)
    return ledger


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if not Path(args.db).is_file():
        print(f"error: no ledger at {args.db}", file=sys.stderr)
        return 2
    # Background writing is for the request path; the CLI only reads.
    with EnergyLedger(args.db, background=False) as ledger:
        if args.ledger_command == "export":
            fmt = args.format or ("parquet" if str(args.out).endswith(".parquet") else "csv")
            n = ledger.export(args.out, fmt=fmt, since_s=args.since_s)
            print(f"exported {n} records to {args.out} ({fmt})", file=out)
            return 0
        group_by = [g for g in args.group_by.split(",") if g]
        since_s, until_s = period_range(args.period) if getattr(args, "period", None) else (args.since_s, None)
        rows = ledger.totals(since_s=since_s, group_by=group_by, until_s=until_s)
        add_cache_avoided(ledger, rows, group_by, since_s, until_s)
        accounts = ledger.accounts(since_s=since_s, until_s=until_s)  # start-up, and idle per autoscaled pool
        quality = quality_summary(ledger, args.since_s)
        if args.json:
            json.dump({"requests": rows, "accounts": accounts, "quality": quality}, out, indent=2)
            out.write("\n")
        else:
            _print_table(rows, out)
            if accounts:
                print("\nenergy charged to no request (J):", file=out)
                _print_table(accounts, out)
            if quality:
                print("\nlive quality of cheaper variants (quality guard samples; guard = the check's own cost):", file=out)
                _print_table(quality, out)
        return 0


def period_range(period: str) -> tuple[float, float]:
    """(start, end) unix seconds of a UTC month (YYYY-MM) or day (YYYY-MM-DD)."""
    from datetime import datetime, timedelta, timezone

    try:
        if len(period) == 7:
            start = datetime.strptime(period, "%Y-%m").replace(tzinfo=timezone.utc)
            end = (start + timedelta(days=32)).replace(day=1)
        else:
            start = datetime.strptime(period, "%Y-%m-%d").replace(tzinfo=timezone.utc)
            end = start + timedelta(days=1)
    except ValueError:
        raise BadRequest(f"--period must be YYYY-MM or YYYY-MM-DD, got {period!r}") from None
    return start.timestamp(), end.timestamp()


def add_cache_avoided(ledger: EnergyLedger, rows: list[dict], group_by: list[str], since_s: float | None,
                      until_s: float | None) -> None:
    """Adds ``energy_avoided_j_est`` to each summary row: the active energy its cache hits avoided.

    Modelled, not measured: a ledger row records what a hit cost, not what it saved. Each hit is priced
    at the mean active J per computed request (miss, bypass, off) of the same model variant in the
    period (else in the whole ledger), less the hit's own active J; idle power is spent either way.
    Hits of a variant never computed cannot be priced: ``cache_hits_unpriced`` counts them.
    """
    def cost_per_request(since: float | None, until: float | None) -> dict[tuple, float]:
        books: dict[tuple, tuple[float, int]] = {}
        for r in ledger.totals(since_s=since, group_by=("model", "variant", "cache"), until_s=until):
            if r["cache"] != "hit":
                j, n = books.get((r["model"], r["variant"]), (0.0, 0))
                books[(r["model"], r["variant"])] = (j + r["active_j"], n + r["requests"])
        return {k: j / n for k, (j, n) in books.items() if n}

    detail_by = tuple(dict.fromkeys([*group_by, "model", "variant", "cache"]))
    hits = [r for r in ledger.totals(since_s=since_s, group_by=detail_by, until_s=until_s) if r["cache"] == "hit"]
    cost = cost_per_request(since_s, until_s) if hits else {}
    if any((r["model"], r["variant"]) not in cost for r in hits):
        cost = {**cost_per_request(None, None), **cost}
    avoided_j: dict[tuple, float] = {}
    unpriced: dict[tuple, int] = {}
    for r in hits:
        key = tuple(r[g] for g in group_by)
        per_request_j = cost.get((r["model"], r["variant"]))
        if per_request_j is None:
            unpriced[key] = unpriced.get(key, 0) + r["requests"]
        else:
            avoided_j[key] = avoided_j.get(key, 0.0) + max(0.0, per_request_j * r["requests"] - r["active_j"])
    for row in rows:
        key = tuple(row[g] for g in group_by)
        row["energy_avoided_j_est"] = avoided_j.get(key, 0.0)
        row["cache_hits_unpriced"] = unpriced.get(key, 0)


def quality_summary(ledger: EnergyLedger, since_s: float | None = None) -> list[dict]:
    """Per guarded variant: its live quality over the period next to the carbon it saved.

    Saved carbon is an estimate: the variant's ledger carbon times (reference J / variant J - 1),
    the energy ratio measured on the very requests the guard ran on both.
    """
    served = {(r["model"], r["version"], r["variant"]): r for r in ledger.totals(since_s, ("model", "version", "variant"))}
    out = []
    for q in ledger.quality(since_s):
        row = served.get((q["model"], q["version"], q["variant"]), {})
        ratio = q["guard_energy_j"] / q["served_energy_j"] if q["served_energy_j"] else None
        saved = row.get("carbon_g", 0.0) * (ratio - 1) if ratio is not None else None
        out.append({"model": q["model"], "version": q["version"], "variant": q["variant"], "reference": q["reference"],
                    "metric": q["metric"], "quality": q["value_mean"], "worst_sample": q["value_min"], "samples": q["samples"],
                    "accuracy": q["accuracy"], "reference_accuracy": q["reference_accuracy"],
                    "requests": row.get("requests", 0), "carbon_g": row.get("carbon_g", 0.0), "carbon_saved_g_est": saved,
                    "guard_energy_j": q["guard_energy_j"], "guard_carbon_g": q["guard_carbon_g"]})
    return out


def _print_table(rows: list[dict], out: TextIO) -> None:
    if not rows:
        print("(no records)", file=out)
        return
    cols = list(rows[0])
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)), file=out)
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths)), file=out)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "-" if value is None else str(value)
