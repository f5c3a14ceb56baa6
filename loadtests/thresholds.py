"""``--fail-on`` gates: parse ``p99_ms=200,j_per_1k=50,error_rate=0`` and judge a report against them.

``name=V`` uses the metric's natural direction (latency, errors, energy and carbon are ceilings;
throughput and cache hit rate are floors); ``name<=V`` and ``name>=V`` say it explicitly. A gated
metric the run could not measure fails the gate: a CI gate must not pass on missing evidence.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Mapping

from wattgate.errors import BadRequest

# metric -> True when higher is better (the threshold is a floor)
GATEABLE: dict[str, bool] = {
    "requests_per_s": True,
    "p50_ms": False,
    "p95_ms": False,
    "p99_ms": False,
    "error_rate": False,
    "cache_hit_rate": True,
    "j_per_1k": False,
    "g_per_1k": False,
}

_ITEM = re.compile(r"\s*([a-z0-9_]+)\s*(<=|>=|=)\s*([-+0-9.eE]+|inf)\s*")


@dataclass(frozen=True)
class Threshold:
    metric: str
    limit: float
    floor: bool  # True: the value must be >= limit; False: <= limit

    def __str__(self) -> str:
        return f"{self.metric} {'>=' if self.floor else '<='} {self.limit:g}"


@dataclass(frozen=True)
class Verdict:
    threshold: Threshold
    value: float | None
    passed: bool

    def __str__(self) -> str:
        shown = "not measured" if self.value is None else f"{self.value:.6g}"
        return f"{'ok  ' if self.passed else 'FAIL'} {self.threshold} (got {shown})"


def parse_fail_on(spec: str) -> list[Threshold]:
    """``"p99_ms=200,error_rate=0"`` -> thresholds; unknown metrics and bad numbers raise BadRequest."""
    out: list[Threshold] = []
    for raw in spec.split(","):
        if not raw.strip():
            continue
        m = _ITEM.fullmatch(raw)
        if m is None:
            raise BadRequest(f"--fail-on item {raw.strip()!r} is not NAME=VALUE, NAME<=VALUE or NAME>=VALUE")
        name, op, value = m.groups()
        if name not in GATEABLE:
            raise BadRequest(f"--fail-on: unknown metric {name!r}; choose from {', '.join(GATEABLE)}")
        try:
            limit = float(value)
        except ValueError:
            raise BadRequest(f"--fail-on: {value!r} is not a number") from None
        if math.isnan(limit):
            raise BadRequest(f"--fail-on: {name} needs a number, got NaN")
        floor = GATEABLE[name] if op == "=" else op == ">="
        out.append(Threshold(name, limit, floor))
    if not out:
        raise BadRequest("--fail-on needs at least one NAME=VALUE")
    return out


def judge(thresholds: list[Threshold], values: Mapping[str, float | None]) -> list[Verdict]:
    verdicts = []
    for t in thresholds:
        v = values.get(t.metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            verdicts.append(Verdict(t, None, False))
            continue
        passed = v >= t.limit if t.floor else v <= t.limit
        verdicts.append(Verdict(t, float(v), passed))
    return verdicts
