"""Quality-versus-energy Pareto frontier of a model's variants, as a Markdown report and a PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence


@dataclass(frozen=True)
class Point:
    name: str
    quality: float  # higher is better
    energy_j_per_inference: float  # lower is better


def dominates(a: Point, b: Point) -> bool:
    return (a.quality >= b.quality and a.energy_j_per_inference <= b.energy_j_per_inference
            and (a.quality > b.quality or a.energy_j_per_inference < b.energy_j_per_inference))


def pareto_front(points: Iterable[Point]) -> list[Point]:
    """The points no other point dominates, cheapest first."""
    pts = list(points)
    front = [p for p in pts if not any(dominates(q, p) for q in pts)]
    return sorted(front, key=lambda p: (p.energy_j_per_inference, -p.quality))


def recommend(points: Iterable[Point], budget_j: float) -> Point | None:
    """The best-quality variant that costs at most ``budget_j`` per inference (cheaper on ties)."""
    within = [p for p in points if p.energy_j_per_inference <= budget_j]
    return max(within, key=lambda p: (p.quality, -p.energy_j_per_inference), default=None)


def budget_table(points: Sequence[Point]) -> list[tuple[float, Point]]:
    """One row per frontier point: at a budget of its energy, it is the recommendation."""
    return [(p.energy_j_per_inference, recommend(points, p.energy_j_per_inference)) for p in pareto_front(points)]


def plot(points: Sequence[Point], path: Path, title: str, metric: str, energy_label: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    front = pareto_front(points)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    others = [p for p in points if p not in front]
    ax.scatter([p.energy_j_per_inference for p in others], [p.quality for p in others], c="#999999", label="dominated")
    ax.scatter([p.energy_j_per_inference for p in front], [p.quality for p in front], c="#d62728", label="Pareto frontier", zorder=3)
    ax.step([p.energy_j_per_inference for p in front], [p.quality for p in front], where="post", c="#d62728", alpha=0.6)
    for p in points:
        ax.annotate(p.name, (p.energy_j_per_inference, p.quality), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel(energy_label)
    ax.set_ylabel(metric)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    card,
    out_dir: str | Path,
    metric: str,
    hardware: str = "x86",
    batch: int = 32,
    extra_rows: Sequence[dict] = (),
    extra_title: str = "Search candidates",
    notes: Sequence[str] = (),
    sections: Sequence[tuple[str, Sequence[dict]]] = (),
) -> tuple[Path, Path]:
    """``pareto.md`` and ``pareto.png`` for every profiled variant of ``card`` that has ``metric``."""
    from optimizers.profile import energy_per_inference

    out_dir = Path(out_dir)
    points, rows = [], []
    for name, v in sorted(card.variants.items()):
        if metric not in v.quality or hardware not in v.energy_profile:
            continue
        e = energy_per_inference(v.energy_profile, hardware, batch)
        points.append(Point(name, v.quality[metric], e))
        b1 = v.energy_profile[hardware]["batches"].get("1", {})
        rows.append((name, v.precision, v.quality[metric], e, b1.get("latency_ms"), v.size_bytes))
    if not points:
        raise ValueError(f"no variant of {card.name} has both {metric!r} and a {hardware} profile")
    front = {p.name for p in pareto_front(points)}
    method = next(v.energy_profile[hardware]["method"] for v in card.variants.values() if hardware in v.energy_profile)
    energy_label = f"J per inference, {hardware} batch {batch} ({method}, modelled)"
    png = plot(points, out_dir / "pareto.png", f"{card.name} v{card.version}: {metric} vs energy", metric, energy_label)
    lines = [
        f"# {card.name} v{card.version}: {metric} against energy",
        "",
        f"Energy: J per inference at batch {batch} on {hardware}, method `{method}` (modelled from CPU time, not a power reading).",
        "",
        "| variant | precision | " + metric + " | J/inference | latency ms (batch 1) | size bytes | frontier |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, prec, q, e, lat, size in sorted(rows, key=lambda r: r[3]):
        lines.append(f"| {name} | {prec} | {q:.4f} | {e:.3g} | {lat if lat is not None else '-'} | {size} | {'yes' if name in front else ''} |")
    lines += ["", "## Recommended variant per energy budget", "", "| budget (J/inference) | variant | " + metric + " |", "|---|---|---|"]
    for budget, p in budget_table(points):
        lines.append(f"| <= {budget:.3g} | {p.name} | {p.quality:.4f} |")
    for title, table in ([(extra_title, extra_rows)] if extra_rows else []) + list(sections):
        keys = list(dict.fromkeys(k for r in table for k in r))
        lines += ["", f"## {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(_fmt(r.get(k, "-")) for k in keys) + " |" for r in table]
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    lines += ["", f"![pareto]({png.name})", ""]
    md = out_dir / "pareto.md"
    md.write_text("\n".join(lines))
    return md, png


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
