"""Energy anomalies: active joules per inference against a learned baseline, with a likely cause.

Baselines are kept per (model, variant, hardware, batch-size band) of *active* J per inference: idle
power is left out (it is what changes with load), and the band holds batching constant, so more
traffic (bigger batches, less J per inference) is never an anomaly. A series (model, variant, pool)
is anomalous when the median robust z-score of its last ``window`` observations against their
bands' baselines passes ``z_threshold`` and the median ratio to the baseline passes ``min_ratio``;
or when its batches collapsed (the same bands are normal, but the series now runs in batches half
the size or less *at no lower request rate*, and so spends ``min_ratio`` x more per inference than
while it was learned; smaller batches because traffic fell are not an anomaly). Only rises are
flagged. Baselines learn from the first ``warmup`` values, then keep learning from normal ones
only, so a slow drift is absorbed and a sudden jump stays flagged until it goes away.

Pure: no clock, no I/O. ``observe()`` returns an :class:`AnomalyEvent` when a series starts or stops
being anomalous; the caller (``serving/anomaly_sink.py``) turns it into a gauge, a log line, a webhook.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from dataclasses import dataclass

SeriesKey = tuple[str, str, str]  # model, variant, pool


@dataclass(frozen=True)
class EnergyObservation:
    """One computed request: its active energy and the batch it ran in."""

    model: str
    variant: str
    pool: str
    hardware: str
    version: str
    batch_size: int  # rows in the batch the request ran in; 0 = it ran no model (a cache hit)
    rows: int  # the request's own rows
    active_j: float
    time_s: float  # when it was served (any clock that moves forward)


@dataclass(frozen=True)
class AnomalyEvent:
    model: str
    variant: str
    pool: str
    state: str  # "started" | "cleared"
    cause: str
    observed_j_per_inference: float
    expected_j_per_inference: float
    ratio: float
    z_score: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def batch_band(batch_size: int) -> int:
    """Powers of two: 1, 2-3, 4-7, 8-15, ... -> 0, 1, 2, 3, ..."""
    return max(batch_size, 1).bit_length() - 1


class _Baseline:
    """Median and MAD of the last ``keep`` accepted values; recomputed every ``every`` values."""

    def __init__(self, keep: int, every: int) -> None:
        self.values: deque[float] = deque(maxlen=keep)
        self.every = every
        self._since = 0
        self.median = math.nan
        self.scale = math.nan  # 1.4826 x MAD, floored at 5% of the median

    def add(self, value: float, warmup: int) -> None:
        self.values.append(value)
        self._since += 1
        if len(self.values) >= warmup and (math.isnan(self.median) or self._since >= self.every):
            self._since = 0
            self.median = statistics.median(self.values)
            mad = statistics.median(abs(v - self.median) for v in self.values)
            self.scale = max(1.4826 * mad, 0.05 * self.median, 1e-12)

    @property
    def ready(self) -> bool:
        return not math.isnan(self.median)


class _Series:
    def __init__(self, window: int, learn: int) -> None:
        # (J per inference, band's expected J per inference, z-score, batch size, hardware, version)
        self.recent: deque[tuple[float, float, float, int, str, str]] = deque(maxlen=window)
        self.learned_j: deque[float] = deque(maxlen=learn)  # while normal: the series' own J per inference
        self.learned_batch: deque[int] = deque(maxlen=learn)
        self.learned_t: deque[float] = deque(maxlen=learn)
        self.recent_t: deque[float] = deque(maxlen=window)
        self.learned_median_j = math.nan  # of learned_j, recomputed as the baselines are
        self._since = 0
        self.hardware: str | None = None
        self.version: str | None = None
        self.anomalous = False


class EnergyAnomalyDetector:
    def __init__(self, *, warmup: int = 30, window: int = 20, z_threshold: float = 4.0, min_ratio: float = 1.3,
                 keep: int = 500, recompute_every: int = 25) -> None:
        if warmup < 5 or window < 3 or z_threshold <= 0 or min_ratio <= 1 or keep < warmup or recompute_every < 1:
            raise ValueError("need warmup >= 5, window >= 3, z_threshold > 0, min_ratio > 1, keep >= warmup, recompute_every >= 1")
        self.warmup, self.window, self.z_threshold, self.min_ratio = warmup, window, z_threshold, min_ratio
        self._keep, self._every = keep, recompute_every
        self._baselines: dict[tuple[str, str, str, int], _Baseline] = {}
        self._series: dict[SeriesKey, _Series] = {}
        self._lock = threading.Lock()
        self.ignored = 0  # NaN, infinite or negative energy; no rows
        self.skipped = 0  # ran no model (cache hits): nothing to compare

    def anomalous(self) -> dict[SeriesKey, bool]:
        with self._lock:
            return {k: s.anomalous for k, s in self._series.items()}

    def observe(self, obs: EnergyObservation) -> AnomalyEvent | None:
        if not (isinstance(obs.active_j, (int, float)) and math.isfinite(obs.active_j) and obs.active_j >= 0 and obs.rows > 0):
            with self._lock:
                self.ignored += 1
            return None
        if obs.batch_size <= 0:
            with self._lock:
                self.skipped += 1
            return None
        j = obs.active_j / obs.rows
        with self._lock:
            return self._observe(obs, j)

    def _observe(self, obs: EnergyObservation, j: float) -> AnomalyEvent | None:
        key = (obs.model, obs.variant, obs.pool)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(self.window, self._keep)
        series.hardware = series.hardware or obs.hardware
        series.version = series.version or obs.version
        band = batch_band(obs.batch_size)
        # A new hardware class has no baseline of its own yet: compare with what the series ran on.
        base = self._baselines.get((obs.model, obs.variant, obs.hardware, band))
        if base is None or not base.ready:
            base = self._baselines.get((obs.model, obs.variant, series.hardware, band))
        if base is None or not base.ready:
            self._learn(series, obs, band, j)
            return None
        z = (j - base.median) / base.scale
        series.recent.append((j, base.median, z, obs.batch_size, obs.hardware, obs.version))
        series.recent_t.append(obs.time_s)
        event = self._judge(key, series)
        if not series.anomalous and z < self.z_threshold:
            series.hardware, series.version = obs.hardware, obs.version  # normal here: this is what it runs on now
            self._learn(series, obs, band, j)
        return event

    def _learn(self, series: _Series, obs: EnergyObservation, band: int, j: float) -> None:
        bkey = (obs.model, obs.variant, obs.hardware, band)
        base = self._baselines.get(bkey)
        if base is None:
            base = self._baselines[bkey] = _Baseline(self._keep, self._every)
        base.add(j, self.warmup)
        if obs.hardware == series.hardware:
            series.learned_j.append(j)
            series.learned_batch.append(obs.batch_size)
            series.learned_t.append(obs.time_s)
            series._since += 1
            if len(series.learned_j) >= self.warmup and (math.isnan(series.learned_median_j) or series._since >= self._every):
                series._since = 0
                series.learned_median_j = statistics.median(series.learned_j)

    def _judge(self, key: SeriesKey, series: _Series) -> AnomalyEvent | None:
        if len(series.recent) < self.window:
            return None
        js = [r[0] for r in series.recent]
        observed = statistics.median(js)
        z = statistics.median(r[2] for r in series.recent)
        expected_band = statistics.median(r[1] for r in series.recent)
        band_ratio = observed / expected_band if expected_band > 0 else math.inf
        learned = series.learned_median_j
        series_ratio = observed / learned if learned > 0 else math.nan
        cause = None
        if z >= self.z_threshold and band_ratio >= self.min_ratio:
            cause = self._cause_same_batches(series)
            expected, ratio = expected_band, band_ratio
        elif series_ratio >= self.min_ratio and self._batches_collapsed(series):
            was = statistics.median(series.learned_batch)
            now = statistics.median(r[3] for r in series.recent)
            cause = f"batch sizes collapsed: median batch {was:g} -> {now:g} rows"
            expected, ratio = learned, series_ratio
        if cause is not None and not series.anomalous:
            series.anomalous = True
            return AnomalyEvent(*key, "started", cause, observed, expected, ratio, z)
        # Hysteresis: it clears once the jump is half gone, by z or by ratio. (A very steady baseline has a
        # tiny spread, and then a level a few percent above it is "many sigmas" yet plainly not an anomaly.)
        half_gone = z < self.z_threshold / 2 or band_ratio < 1 + (self.min_ratio - 1) / 2
        if cause is None and series.anomalous and half_gone and not (series_ratio >= self.min_ratio):
            series.anomalous = False
            return AnomalyEvent(*key, "cleared", "back within baseline", observed, expected_band, band_ratio, z)
        return None

    def _batches_collapsed(self, series: _Series) -> bool:
        if len(series.learned_batch) < self.warmup:
            return False
        smaller = statistics.median(r[3] for r in series.recent) * 2 <= statistics.median(series.learned_batch)
        return smaller and _rate(series.recent_t) >= 0.5 * _rate(series.learned_t)

    @staticmethod
    def _cause_same_batches(series: _Series) -> str:
        last = series.recent[-1]
        if last[4] != series.hardware:
            return f"hardware changed: {series.hardware} -> {last[4]}"
        if last[5] != series.version:
            return f"variant changed: version {series.version} -> {last[5]} (slower model behind the same name)"
        return "thread spin or CPU contention: same variant, hardware and batch sizes, more active energy per inference"


def _rate(times: deque[float]) -> float:
    """Requests per unit of time: 1 / the median gap between arrivals (robust across a change of load)."""
    t = list(times)
    gaps = [b - a for a, b in zip(t, t[1:])]
    gap = statistics.median(gaps) if gaps else 0.0
    return 1.0 / gap if gap > 0 else math.inf
