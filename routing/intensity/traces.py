"""Grid carbon-intensity traces loaded from CSV, with step-hold lookup for replay and simulation.

Two formats are accepted, recognised by their header:

* the plain ``datetime_utc,carbon_intensity_g_per_kwh`` files in ``../shared/data/grid/``;
* Electricity Maps' downloadable dataset CSVs (https://www.electricitymaps.com/data-portal), whose
  ``Datetime (UTC)`` column is paired with either ``Carbon Intensity gCO₂eq/kWh (LCA)`` (older
  exports) or ``Carbon intensity gCO₂eq/kWh (Life cycle)`` (newer exports).
"""

from __future__ import annotations

import bisect
import csv
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np

__all__ = ["Trace", "load_trace", "parse_utc"]

_TIME_COLUMNS = ("datetime_utc", "datetime (utc)")
# Life-cycle (LCA) intensity is what the plain traces and the live providers' default report, so the
# dataset's "direct" column is deliberately not accepted as a fallback: mixing them would silently
# under-count by the upstream share (~10-20 %).
_INTENSITY_COLUMNS = (
    "carbon_intensity_g_per_kwh",
    "carbon intensity gco2eq/kwh (lca)",
    "carbon intensity gco2eq/kwh (life cycle)",
)
_ZONE_COLUMNS = ("zone id", "zone_id")


def parse_utc(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; naive values are UTC (both CSV formats write UTC)."""
    value = datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _as_utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: pass a timezone-aware (UTC) datetime")
    return when.astimezone(timezone.utc)


def _normalise_header(name: str) -> str:
    name = name.strip().lstrip("\ufeff").replace("₂", "2").lower()
    return re.sub(r"\s+", " ", name)


@dataclass(frozen=True)
class Trace:
    """Sorted UTC sample times and grid intensities; the value at a time is the last sample at or before it."""

    times: tuple[datetime, ...]
    intensity_g_per_kwh: tuple[float, ...]
    region: str | None = None
    source: str = ""
    _epoch_s: list[float] = field(init=False, repr=False, compare=False)
    _epoch_arr: np.ndarray = field(init=False, repr=False, compare=False)
    _value_arr: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.times) != len(self.intensity_g_per_kwh):
            raise ValueError("times and intensity_g_per_kwh differ in length")
        if not self.times:
            raise ValueError(f"trace {self.source or self.region or ''} has no samples")
        epoch = [_as_utc(t).timestamp() for t in self.times]
        if any(b <= a for a, b in zip(epoch, epoch[1:])):
            raise ValueError("trace times must be strictly increasing")
        object.__setattr__(self, "_epoch_s", epoch)
        object.__setattr__(self, "_epoch_arr", np.asarray(epoch, dtype=float))
        object.__setattr__(self, "_value_arr", np.asarray(self.intensity_g_per_kwh, dtype=float))

    @classmethod
    def from_points(
        cls, points: Iterable[tuple[datetime, float]], region: str | None = None, source: str = ""
    ) -> "Trace":
        """Build from unordered (time, g/kWh) pairs; a repeated time keeps its last value."""
        by_time: dict[datetime, float] = {}
        for when, value in points:
            by_time[_as_utc(when)] = float(value)
        ordered = sorted(by_time.items())
        return cls(tuple(t for t, _ in ordered), tuple(v for _, v in ordered), region, source)

    def __len__(self) -> int:
        return len(self.times)

    @property
    def start(self) -> datetime:
        return self.times[0]

    @property
    def end(self) -> datetime:
        return self.times[-1]

    def index_at(self, when: datetime) -> int:
        """Index of the sample in force at ``when`` (clamped to the first/last sample)."""
        i = bisect.bisect_right(self._epoch_s, _as_utc(when).timestamp()) - 1
        return min(max(i, 0), len(self._epoch_s) - 1)

    def at(self, when: datetime) -> float:
        """Intensity in g/kWh in force at ``when``: step-hold of the last sample, clamped at both ends."""
        return self.intensity_g_per_kwh[self.index_at(when)]

    def sample_time_at(self, when: datetime) -> datetime:
        """Timestamp of the sample that :meth:`at` returns for ``when``."""
        return self.times[self.index_at(when)]

    def at_epoch_s(self, epoch_s: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`at` over POSIX seconds (for simulators stepping through many times)."""
        idx = np.searchsorted(self._epoch_arr, np.asarray(epoch_s, dtype=float), side="right") - 1
        return self._value_arr[np.clip(idx, 0, len(self._epoch_arr) - 1)]

    def window(self, start: datetime, end: datetime) -> "Trace":
        """Samples with ``start <= t < end``, plus the sample in force at ``start`` so the window is never empty."""
        lo = self.index_at(start)
        hi = bisect.bisect_left(self._epoch_s, _as_utc(end).timestamp())
        hi = max(hi, lo + 1)
        return Trace(self.times[lo:hi], self.intensity_g_per_kwh[lo:hi], self.region, self.source)

    def mean_g_per_kwh(self, start: datetime, end: datetime) -> float:
        """Time-weighted mean intensity over ``[start, end)`` under step-hold."""
        t0, t1 = _as_utc(start).timestamp(), _as_utc(end).timestamp()
        if t1 <= t0:
            return self.at(start)
        edges = [t0] + [t for t in self._epoch_s if t0 < t < t1] + [t1]
        total = 0.0
        for a, b in zip(edges, edges[1:]):
            total += self.at(datetime.fromtimestamp(a, timezone.utc)) * (b - a)
        return total / (t1 - t0)


def _pick(headers: dict[str, str], candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if name in headers:
            return headers[name]
    return None


def load_trace(path: str | Path, region: str | None = None) -> Trace:
    """Load a plain or Electricity Maps dataset CSV; rows with an empty intensity are skipped."""
    path = Path(path)
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        headers = {_normalise_header(h): h for h in reader.fieldnames or []}
        time_col = _pick(headers, _TIME_COLUMNS)
        value_col = _pick(headers, _INTENSITY_COLUMNS)
        if time_col is None or value_col is None:
            raise ValueError(
                f"{path}: unrecognised trace header {reader.fieldnames}; expected "
                "'datetime_utc,carbon_intensity_g_per_kwh' or an Electricity Maps dataset with "
                "'Datetime (UTC)' and 'Carbon Intensity gCO₂eq/kWh (LCA)' / '(Life cycle)'"
            )
        zone_col = _pick(headers, _ZONE_COLUMNS)
        points: list[tuple[datetime, float]] = []
        zone = None
        for line_no, row in enumerate(reader, start=2):
            raw = (row.get(value_col) or "").strip()
            if not raw:
                continue
            try:
                points.append((parse_utc(row[time_col]), float(raw)))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{line_no}: bad row {row!r}") from exc
            if zone is None and zone_col is not None:
                zone = (row.get(zone_col) or "").strip() or None
    if region is None:
        # "DE_2020H1.csv" -> "DE" when the file names no zone itself.
        region = zone or path.stem.split("_")[0]
    return Trace.from_points(points, region=region, source=str(path))
