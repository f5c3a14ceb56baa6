"""Prometheus-style counters, gauges and histograms that merge across replica processes.

Each replica keeps its own :class:`MetricsRegistry`; ``snapshot()`` is a plain dict that pickles,
``merge()`` sums snapshots from many replicas, and ``render()`` writes the Prometheus text format.
No Ray, no HTTP: the gateway decides how snapshots travel.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Iterable

LabelValues = tuple[str, ...]

DEFAULT_ENERGY_BUCKETS_J = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass
class _Family:
    name: str
    kind: str  # "counter" | "gauge" | "histogram"
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()
    merge: str = "sum"  # how a gauge combines across ingress replicas: "sum" (shares), "max" or "mean" (one shared value)
    # label values -> value (counter/gauge) or [bucket counts..., sum, count] (histogram)
    series: dict[LabelValues, object] = field(default_factory=dict)


class _Child:
    def __init__(self, registry: "MetricsRegistry", family: _Family) -> None:
        self._registry = registry
        self._family = family

    def _key(self, labels: dict[str, str] | None) -> LabelValues:
        labels = labels or {}
        names = self._family.labels
        try:  # on the request path: no set() building, a missing or extra label still raises
            if len(labels) != len(names):
                raise KeyError
            values = [labels[k] for k in names]
        except KeyError:
            raise ValueError(f"{self._family.name} takes labels {names}, got {sorted(labels)}") from None
        for v in values:
            if type(v) is not str:
                return tuple(map(str, values))
        return tuple(values)

    def key(self, **labels: str) -> LabelValues:
        """The series key for these labels: compute it once when several families share labels."""
        return self._key(labels)


class Counter(_Child):
    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.inc_key(self._key(labels), amount)

    def inc_key(self, key: LabelValues, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("counters only go up")
        with self._registry._lock:
            s = self._family.series
            s[key] = s.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return float(self._family.series.get(self._key(labels), 0.0))


class Gauge(_Child):
    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._registry._lock:
            self._family.series[key] = float(value)

    def value(self, **labels: str) -> float:
        return float(self._family.series.get(self._key(labels), 0.0))


class Histogram(_Child):
    def observe(self, value: float, **labels: str) -> None:
        self.observe_key(self._key(labels), value)

    def observe_key(self, key: LabelValues, value: float) -> None:
        fam = self._family
        with self._registry._lock:
            row = fam.series.get(key)
            if row is None:
                row = [0.0] * (len(fam.buckets) + 2)
                fam.series[key] = row
            for i, upper in enumerate(fam.buckets):
                if value <= upper:
                    row[i] += 1
            row[-2] += value
            row[-1] += 1

    def observe_many_key(self, key: LabelValues, values: Iterable[float]) -> None:
        """Several observations of one series under one lock (a batch of requests' figures)."""
        fam = self._family
        buckets = fam.buckets
        with self._registry._lock:
            row = fam.series.get(key)
            if row is None:
                row = [0.0] * (len(buckets) + 2)
                fam.series[key] = row
            for value in values:
                # Buckets are cumulative: every bucket from the first upper bound >= value counts it.
                if value == value:  # NaN falls in no bucket, as in observe_key
                    for i in range(bisect_left(buckets, value), len(buckets)):
                        row[i] += 1
                row[-2] += value
                row[-1] += 1

    def count(self, **labels: str) -> float:
        row = self._family.series.get(self._key(labels))
        return float(row[-1]) if row else 0.0

    def sum(self, **labels: str) -> float:
        row = self._family.series.get(self._key(labels))
        return float(row[-2]) if row else 0.0


class MetricsRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: dict[str, _Family] = {}

    def _family(self, name: str, kind: str, help: str, labels: Iterable[str], buckets=()) -> _Family:
        labels = tuple(labels)
        fam = self._families.get(name)
        if fam is None:
            fam = _Family(name, kind, help, labels, tuple(buckets))
            self._families[name] = fam
        elif fam.kind != kind or fam.labels != labels:
            raise ValueError(f"metric {name} already registered as {fam.kind}{fam.labels}")
        return fam

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Counter:
        return Counter(self, self._family(name, "counter", help, labels))

    def gauge(self, name: str, help: str, labels: Iterable[str] = (), merge: str = "sum") -> Gauge:
        """``merge``: "sum" when each replica holds a share; "max" or "mean" when each holds the same value."""
        if merge not in ("sum", "max", "mean"):
            raise ValueError(f"gauge merge must be sum, max or mean, got {merge!r}")
        fam = self._family(name, "gauge", help, labels)
        fam.merge = merge
        return Gauge(self, fam)

    def histogram(self, name: str, help: str, labels: Iterable[str] = (), buckets=DEFAULT_ENERGY_BUCKETS_J) -> Histogram:
        return Histogram(self, self._family(name, "histogram", help, labels, sorted(buckets)))

    def snapshot(self) -> dict:
        with self._lock:
            return {
                name: {
                    "kind": f.kind,
                    "help": f.help,
                    "labels": list(f.labels),
                    "buckets": list(f.buckets),
                    "merge": f.merge,
                    "series": [[list(k), list(v) if isinstance(v, list) else v] for k, v in f.series.items()],
                }
                for name, f in self._families.items()
            }


def merge(snapshots: Iterable[dict]) -> dict:
    """Sum counters and histograms across snapshots; gauges by their ``merge``: summed (per-replica
    shares, the default), or the max or mean of the replicas that report the series (a shared value)."""
    out: dict = {}
    seen: dict[tuple[str, tuple], int] = {}
    for snap in snapshots:
        for name, fam in snap.items():
            target = out.setdefault(
                name, {"kind": fam["kind"], "help": fam["help"], "labels": fam["labels"], "buckets": fam["buckets"],
                       "merge": fam.get("merge", "sum"), "series": {}}
            )
            how = target["merge"] if target["kind"] == "gauge" else "sum"
            for key, value in fam["series"]:
                k = tuple(key)
                prev = target["series"].get(k)
                if isinstance(value, list):
                    target["series"][k] = value[:] if prev is None else [a + b for a, b in zip(prev, value)]
                elif prev is None:
                    target["series"][k] = value
                elif how == "max":
                    target["series"][k] = max(prev, value)
                else:
                    target["series"][k] = prev + value
                seen[(name, k)] = seen.get((name, k), 0) + 1
    for name, fam in out.items():
        if fam["kind"] == "gauge" and fam["merge"] == "mean":
            fam["series"] = {k: v / seen[(name, k)] for k, v in fam["series"].items()}
        fam["series"] = [[list(k), v] for k, v in fam["series"].items()]
    return out


def _fmt_labels(names: list[str], values: list[str], extra: tuple[str, str] | None = None) -> str:
    pairs = [(n, v) for n, v in zip(names, values)]
    if extra:
        pairs.append(extra)
    if not pairs:
        return ""
    body = ",".join(f'{n}="{_escape(v)}"' for n, v in pairs)
    return "{" + body + "}"


def _escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _fmt_value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def render(snapshot: dict) -> str:
    """Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for name in sorted(snapshot):
        fam = snapshot[name]
        lines.append(f"# HELP {name} {fam['help']}")
        lines.append(f"# TYPE {name} {fam['kind']}")
        for key, value in fam["series"]:
            if fam["kind"] == "histogram":
                for upper, count in zip(fam["buckets"], value[: len(fam["buckets"])]):
                    lines.append(f"{name}_bucket{_fmt_labels(fam['labels'], key, ('le', _fmt_value(upper)))} {_fmt_value(count)}")
                lines.append(f"{name}_bucket{_fmt_labels(fam['labels'], key, ('le', '+Inf'))} {_fmt_value(value[-1])}")
                lines.append(f"{name}_sum{_fmt_labels(fam['labels'], key)} {_fmt_value(value[-2])}")
                lines.append(f"{name}_count{_fmt_labels(fam['labels'], key)} {_fmt_value(value[-1])}")
            else:
                lines.append(f"{name}{_fmt_labels(fam['labels'], key)} {_fmt_value(value)}")
    return "\n".join(lines) + "\n"
