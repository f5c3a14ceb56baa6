"""Scrapes the gateway's ``/metrics`` (Prometheus text) and turns two scrapes into the run's deltas."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

Sample = tuple[str, tuple[tuple[str, str], ...]]  # (metric name, sorted label pairs)

_LINE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')

REQUESTS = "wattgate_requests_total"
ENERGY = "wattgate_energy_joules_total"
CARBON = "wattgate_carbon_grams_total"
CACHE_HITS = "wattgate_cache_hits_total"
CACHE_MISSES = "wattgate_cache_misses_total"


def _unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def _value(text: str) -> float:
    if text in ("+Inf", "Inf"):
        return math.inf
    if text == "-Inf":
        return -math.inf
    return float(text)


def parse_prometheus(text: str) -> dict[Sample, float]:
    """Every sample line of a text exposition; comments and unparseable lines are skipped."""
    out: dict[Sample, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.fullmatch(line)
        if m is None:
            continue
        name, _, labels, value = m.group(1), m.group(2), m.group(3), m.group(4)
        pairs = tuple(sorted((k, _unescape(v)) for k, v in _LABEL.findall(labels or "")))
        try:
            out[(name, pairs)] = _value(value)
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class MetricsDelta:
    """What changed between two scrapes of the same gateway (counters; a reset counts from zero)."""

    before: dict[Sample, float] = field(default_factory=dict)
    after: dict[Sample, float] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.after)

    def total(self, name: str, **match: str) -> float | None:
        """Sum over series of ``name`` whose labels include ``match``; None if the metric is absent."""
        if not self.has(name):
            return None
        total = 0.0
        for (n, labels), value in self.after.items():
            if n != name or any(dict(labels).get(k) != v for k, v in match.items()):
                continue
            prev = self.before.get((n, labels), 0.0)
            total += value - prev if value >= prev else value
        return total

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for (n, labels), value in self.after.items():
            if n != name:
                continue
            key = dict(labels).get(label, "")
            prev = self.before.get((n, labels), 0.0)
            out[key] = out.get(key, 0.0) + (value - prev if value >= prev else value)
        return out


def scrape(base_url: str, timeout_s: float = 5.0) -> dict[Sample, float]:
    """One GET of ``/metrics``; an unreachable or failing endpoint yields no samples (and says so)."""
    import httpx  # a one-off GET, not a measurement: httpx's client-side ceiling does not matter here

    try:
        resp = httpx.get(base_url.rstrip("/") + "/metrics", timeout=timeout_s)
    except httpx.HTTPError as exc:
        print(f"loadtest: could not scrape {base_url}/metrics: {exc}")
        return {}
    if resp.status_code != 200:
        print(f"loadtest: {base_url}/metrics answered {resp.status_code}")
        return {}
    return parse_prometheus(resp.text)
