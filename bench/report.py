"""Benchmark cells: modelled energy from CPU time, ratios to plain Ray Serve (HAProxy) and Triton, the table.

Energy here is *modelled*, never measured: the servers' CPU-seconds through Cloud Carbon Footprint's
x86 coefficients (per vCPU: 0.74 W idle, 3.5 W busy; ``energy.coefficients``). For a window of T
seconds on V vCPUs with C CPU-seconds used, E = V*T*P_idle + C*(P_max - P_idle), CCF's
"average utilisation" form. The load generator's own CPU is not counted.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REFERENCES = {"rayserve-haproxy": "x_rayserve_haproxy", "triton": "x_triton", "rayserve-grpc": "x_rayserve_grpc",
              "triton-grpc": "x_triton_grpc"}
ENERGY_METHOD = "cpu-time-model (modelled: CCF aws-x86, 0.74 W idle / 3.5 W max per vCPU)"


@dataclass
class Cell:
    model: str
    system: str
    label: str
    concurrency: int
    requests: int | None = None
    errors: int | None = None
    status_counts: dict[str, int] = field(default_factory=dict)
    window_s: float | None = None
    requests_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_s: float | None = None
    cpu_s_per_1k: float | None = None
    j_per_1k_modelled: float | None = None
    energy_method: str = ENERGY_METHOD
    cache_hit_rate: float | None = None
    ratios: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def modelled_energy_j(cpu_s: float, window_s: float, vcpus: float) -> float:
    """CCF: vCPU-seconds at idle power plus the CPU-seconds used at (max - idle)."""
    from energy.coefficients import PROFILES

    p = PROFILES["aws-x86"]
    return vcpus * window_s * p.idle_power_w + cpu_s * p.dynamic_power_w


def finish(cell: Cell, ok_requests: int, window_s: float, cpu_s: float, vcpus: float) -> Cell:
    cell.window_s = window_s
    cell.requests_per_s = ok_requests / window_s if window_s > 0 else None
    cell.cpu_s = cpu_s
    if ok_requests > 0:
        cell.cpu_s_per_1k = 1000 * cpu_s / ok_requests
        cell.j_per_1k_modelled = 1000 * modelled_energy_j(cpu_s, window_s, vcpus) / ok_requests
    return cell


def add_ratios(cells: list[Cell]) -> None:
    """Requests/s and J/1k relative to the reference systems at the same model and concurrency."""
    index = {(c.model, c.concurrency, c.system): c for c in cells if c.requests_per_s}
    for c in cells:
        if not c.requests_per_s:
            continue
        for ref, key in REFERENCES.items():
            if ref.endswith("-grpc") and not c.system.endswith("-grpc"):  # gRPC is compared with gRPC
                continue
            r = index.get((c.model, c.concurrency, ref))
            if r is None or r is c:
                continue
            c.ratios[f"rps_{key}"] = c.requests_per_s / r.requests_per_s
            if c.j_per_1k_modelled and r.j_per_1k_modelled:
                c.ratios[f"j_per_1k_{key}"] = c.j_per_1k_modelled / r.j_per_1k_modelled


def text_target(cells: list[Cell], ours: str = "minilm:int8", naive: str = "minilm:fp32") -> dict[int, float]:
    """wattgate serving ``ours`` over plain Ray Serve (HAProxy, ``@serve.batch``) serving ``naive``, per concurrency."""
    index = {(c.model, c.system, c.concurrency): c.requests_per_s for c in cells if c.requests_per_s}
    return {
        conc: index[(ours, "wattgate", conc)] / index[(naive, "rayserve-haproxy", conc)]
        for (model, system, conc) in sorted(index, key=lambda k: k[2])
        if model == ours and system == "wattgate" and (naive, "rayserve-haproxy", conc) in index
    }


def _f(v: float | None, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def render_table(cells: list[Cell], machine: str) -> str:
    head = ["model", "conc", "system", "req/s", "p50 ms", "p99 ms", "CPU-s/1k", "J/1k*", "rps xRayHA", "rps xTriton",
            "rps xRayGRPC", "rps xTritonGRPC", "J xRayHA", "J xTriton", "hit %"]
    rows = []
    for c in cells:
        if c.skipped:
            continue
        r = c.ratios
        rows.append([c.model, str(c.concurrency), c.system, _f(c.requests_per_s, ",.0f"), _f(c.p50_ms, ".1f"), _f(c.p99_ms, ".1f"),
                     _f(c.cpu_s_per_1k, ".3f"), _f(c.j_per_1k_modelled, ".2f"),
                     _f(r.get("rps_x_rayserve_haproxy"), ".2f"), _f(r.get("rps_x_triton"), ".2f"), _f(r.get("rps_x_rayserve_grpc"), ".2f"), _f(r.get("rps_x_triton_grpc"), ".2f"),
                     _f(r.get("j_per_1k_x_rayserve_haproxy"), ".2f"), _f(r.get("j_per_1k_x_triton"), ".2f"),
                     _f(None if c.cache_hit_rate is None else 100 * c.cache_hit_rate, ".0f")])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = lambda r: "  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))  # noqa: E731
    lines = [f"wattgate bench on {machine}", fmt(head), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]
    lines.append("* J/1k is modelled from the server process tree's CPU-seconds (" + ENERGY_METHOD.split("(", 1)[1])
    labels = sorted({(c.system, c.label) for c in cells})
    lines += [f"  {s}: {lab}" for s, lab in labels]
    skipped = sorted({(c.system, c.model, c.skipped) for c in cells if c.skipped})
    lines += [f"skipped {s} / {m}: {why}" for s, m, why in skipped]
    return "\n".join(lines)


def write_json(cells: list[Cell], meta: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "cells": [c.to_dict() for c in cells]}, indent=2, default=str))
    return path
