"""What the live router observes: each pool's load, carbon spent against budgets, and grid intensity."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Protocol

from routing.candidates import BudgetState
from routing.intensity.snapshot import IntensityView
from wattgate.errors import BadRequest

__all__ = ["BudgetTracker", "IntensitySource", "PoolLoad"]


class IntensitySource(Protocol):
    """What the core reads of grid intensity: :class:`routing.intensity.snapshot.IntensitySnapshot`."""

    generation: int

    def get(self, region: str) -> IntensityView: ...


@dataclass
class PoolLoad:
    """Arrival rate (EWMA over ~``tau_s``), requests in flight and failures, as this process sees them."""

    tau_s: float = 5.0
    rate_rps: float = 0.0
    last_s: float = 0.0
    in_flight: int = 0
    failures: int = 0
    down_until_s: float = 0.0

    def arrive(self, n: float, now: float) -> None:
        dt = max(now - self.last_s, 1e-6)
        self.rate_rps = self.rate_rps * math.exp(-dt / self.tau_s) + n / self.tau_s
        self.last_s = now

    def current_rps(self, now: float) -> float:
        return self.rate_rps * math.exp(-max(now - self.last_s, 0.0) / self.tau_s)


class BudgetTracker:
    """Carbon spent per model and per tenant in the current period, for the carbon-budget policy.

    Periods start at ``start_s`` (default: the first charge) and roll over every ``period_s``.
    """

    def __init__(self, budgets_g: Mapping[str, float], period_s: float, tenants_g: Mapping[str, float] | None = None,
                 start_s: float | None = None) -> None:
        if not period_s > 0:
            raise BadRequest(f"budget period must be > 0 s, got {period_s}")
        self.budgets_g = dict(budgets_g)
        self.tenants_g = dict(tenants_g or {})
        self.period_s = period_s
        self._start = start_s
        self.spent_g: dict[str, float] = {}
        self.tenant_spent_g: dict[str, float] = {}

    def add(self, model: str, carbon_g: float, now: float, tenant: str | None = None) -> None:
        if self._start is None:
            self._start = now
        if now - self._start >= self.period_s:
            self._start += self.period_s * math.floor((now - self._start) / self.period_s)
            self.spent_g, self.tenant_spent_g = {}, {}
        self.spent_g[model] = self.spent_g.get(model, 0.0) + carbon_g
        if tenant is not None:
            self.tenant_spent_g[tenant] = self.tenant_spent_g.get(tenant, 0.0) + carbon_g

    def states(self) -> dict[str, BudgetState]:
        return {m: BudgetState(self.spent_g.get(m, 0.0), b) for m, b in self.budgets_g.items()}

    def tenant_states(self) -> dict[str, BudgetState]:
        return {t: BudgetState(self.tenant_spent_g.get(t, 0.0), b) for t, b in self.tenants_g.items()}
