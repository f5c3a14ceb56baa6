"""SCI parts, daily trends and top consumers from known ledger rows."""

from __future__ import annotations

import pytest

from energy.carbon import J_PER_KWH
from reports.figures import NO_TENANT, daily_trends, sci_by, sci_row, tenant_key, top_consumers

from report_fakes import T0, row


def test_sci_parts_are_energy_weighted_and_reassemble_the_ledger_carbon():
    rows = [
        row(0, pool="fr-x86", active_j=0.02, idle_j=0.01),  # 0.03 J at 50 g/kWh
        row(1, pool="de-x86", active_j=0.06, idle_j=0.03, measured=True),  # 0.09 J at 400 g/kWh, RAPL
        row(2, pool="de-x86", known=False),  # no intensity reading: in E, M and R only
    ]
    sci = sci_row("all", rows)
    assert sci.requests == 3 and sci.carbon_unknown_requests == 1
    assert sci.energy_j == pytest.approx(0.15) and sci.energy_kwh == pytest.approx(0.15 / J_PER_KWH)
    assert sci.measured_share == pytest.approx(0.09 / 0.15)
    assert sci.intensity_g_per_kwh == pytest.approx((0.03 * 50 + 0.09 * 400) / 0.12)
    assert sci.pue == pytest.approx(1.2)
    known_kwh = 0.12 / J_PER_KWH
    assert sci.operational_g == pytest.approx(known_kwh * sci.pue * sci.intensity_g_per_kwh)  # O = E x PUE x I
    assert sci.embodied_g == pytest.approx(3e-7)
    assert sci.carbon_g == pytest.approx(sum(r.carbon_g for r in rows[:2]))
    assert sci.sci_g_per_request == pytest.approx(sci.carbon_g / 2)
    assert sci.energy_methods == ("cpu-time-model (modelled)", "rapl (measured)")
    assert sci.intensity_sources == ("none", "static/static/average-lca")


def test_a_group_with_no_reading_has_no_sci_rather_than_zero():
    sci = sci_row("x", [row(0, known=False)])
    assert sci.sci_g_per_request is None and sci.intensity_g_per_kwh is None and sci.carbon_g == 0


def test_groups_split_every_request_once():
    rows = [row(i, tenant=("a", "b", None)[i % 3]) for i in range(30)]
    groups = sci_by(rows, tenant_key)
    assert [g.key for g in groups] == [NO_TENANT, "a", "b"]
    assert sum(g.requests for g in groups) == 30
    assert sum(g.energy_j for g in groups) == pytest.approx(sum(r.energy_j for r in rows))


def test_daily_trends_per_1k_requests():
    rows = [row(i, active_j=0.02, idle_j=0.0) for i in range(4)]
    rows += [row(i, time_s=T0 + 86400 + i, active_j=0.05, idle_j=0.0, known=i % 2 == 0) for i in range(2)]
    day1, day2 = daily_trends(rows)
    assert (day1.requests, day2.requests) == (4, 2)
    assert day1.energy_j_per_1k_requests == pytest.approx(20.0)
    assert day2.energy_j_per_1k_requests == pytest.approx(50.0)
    assert day2.carbon_g_per_1k_requests == pytest.approx(1000 * rows[4].carbon_g)  # the one with a reading


def test_top_consumers_rank_by_energy_with_shares():
    rows = [row(0, pool="gb-arm", active_j=0.5), row(1, pool="fr-x86", active_j=0.1), row(2, pool="fr-x86", active_j=0.1)]
    top = top_consumers(rows, lambda r: r.pool, n=1)
    assert [(c.key, c.requests) for c in top] == [("gb-arm", 1)]
    assert top[0].energy_share == pytest.approx(0.51 / 0.73)
