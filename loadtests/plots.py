"""PNG charts of a load test (latency and J/1k over time) and of the peer benchmark (matplotlib Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    return plt


def _clean(values: Sequence[float | None]) -> list[float]:
    return [math.nan if v is None else float(v) for v in values]


def plot_loadtest(report: dict[str, Any], path: str | Path) -> Path | None:
    """Latency percentiles, requests/s and J/1k over time from a report's ``timeseries``; None if empty."""
    series = report.get("timeseries") or []
    if not series:
        return None
    plt = _pyplot()
    t0 = series[0]["time_s"]
    t = [p["time_s"] - t0 for p in series]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    for key, style in (("p50_ms", "-"), ("p95_ms", "--"), ("p99_ms", ":")):
        ax1.plot(t, _clean([p[key] for p in series]), style, label=key.replace("_ms", ""))
    ax1.set_ylabel("latency (ms)")
    ax1.legend(loc="upper left")
    rps = ax1.twinx()
    rps.plot(t, _clean([p["requests_per_s"] for p in series]), color="grey", alpha=0.5, label="requests/s")
    rps.set_ylabel("requests/s")
    j = _clean([p.get("j_per_1k") for p in series])
    if any(not math.isnan(v) for v in j):
        ax2.plot(t, j, color="tab:green", marker=".", label=f"J / 1k ({', '.join(report.get('energy_methods') or {}) or 'unknown method'})")
        ax2.legend(loc="upper left")
    else:
        ax2.text(0.5, 0.5, "no per-request energy in this run", ha="center", va="center", transform=ax2.transAxes)
    ax2.set_ylabel("J per 1,000 requests")
    ax2.set_xlabel("seconds since start")
    users = ax2.twinx()
    users.step(t, [p["users"] for p in series], color="tab:orange", alpha=0.4, where="post")
    users.set_ylabel("users")
    fig.suptitle(f"{report.get('scenario')} - {report.get('url')}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bench(cells: list[dict[str, Any]], path: str | Path) -> Path | None:
    """Requests/s, p99 and modelled J/1k against concurrency, one line per system, one row per model."""
    ran = [c for c in cells if c.get("requests_per_s") is not None]
    if not ran:
        return None
    plt = _pyplot()
    models = sorted({c["model"] for c in ran})
    fig, axes = plt.subplots(len(models), 3, figsize=(15, 4 * len(models)), squeeze=False)
    for row, model in enumerate(models):
        systems = sorted({c["system"] for c in ran if c["model"] == model})
        for col, (key, label, log) in enumerate((("requests_per_s", "requests/s", True), ("p99_ms", "p99 latency (ms)", True),
                                                 ("j_per_1k_modelled", "modelled J / 1k requests", True))):
            ax = axes[row][col]
            for system in systems:
                pts = sorted((c["concurrency"], c[key]) for c in ran if c["model"] == model and c["system"] == system and c.get(key) is not None)
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=system)
            ax.set_xscale("log", base=2)
            if log:
                ax.set_yscale("log")
            ax.set_xlabel("concurrency")
            ax.set_title(f"{model}: {label}")
            ax.grid(True, alpha=0.3)
        axes[row][0].legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
