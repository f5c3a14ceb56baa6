"""Counts what the gateway said about each response (cache, pool, region, energy) on the load-generator side.

The gateway mirrors its response ``parameters`` into ``x-*`` headers; reading headers spares the
client a JSON parse. Figures absent from a response are simply not counted, so the runner can fall
back on them only when neither the ledger nor ``/metrics`` has the number.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

_FIELDS = {"cache": "x-cache", "pool": "x-pool", "region": "x-region", "energy_method": "x-energy-method", "variant": "x-variant"}


class ResponseTally:
    def __init__(self, bucket_s: float = 1.0) -> None:
        self.bucket_s = bucket_s
        self._lock = threading.Lock()
        self.started_at_s: float | None = None
        self.profile: str | None = None
        self.responses = 0
        self.counts: dict[str, Counter] = {k: Counter() for k in _FIELDS}
        self.energy_j = 0.0
        self.carbon_g = 0.0
        self.with_energy = 0
        self.with_carbon = 0
        # bucket start (unix s) -> [responses, responses with energy, energy_j]
        self.buckets: dict[int, list[float]] = {}
        # bucket start (unix s) -> client-side latencies (ms) of every request, failed ones included
        self.latencies: dict[int, list[float]] = {}
        self.failures: dict[int, int] = {}

    def started(self, profile: str | None = None) -> None:
        with self._lock:
            if self.started_at_s is None:
                self.started_at_s = time.time()
            self.profile = profile

    def observe(self, headers: Mapping[str, str], body: str | None = None) -> None:
        """One 200 response: headers first; the JSON body's ``parameters`` only when headers lack them."""
        params = _from_headers(headers)
        if not params and body:
            params = _from_body(body)
        energy = _number(params.get("energy_j"))
        carbon = _number(params.get("carbon_g"))
        bucket = int(time.time() // self.bucket_s * self.bucket_s)
        with self._lock:
            self.responses += 1
            for key in _FIELDS:
                if params.get(key) is not None:
                    self.counts[key][str(params[key])] += 1
            row = self.buckets.setdefault(bucket, [0, 0, 0.0])
            row[0] += 1
            if energy is not None:
                self.energy_j += energy
                self.with_energy += 1
                row[1] += 1
                row[2] += energy
            if carbon is not None:
                self.carbon_g += carbon
                self.with_carbon += 1

    def observe_request(self, latency_ms: float, failed: bool, at_s: float | None = None) -> None:
        """Every request locust timed (its ``request`` event), for per-second rates and percentiles."""
        bucket = int((at_s if at_s is not None else time.time()) // self.bucket_s * self.bucket_s)
        with self._lock:
            self.latencies.setdefault(bucket, []).append(latency_ms)
            if failed:
                self.failures[bucket] = self.failures.get(bucket, 0) + 1

    def per_second(self) -> list[dict[str, float]]:
        """Per bucket: requests/s, failures/s and latency percentiles of the requests that ended in it."""
        import numpy as np

        with self._lock:
            items = sorted((t, list(v)) for t, v in self.latencies.items())
            failures = dict(self.failures)
        out = []
        for t, lat in items:
            p50, p95, p99 = (float(x) for x in np.percentile(lat, [50, 95, 99]))
            out.append({"time_s": t, "requests_per_s": len(lat) / self.bucket_s, "failures_per_s": failures.get(t, 0) / self.bucket_s,
                        "p50_ms": p50, "p95_ms": p95, "p99_ms": p99})
        return out

    def to_dict(self) -> dict[str, Any]:
        per_second = self.per_second()
        with self._lock:
            return {
                "per_second": per_second,
                "started_at_s": self.started_at_s,
                "profile": self.profile,
                "responses": self.responses,
                "counts": {k: dict(v) for k, v in self.counts.items()},
                "energy_j": self.energy_j,
                "carbon_g": self.carbon_g,
                "with_energy": self.with_energy,
                "with_carbon": self.with_carbon,
                "buckets": [[t, *row] for t, row in sorted(self.buckets.items())],
            }

    def write(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict()))


def _from_headers(headers: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, header in (*_FIELDS.items(), ("energy_j", "x-energy-j"), ("carbon_g", "x-carbon-g")):
        value = headers.get(header)
        if value is not None:
            out[key] = value
    return out


def _from_body(body: str) -> dict[str, Any]:
    try:
        doc = json.loads(body)
    except ValueError:
        return {}
    params = doc.get("parameters") if isinstance(doc, dict) else None
    return params if isinstance(params, dict) else {}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
