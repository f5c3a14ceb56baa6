"""The report's PNG plots (matplotlib, Agg): daily trends and SCI per model."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a display
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from reports.build import Report  # noqa: E402

TREND_ENERGY = "trend_energy_j_per_1k_requests.png"
TREND_CARBON = "trend_carbon_g_per_1k_requests.png"
TREND_REQUESTS = "trend_requests_per_day.png"
SCI_BY_MODEL = "sci_g_per_request_by_model.png"


def _trend(path: Path, days, values, ylabel: str, title: str, colour: str) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    ax.plot(days, values, marker="o", markersize=3, linewidth=1.5, color=colour)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_plots(report: Report, out_dir: Path) -> dict[str, str]:
    """Write the PNGs into ``out_dir``; returns their file names by what they show."""
    # Every day of the period: a day without requests is 0 requests and a gap in the per-1k lines.
    by_day = {t.day: t for t in report.trends}
    first, last = report.period.start.date(), (report.period.end - timedelta(microseconds=1)).date()
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    nan = float("nan")

    def per_day(value) -> list[float]:
        return [nan if d not in by_day or value(by_day[d]) is None else value(by_day[d]) for d in days]

    _trend(out_dir / TREND_ENERGY, days, per_day(lambda t: t.energy_j_per_1k_requests),
           "J per 1,000 requests", "Energy per 1,000 requests, per day (UTC)", "#1f5fa8")
    _trend(out_dir / TREND_CARBON, days, per_day(lambda t: t.carbon_g_per_1k_requests),
           "gCO2eq per 1,000 requests", "Carbon per 1,000 requests, per day (UTC)", "#2e7d32")
    _trend(out_dir / TREND_REQUESTS, days, [by_day[d].requests if d in by_day else 0 for d in days], "requests",
           "Requests per day (UTC)", "#6a3d9a")

    rows = [r for r in report.by_model if r.sci_g_per_request is not None]
    fig, ax = plt.subplots(figsize=(8, max(2.0, 0.5 * len(rows) + 1)), dpi=100)
    known = [r.requests - r.carbon_unknown_requests for r in rows]
    operational = [r.operational_g / n for r, n in zip(rows, known)]
    embodied = [(r.carbon_g - r.operational_g) / n for r, n in zip(rows, known)]
    names = [r.key for r in rows]
    ax.barh(names, operational, color="#2e7d32", label="operational (E x PUE x I) per request")
    ax.barh(names, embodied, left=operational, color="#8d6e63", label="embodied (M) per request")
    ax.set_xlabel("gCO2eq per request (SCI)")
    ax.set_title("SCI per model")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, fontsize=8, frameon=False)
    fig.savefig(out_dir / SCI_BY_MODEL, bbox_inches="tight")
    plt.close(fig)
    return {"energy": TREND_ENERGY, "carbon": TREND_CARBON, "requests": TREND_REQUESTS, "sci": SCI_BY_MODEL}
