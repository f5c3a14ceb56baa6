"""Carbon budgets per tenant: calendar periods, the actions in order, alerts once per level, ledger seeding."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tenants.budgets import TenantBudgets, period_bounds
from tenants.keys import KeyLimits
from tenants.settings import BudgetActions


def ts(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp()


def test_period_bounds_are_utc_calendar_periods():
    now = ts("2026-11-18T15:00:00")  # a Wednesday
    assert period_bounds("day", now) == (ts("2026-11-18T00:00:00"), ts("2026-11-19T00:00:00"))
    assert period_bounds("week", now) == (ts("2026-11-16T00:00:00"), ts("2026-11-23T00:00:00"))
    assert period_bounds("month", now) == (ts("2026-11-01T00:00:00"), ts("2026-12-01T00:00:00"))
    assert period_bounds("month", ts("2026-12-31T23:00:00"))[1] == ts("2027-01-01T00:00:00")


def test_actions_fire_in_order_and_alerts_once_per_level():
    alerts = []
    now = [ts("2026-11-18T12:00:00")]
    budgets = TenantBudgets(BudgetActions(), alert=alerts.append, clock=lambda: now[0])
    limits = KeyLimits(budget_g=10.0, budget_period="day")
    seen = []
    for _ in range(12):
        status = budgets.status("a", limits, deferrable=True)
        seen.append((status.action, round(status.remaining_g, 6)))
        budgets.add("a", 1.0)
    actions = [a for a, _ in seen]
    assert actions == ["ok"] * 8 + ["cheaper-variant"] + ["defer"] + ["reject"] * 2
    assert [a["level"] for a in alerts] == [0.5, 0.8, 1.0]
    assert budgets.status("a", limits).action == "reject"
    assert budgets.status("a", limits).remaining_g == 0
    assert budgets.status("b", KeyLimits()) is None  # no budget: nothing to do
    now[0] = ts("2026-11-19T00:00:01")  # a new day: spent starts again
    assert budgets.status("a", limits).action == "ok"


def test_not_deferrable_work_skips_the_defer_step():
    budgets = TenantBudgets(BudgetActions(), clock=lambda: ts("2026-11-18T12:00:00"))
    limits = KeyLimits(budget_g=10.0, budget_period="day")
    budgets.status("a", limits)
    budgets.add("a", 9.5)
    assert budgets.status("a", limits).action == "cheaper-variant"
    assert budgets.status("a", limits, deferrable=True).action == "defer"


def test_spent_comes_from_the_ledger_and_survives_a_restart():
    calls = []

    def spent_since(tenant, since_s):
        calls.append((tenant, since_s))
        return 7.0

    budgets = TenantBudgets(BudgetActions(), spent_since, clock=lambda: ts("2026-11-18T12:00:00"))
    status = budgets.status("a", KeyLimits(budget_g=10.0, budget_period="month"))
    assert status.spent_g == 7.0 and status.remaining_g == pytest.approx(3.0)
    assert calls == [("a", ts("2026-11-01T00:00:00"))]


def test_zero_budget_rejects_at_once():
    budgets = TenantBudgets(BudgetActions(), clock=lambda: ts("2026-11-18T12:00:00"))
    status = budgets.status("a", KeyLimits(budget_g=0.0))
    assert status.action == "reject" and status.parameters()["budget_used_ratio"] == 1.0
