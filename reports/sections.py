"""The report's wording: a Report becomes document blocks, every figure named with its unit and how it was obtained."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping, Sequence

from energy.carbon import J_PER_KWH
from reports.build import Report
from reports.document import Block, Bullets, Heading, Image, Para, Table
from reports.figures import Consumer, SciRow

MAX_TREND_TABLE_DAYS = 31  # longer periods show the plots only


def num(value: float | None, digits: int = 4) -> str:
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}g}"


def pct(share: float | None) -> str:
    return "n/a" if share is None else f"{100 * share:.1f}%"


def _utc(time_s: float) -> str:
    return datetime.fromtimestamp(time_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


SCI_COLUMNS = ("group", "R_requests", "E_kwh", "E_measured_pct", "I_g_per_kwh", "PUE", "O_operational_g",
               "M_embodied_g", "carbon_g", "SCI_g_per_request", "R_carbon_unknown", "energy_method", "intensity_source")


def _sci_table(rows: Sequence[SciRow]) -> Table:
    return Table(SCI_COLUMNS, tuple(
        (r.key, str(r.requests), num(r.energy_kwh), pct(r.measured_share), num(r.intensity_g_per_kwh), num(r.pue, 3),
         num(r.operational_g), num(r.embodied_g), num(r.carbon_g), num(r.sci_g_per_request), str(r.carbon_unknown_requests),
         ", ".join(r.energy_methods), ", ".join(r.intensity_sources))
        for r in rows))


def _consumers(title: str, rows: Sequence[Consumer]) -> list[Block]:
    return [Heading(3, title), Table(("group", "energy_kwh", "energy_share_pct", "requests", "carbon_g"), tuple(
        (c.key, num(c.energy_j / J_PER_KWH), pct(c.energy_share), str(c.requests), num(c.carbon_g)) for c in rows))]


def _summary(r: Report) -> list[Block]:
    t = r.total
    who = f"tenant {r.tenant}" if r.tenant is not None else "all tenants"
    blocks: list[Block] = [
        Heading(1, f"wattgate energy and carbon report: {r.period.label}"),
        Para(f"Period {r.period.start:%Y-%m-%d %H:%M} to {r.period.end:%Y-%m-%d %H:%M} UTC (end excluded), {who}. "
             "Every figure is from the energy ledger (one row per request) unless it says modelled."),
        Heading(2, "Summary"),
        Bullets((
            f"requests: {t.requests} ({t.carbon_unknown_requests} without an intensity reading: their carbon is unknown)",
            f"energy_kwh: {num(t.energy_kwh)} (active {num(t.active_j / J_PER_KWH)} kWh + idle {num(t.idle_j / J_PER_KWH)} kWh; "
            f"{pct(t.measured_share)} measured by a meter, the rest modelled: {', '.join(t.energy_methods)})",
            f"carbon_g: {num(t.carbon_g)} (operational {num(t.operational_g)} g + embodied of the rows with a reading)",
            f"SCI_g_per_request: {num(t.sci_g_per_request)}",
        )),
    ]
    if r.accounts:
        blocks.append(Para("Energy charged to no request (start-up: model load, warm-up; idle: autoscaled pool "
                           "replicas' static power while provisioned), not in the figures above (no carbon: "
                           "these rows carry no region intensity):"))
        blocks.append(Table(("kind", "pool", "method", "entries", "energy_kwh"), tuple(
            (a["kind"], a.get("pool") or "-", a["method"], str(a["entries"]), num(a["energy_j"] / J_PER_KWH))
            for a in r.accounts)))
    elif r.tenant is not None:
        blocks.append(Para("Start-up energy belongs to no tenant and is left out of a tenant's report."))
    return blocks


def _sci(r: Report, plots: Mapping[str, str]) -> list[Block]:
    return [
        Heading(2, "SCI (ISO/IEC 21031): (E x I + M) per R"),
        Para("E_kwh: IT energy of the requests (active + idle, before PUE). I_g_per_kwh: grid intensity, weighted by "
             "energy over the requests with a reading. PUE: the facility factor inside the operational part, so "
             "O_operational_g = E x PUE x I (over the requests with a reading). M_embodied_g: the hardware's embodied "
             "carbon amortised over the time the requests reserved. R: requests. carbon_g = O + M of the requests with "
             "a reading; SCI_g_per_request = carbon_g / (R_requests - R_carbon_unknown). E_measured_pct: share of E "
             "read from a meter (NVML, RAPL); the rest is modelled (energy_method). intensity_source: provider/kind/signal."),
        Heading(3, "Per model"), _sci_table(r.by_model), Image(plots["sci"], "SCI per model, gCO2eq per request"),
        Heading(3, "Per tenant"), _sci_table(r.by_tenant),
        Heading(3, "Per region"), _sci_table(r.by_region),
    ]


def _trends(r: Report, plots: Mapping[str, str]) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Trends"),
        Image(plots["energy"], "Energy per 1,000 requests per day, J"),
        Image(plots["carbon"], "Carbon per 1,000 requests per day, gCO2eq"),
        Image(plots["requests"], "Requests per day"),
    ]
    if len(r.trends) <= MAX_TREND_TABLE_DAYS:
        blocks.append(Table(("day_utc", "requests", "energy_j_per_1k_requests", "carbon_g_per_1k_requests"), tuple(
            (str(t.day), str(t.requests), num(t.energy_j_per_1k_requests), num(t.carbon_g_per_1k_requests))
            for t in r.trends)))
    return blocks


def _saved(r: Report) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Carbon saved (modelled)"), Heading(3, "By routing, against round-robin")]
    if r.routing is None:
        blocks.append(Para(f"n/a: {r.routing_note}"))
    else:
        g = r.routing
        blocks.append(Bullets((
            f"round_robin_operational_g (modelled): {num(g.round_robin_operational_g)}",
            f"actual_operational_g (ledger): {num(g.actual_operational_g)}",
            f"saved_g (modelled): {num(g.saved_g)} ({pct(g.saved_share)} of round-robin)",
            f"requests compared: {g.requests_compared}; left out: {g.requests_left_out} (carbon unknown, or no "
            "intensity reading for some pool's region at the time)",
        )))
        blocks.append(Para(f"Assumption: each request's energy is placed evenly over the topology's pools that serve "
                           f"its variant ({', '.join(g.pools)}), each share at its region's intensity in force at the "
                           "request's time (the intensity provider's history) and the pool's PUE; a request is assumed "
                           "to cost the same energy on every pool, and embodied carbon is the same in both. "
                           f"{r.routing_note}".strip()))
    blocks.append(Heading(3, "By time-shifting (deferrable jobs)"))
    if r.time_shift is None:
        blocks.append(Para("n/a: no deferrable jobs in the period"))
    else:
        s = r.time_shift
        blocks.append(Bullets((
            f"jobs: {s.jobs}",
            f"counterfactual_carbon_g (had they run at submission, modelled): {num(s.counterfactual_carbon_g)}",
            f"actual_carbon_g (ledger): {num(s.actual_carbon_g)}",
            f"saved_g: {num(s.saved_g)}",
        )))
    c = r.cache
    blocks.append(Heading(3, "By the cache"))
    if not c.by_model_variant:
        blocks.append(Para("n/a: no cache hits in the period"))
    else:
        blocks.append(Para("Modelled: hits x the mean energy (active + idle) of the period's misses of the same model and "
                           "variant, less the hits' own energy; carbon at each hit's own intensity and PUE (operational "
                           "only). Hits of a model/variant with no misses in the period are not estimated."))
        blocks.append(Table(("model/variant", "hits", "mean_miss_j", "hits_own_j", "avoided_kwh", "avoided_g"), tuple(
            (f"{s.model}/{s.variant}", str(s.hits), num(s.mean_miss_j), num(s.hits_own_j), num(s.avoided_j / J_PER_KWH),
             num(s.avoided_g)) for s in c.by_model_variant)))
        blocks.append(Para(f"Total: avoided_kwh {num(c.avoided_j / J_PER_KWH)}, avoided_g {num(c.avoided_g)} "
                           f"({c.hits_without_misses} hits not estimated)."))
    return blocks


def _anomalies(r: Report) -> list[Block]:
    a = r.anomalies
    blocks: list[Block] = [
        Heading(2, "Energy anomalies"),
        Para(f"The energy anomaly detector (energy/anomaly.py) run over the period's {a.observed} ledger rows in time "
             f"order, active J per request against its baseline per model, variant, hardware and batch-size band "
             f"({a.skipped} cache hits skipped, {a.ignored} rows with NaN or negative energy ignored)."),
    ]
    if not a.events:
        blocks.append(Para("None flagged."))
        return blocks
    blocks.append(Table(("time_utc", "model/variant", "pool", "state", "observed_mj_per_request",
                         "expected_mj_per_request", "ratio", "likely cause"), tuple(
        (_utc(e.time_s), f"{e.model}/{e.variant}", e.pool, e.state, num(1e3 * e.observed_j_per_request),
         num(1e3 * e.expected_j_per_request), num(e.ratio, 3), e.cause) for e in a.events)))
    return blocks


def _quality(q: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(q.items())) or "not recorded"


def _impact(r: Report) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Impact statements (production models)")]
    if not r.impact:
        blocks.append(Para("n/a: no production model cards in the registry."))
    for s in r.impact:
        f = s.figures
        blocks += [
            Heading(3, f"{s.model} version {s.version}"),
            Bullets((
                f"purpose: {s.purpose}",
                f"owner: {s.owner}",
                f"in the period: {f.requests} requests, energy_kwh {num(f.energy_kwh)}, carbon_g {num(f.carbon_g)}, "
                f"SCI_g_per_request {num(f.sci_g_per_request)}",
                f"quality ({s.default_variant}, from the card): {_quality(s.quality)}; floor: {_quality(s.quality_floor)}",
            )),
        ]
        base = next((v for v in s.variants if v.variant == s.default_variant), None)
        rows = []
        for v in s.variants:
            vs = "n/a"
            if base and base.profile_j_per_inference and v.profile_j_per_inference is not None and v is not base:
                vs = f"{100 * (v.profile_j_per_inference / base.profile_j_per_inference - 1):+.0f}% energy vs {base.variant}"
            rows.append((v.variant, v.precision, _quality(v.quality),
                         num(None if v.profile_j_per_inference is None else 1e3 * v.profile_j_per_inference),
                         f"{v.profile_hardware} ({v.profile_method})" if v.profile_hardware else "no profile",
                         vs, str(v.requests), num(v.energy_j / J_PER_KWH)))
        blocks.append(Table(("variant", "precision", "quality", "profile_mj_per_inference_batch1", "profile_hardware",
                             "vs_default", "requests", "energy_kwh"), tuple(rows)))
    return blocks


def _retirement(r: Report) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, "Retirement candidates"),
        Para(f"Rule: a model that used energy in the period and served fewer than {r.retire_below_requests_per_day:g} "
             "requests per day (--retire-below-requests-per-day), or whose production card's default variant is below "
             "its own quality floor."),
    ]
    if not r.retirement:
        blocks.append(Para("None."))
        return blocks
    blocks.append(Table(("model", "requests", "requests_per_day", "energy_kwh", "carbon_g", "why"), tuple(
        (c.model, str(c.requests), num(c.requests_per_day), num(c.energy_j / J_PER_KWH), num(c.carbon_g),
         "; ".join(c.reasons)) for c in r.retirement)))
    return blocks


def report_blocks(r: Report, plots: Mapping[str, str]) -> list[Block]:
    return [
        *_summary(r), *_sci(r, plots), *_trends(r, plots), *_saved(r),
        Heading(2, "Top energy consumers"),
        *_consumers("By model/variant", r.top_model_variant), *_consumers("By tenant", r.top_tenant),
        *_consumers("By pool", r.top_pool),
        *_anomalies(r), *_impact(r), *_retirement(r),
    ]


def _sci_json(row: SciRow) -> dict:
    return {"requests": row.requests, "carbon_unknown_requests": row.carbon_unknown_requests, "energy_j": row.energy_j,
            "energy_kwh": row.energy_kwh, "measured_energy_j": row.measured_energy_j,
            "intensity_g_per_kwh": row.intensity_g_per_kwh, "pue": row.pue, "operational_g": row.operational_g,
            "embodied_g": row.embodied_g, "carbon_g": row.carbon_g, "sci_g_per_request": row.sci_g_per_request}


def figures_json(r: Report) -> dict:
    """The report's figures unrounded, for machines (and for reconciling with the ledger)."""
    return {
        "period": {"label": r.period.label, "start": r.period.start.isoformat(), "end": r.period.end.isoformat()},
        "tenant": r.tenant,
        "total": _sci_json(r.total),
        "accounts": list(r.accounts),
        "by_model": {x.key: _sci_json(x) for x in r.by_model},
        "by_tenant": {x.key: _sci_json(x) for x in r.by_tenant},
        "by_region": {x.key: _sci_json(x) for x in r.by_region},
        "carbon_saved_g": {
            "routing": None if r.routing is None else r.routing.saved_g,
            "time_shift": None if r.time_shift is None else r.time_shift.saved_g,
            "cache": r.cache.avoided_g,
        },
        "anomalies": len([e for e in r.anomalies.events if e.state == "started"]),
        "retirement_candidates": [c.model for c in r.retirement],
    }
