"""Carbon budgets per tenant, in gCO2e per calendar period (UTC day, ISO week or month), and what to
do as one is spent: alert (50/80/100 %), serve a cheaper variant, defer deferrable work, reject.

Defer: a request marked ``parameters.deferrable: true`` past ``defer_at`` raises ``BudgetDeferred``.
Over HTTP it becomes a job of the tenant (``202`` and the job, see ``gateway/jobs_api.py``) due by
``defer_deadline_s``; where a job cannot be handed back (gRPC, or the jobs room off) it is what it
derives from, a 429 (gRPC: RESOURCE_EXHAUSTED) telling the client to submit it as a job.

What a tenant spent comes from the energy ledger, which every ingress replica writes (``spent_since``
is re-read every ``refresh_s``), plus what this replica charged since: the use shown lags the other
replicas by at most the ledger's flush interval plus ``refresh_s``, and survives a restart.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from tenants.keys import KeyLimits
from tenants.settings import BudgetActions
from wattgate.errors import TooManyRequests

ACTIONS = ("ok", "cheaper-variant", "defer", "reject")


def period_bounds(period: str, now_s: float) -> tuple[float, float]:
    """(start, end) in unix seconds of the UTC calendar period holding ``now_s``."""
    now = datetime.fromtimestamp(now_s, timezone.utc)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        start, end = day, day + timedelta(days=1)
    elif period == "week":
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget period {period!r}")
    return start.timestamp(), end.timestamp()


@dataclass(frozen=True)
class BudgetStatus:
    tenant: str
    budget_g: float
    spent_g: float
    period: str
    period_end_s: float
    action: str  # one of ACTIONS
    defer_deadline_s: float = 12 * 3600.0  # action "defer": the job's deadline, seconds from now

    @property
    def used_ratio(self) -> float:
        return math.inf if self.budget_g <= 0 else self.spent_g / self.budget_g

    @property
    def remaining_g(self) -> float:
        return max(0.0, self.budget_g - self.spent_g)

    def parameters(self) -> dict:
        """What every response of this tenant carries about its budget."""
        return {"budget_g": self.budget_g, "budget_period": self.period, "budget_remaining_g": self.remaining_g,
                "budget_used_ratio": self.used_ratio if math.isfinite(self.used_ratio) else 1.0,
                "budget_action": self.action}


def action_for(ratio: float, rules: BudgetActions, deferrable: bool) -> str:
    if ratio >= rules.reject_at:
        return "reject"
    if deferrable and ratio >= rules.defer_at:
        return "defer"
    if ratio >= rules.cheaper_at:
        return "cheaper-variant"
    return "ok"


class BudgetDeferred(TooManyRequests):
    """Deferrable work of a tenant past its defer level: run it later as a job, or refuse it (429)."""

    def __init__(self, message: str, retry_after_s: float = 1.0, tenant: str = "",
                 deadline_s: float = 12 * 3600.0) -> None:
        super().__init__(message, retry_after_s)
        self.tenant = tenant
        self.deadline_s = deadline_s  # the job's deadline, seconds from now (bounded by the forecast later)

    def __reduce__(self):
        return (type(self), (self.message, self.retry_after_s, self.tenant, self.deadline_s))


@dataclass
class _Spend:
    start_s: float
    ledger_g: float = 0.0  # from the ledger, all replicas, at the last refresh
    local_g: float = 0.0  # charged here since that refresh
    refreshed_s: float = -math.inf
    alerted: float = 0.0  # the highest alert level already sent this period


class TenantBudgets:
    def __init__(self, rules: BudgetActions, spent_since: Callable[[str, float], float] | None = None,
                 alert: Callable[[dict], None] | None = None, refresh_s: float = 2.0, clock=time.time) -> None:
        self.rules = rules
        self.spent_since = spent_since
        self.alert = alert
        self.refresh_s = refresh_s
        self.clock = clock
        self._spend: dict[str, _Spend] = {}
        self._limits: dict[str, KeyLimits] = {}

    def _current(self, tenant: str, limits: KeyLimits, now: float) -> _Spend:
        start, _ = period_bounds(limits.budget_period, now)
        spend = self._spend.get(tenant)
        if spend is None or spend.start_s != start:
            spend = self._spend[tenant] = _Spend(start)
        if self.spent_since is not None and now - spend.refreshed_s >= self.refresh_s:
            spend.ledger_g, spend.local_g, spend.refreshed_s = self.spent_since(tenant, start), 0.0, now
        return spend

    def status(self, tenant: str | None, limits: KeyLimits | None, deferrable: bool = False) -> BudgetStatus | None:
        """The tenant's budget now and the action it calls for; None when it has no budget."""
        if tenant is None or limits is None or limits.budget_g is None:
            return None
        self._limits[tenant] = limits
        now = self.clock()
        spend = self._current(tenant, limits, now)
        spent = spend.ledger_g + spend.local_g
        ratio = math.inf if limits.budget_g <= 0 else spent / limits.budget_g
        _, end = period_bounds(limits.budget_period, now)
        return BudgetStatus(tenant, float(limits.budget_g), spent, limits.budget_period, end,
                            action_for(ratio, self.rules, deferrable), self.rules.defer_deadline_s)

    def add(self, tenant: str | None, carbon_g: float) -> None:
        """A served request's carbon; sends an alert the first time a level is crossed this period."""
        limits = self._limits.get(tenant) if tenant is not None else None
        if limits is None or limits.budget_g is None or not math.isfinite(carbon_g) or carbon_g < 0:
            return
        spend = self._current(tenant, limits, self.clock())
        spend.local_g += carbon_g
        self._maybe_alert(tenant, limits, spend)

    def _maybe_alert(self, tenant: str, limits: KeyLimits, spend: _Spend) -> None:
        spent = spend.ledger_g + spend.local_g
        ratio = math.inf if limits.budget_g <= 0 else spent / limits.budget_g
        crossed = [level for level in self.rules.alert_at if ratio >= level and level > spend.alerted]
        if not crossed:
            return
        spend.alerted = max(crossed)
        for level in crossed:  # one request may cross several levels: each is announced, in order
            if self.alert is not None:
                self.alert({"tenant": tenant, "level": level, "spent_g": spent, "budget_g": limits.budget_g,
                            "period": limits.budget_period, "period_start_s": spend.start_s})

    def used_ratios(self) -> dict[str, float]:
        """Per tenant with a budget seen by this replica: spent / budget this period (for a gauge)."""
        out = {}
        for tenant, limits in self._limits.items():
            status = self.status(tenant, limits)
            if status is not None:
                out[tenant] = status.used_ratio if math.isfinite(status.used_ratio) else 1.0
        return out
