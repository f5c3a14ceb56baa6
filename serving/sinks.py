"""Where accounted requests go: the energy ledger, the Prometheus metrics and the router's carbon budgets."""

from __future__ import annotations

from typing import Callable

from energy.attribution import EnergyAttributor
from energy.ledger import EnergyLedger
from energy.metrics import EnergyMetrics
from serving.accounting import AccountedRequest


class LedgerSink:
    """Appends each request to the SQLite ledger (written off the request path)."""

    def __init__(self, ledger: EnergyLedger) -> None:
        self.ledger = ledger

    def record(self, accounted: AccountedRequest) -> None:
        self.ledger.append(accounted.record)

    def close(self) -> None:
        self.ledger.close()


class MetricsSink:
    """Per-request energy and carbon counters, and the attributor's books at each scrape."""

    def __init__(self, metrics: EnergyMetrics, attributor: EnergyAttributor) -> None:
        self.metrics = metrics
        self.attributor = attributor

    def record(self, accounted: AccountedRequest) -> None:
        self.metrics.observe(accounted.record)

    def refresh(self) -> None:
        self.metrics.observe_attribution(self.attributor.totals())
        self.metrics.refresh()

    def close(self) -> None:
        self.metrics.observe_attribution(self.attributor.totals())


class BudgetSink:
    """Feeds each request's carbon to the carbon budgets the router enforces."""

    def __init__(self, observe_carbon: Callable[[str, float], None]) -> None:
        self.observe_carbon = observe_carbon

    def record(self, accounted: AccountedRequest) -> None:
        self.observe_carbon(accounted.record.model, accounted.record.carbon_g)
