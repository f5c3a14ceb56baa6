"""The whole report for one period as one frozen value: what ``wattgate report`` renders. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from energy.anomaly import EnergyAnomalyDetector
from energy.ledger_record import LedgerRecord
from models.card import ModelCard
from reports.figures import (
    Consumer, DayTrend, SciRow, daily_trends, model_key, region_key, sci_by, sci_row, tenant_key, top_consumers,
)
from reports.period import Period
from reports.review import (
    AnomalyScan, ImpactStatement, RetirementCandidate, impact_statements, retirement_candidates, scan_anomalies,
)
from reports.savings import (
    CacheSavings, IntensityTimeline, PoolSite, RoutingSavings, TimeShiftSavings, cache_savings, routing_savings,
)
from wattgate.errors import BadRequest


@dataclass(frozen=True)
class Report:
    period: Period
    tenant: str | None
    total: SciRow
    accounts: tuple[dict, ...]  # energy charged to no request (start-up), per kind and method
    by_model: tuple[SciRow, ...]
    by_tenant: tuple[SciRow, ...]
    by_region: tuple[SciRow, ...]
    trends: tuple[DayTrend, ...]
    top_model_variant: tuple[Consumer, ...]
    top_tenant: tuple[Consumer, ...]
    top_pool: tuple[Consumer, ...]
    routing: RoutingSavings | None
    routing_note: str  # why routing is n/a, or what the intensity history covered
    time_shift: TimeShiftSavings | None
    cache: CacheSavings
    anomalies: AnomalyScan
    impact: tuple[ImpactStatement, ...]
    retirement: tuple[RetirementCandidate, ...]
    retire_below_requests_per_day: float


def build_report(
    period: Period,
    rows: Iterable[LedgerRecord],
    *,
    accounts: Sequence[dict] = (),
    tenant: str | None = None,
    cards: Sequence[ModelCard] = (),
    pools: Sequence[PoolSite] = (),
    timeline: IntensityTimeline | None = None,
    routing_note: str = "",
    time_shift: TimeShiftSavings | None = None,
    detector: EnergyAnomalyDetector | None = None,
    retire_below_requests_per_day: float,
) -> Report:
    """The report over the ``rows`` inside ``period`` (of ``tenant`` when given); BadRequest when there are none."""
    start_s, end_s = period.start_s, period.end_s
    mine = [r for r in rows if start_s <= r.time_s < end_s and (tenant is None or r.tenant == tenant)]
    if not mine:
        who = f" for tenant {tenant!r}" if tenant is not None else ""
        raise BadRequest(f"no ledger records in period {period.label} ({period.start:%Y-%m-%d %H:%M} to "
                         f"{period.end:%Y-%m-%d %H:%M} UTC){who}: nothing to report")
    mine.sort(key=lambda r: r.time_s)
    routing = None
    if pools and timeline is not None:
        routing = routing_savings(mine, pools, timeline)
        if routing.requests_compared == 0:
            routing, routing_note = None, routing_note or "no request in the period has intensity history for every pool"
    elif not routing_note:
        routing_note = "no topology or intensity history given"
    return Report(
        period=period,
        tenant=tenant,
        total=sci_row("all", mine),
        # Start-up energy belongs to no tenant: a tenant's report leaves it out.
        accounts=tuple(accounts) if tenant is None else (),
        by_model=tuple(sci_by(mine, model_key)),
        by_tenant=tuple(sci_by(mine, tenant_key)),
        by_region=tuple(sci_by(mine, region_key)),
        trends=tuple(daily_trends(mine)),
        top_model_variant=tuple(top_consumers(mine, lambda r: f"{r.model}/{r.variant}")),
        top_tenant=tuple(top_consumers(mine, tenant_key)),
        top_pool=tuple(top_consumers(mine, lambda r: r.pool)),
        routing=routing,
        routing_note=routing_note,
        time_shift=time_shift,
        cache=cache_savings(mine, {p.name: p.pue for p in pools}),
        anomalies=scan_anomalies(mine, detector or EnergyAnomalyDetector()),
        impact=tuple(impact_statements(mine, cards)),
        retirement=tuple(retirement_candidates(mine, cards, period.days, retire_below_requests_per_day)),
        retire_below_requests_per_day=retire_below_requests_per_day,
    )
