"""Helpers of the jobs tests: the replayed trace, a dirty hour, a digits infer body."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

TRACES = Path(__file__).resolve().parents[3] / "shared" / "data" / "grid"  # beside the checkout, as tests/routing

# Monday 2 March 2020, 17:00 UTC: the DE evening peak, a dirty hour.
DIRTY = datetime(2020, 3, 2, 17, 0, tzinfo=timezone.utc)


def digits_body(rows: int = 1, **parameters) -> bytes:
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [rows, 64], "data": [0.0] * (64 * rows)}]}
    if parameters:
        doc["parameters"] = parameters
    return json.dumps(doc).encode()
