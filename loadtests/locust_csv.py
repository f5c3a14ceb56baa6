"""Reads locust's ``--csv`` output: the final ``_stats.csv`` and the per-second ``_stats_history.csv``."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from wattgate.errors import NotFound


def _num(value: str | None) -> float:
    if value in (None, "", "N/A"):
        return math.nan
    return float(value)


@dataclass(frozen=True)
class EndpointStats:
    """One row of ``_stats.csv`` (``name == "Aggregated"`` is the total); latencies in ms, as locust measured them."""

    method: str
    name: str
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


@dataclass(frozen=True)
class HistoryPoint:
    time_s: float  # unix seconds
    users: int
    requests_per_s: float
    failures_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    total_requests: int
    total_failures: int


def read_stats(prefix: str | Path) -> list[EndpointStats]:
    path = Path(f"{prefix}_stats.csv")
    if not path.exists():
        raise NotFound(f"locust wrote no {path}; did it run?")
    rows = []
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append(EndpointStats(
                method=r.get("Type", ""),
                name=r["Name"],
                requests=int(r["Request Count"]),
                failures=int(r["Failure Count"]),
                requests_per_s=_num(r["Requests/s"]),
                p50_ms=_num(r["50%"]),
                p95_ms=_num(r["95%"]),
                p99_ms=_num(r["99%"]),
                mean_ms=_num(r["Average Response Time"]),
                max_ms=_num(r["Max Response Time"]),
            ))
    return rows


def aggregated(rows: list[EndpointStats]) -> EndpointStats:
    for r in rows:
        if r.name == "Aggregated":
            return r
    raise NotFound("locust's stats have no Aggregated row")


def read_history(prefix: str | Path) -> list[HistoryPoint]:
    """The Aggregated rows of ``_stats_history.csv`` (percentiles over locust's recent window)."""
    path = Path(f"{prefix}_stats_history.csv")
    if not path.exists():
        return []
    out = []
    with path.open(newline="") as fh:
        for r in csv.DictReader(fh):
            if r.get("Name") != "Aggregated":
                continue
            out.append(HistoryPoint(
                time_s=float(r["Timestamp"]),
                users=int(_num(r["User Count"]) if r["User Count"] not in ("", "N/A") else 0),
                requests_per_s=_num(r["Requests/s"]),
                failures_per_s=_num(r["Failures/s"]),
                p50_ms=_num(r["50%"]),
                p95_ms=_num(r["95%"]),
                p99_ms=_num(r["99%"]),
                total_requests=int(_num(r["Total Request Count"])),
                total_failures=int(_num(r["Total Failure Count"])),
            ))
    return out


def read_failures(prefix: str | Path) -> list[dict[str, str]]:
    path = Path(f"{prefix}_failures.csv")
    if not path.exists():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))
