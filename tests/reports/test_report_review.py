"""Anomalies over the period's rows, impact statements of production models, retirement candidates."""

from __future__ import annotations

import pytest

from energy.anomaly import EnergyAnomalyDetector
from reports.review import impact_statements, retirement_candidates, scan_anomalies

from report_fakes import card, row


def test_a_slower_version_behind_the_same_name_is_flagged_with_its_cause():
    normal = [row(i, active_j=0.02 * (1 + 0.01 * (i % 5))) for i in range(60)]
    hits = [row(60 + i, cache="hit", active_j=0.001) for i in range(5)]
    slower = [row(100 + i, version="2", active_j=0.06) for i in range(30)]
    scan = scan_anomalies(slower + hits + normal, EnergyAnomalyDetector())  # any order in: scanned in time order
    assert scan.observed == 95 and scan.skipped == 5
    (event,) = scan.events
    assert (event.model, event.variant, event.pool, event.state) == ("digits", "fp32", "fr-x86", "started")
    assert "variant changed" in event.cause and event.ratio > 1.3
    assert event.time_s >= slower[0].time_s


def test_steady_energy_is_not_an_anomaly_and_bad_rows_are_counted():
    rows = [row(i) for i in range(80)] + [row(80, active_j=float("nan"))]
    scan = scan_anomalies(rows, EnergyAnomalyDetector())
    assert scan.events == () and scan.ignored == 1


def test_impact_statement_per_production_card_compares_its_variants():
    cards = [card("digits", variants={"fp32": ({"accuracy": 0.97}, 0.010), "int8": ({"accuracy": 0.965}, 0.004)}),
             card("digits", "2", stage="staging"), card("text", stage="retired")]
    rows = [row(i) for i in range(3)] + [row(3, variant="int8", active_j=0.01)] + [row(4, version="2")]
    (s,) = impact_statements(rows, cards)
    assert (s.model, s.version, s.owner, s.purpose) == ("digits", "1", "vision-team", "reads handwritten digits")
    assert s.figures.requests == 4  # version 2's request is not this card's
    assert s.quality == {"accuracy": 0.97} and s.quality_floor == {"accuracy": 0.95}
    fp32, int8 = s.variants
    assert (fp32.variant, fp32.requests, fp32.profile_j_per_inference, fp32.profile_hardware) == ("fp32", 3, 0.010, "x86")
    assert (int8.variant, int8.requests, int8.profile_j_per_inference) == ("int8", 1, 0.004)
    assert int8.energy_j == pytest.approx(0.02)


def test_retirement_by_traffic_and_by_quality_below_floor():
    rows = [row(i, model="busy") for i in range(50)] + [row(100, model="quiet")]
    rows += [row(200 + i, model="weak") for i in range(50)] + [row(300, model="free", active_j=0.0, idle_j=0.0)]
    cards = [card("weak", floor={"accuracy": 0.99}), card("busy")]
    found = {c.model: c for c in retirement_candidates(rows, cards, days=2.0, below_requests_per_day=5)}
    assert set(found) == {"quiet", "weak"}  # "free" used no energy
    assert found["quiet"].requests_per_day == 0.5 and "0.5 requests/day < 5" in found["quiet"].reasons[0]
    assert found["weak"].reasons == ("version 1 below its quality floor: accuracy 0.97 < floor 0.99",)
