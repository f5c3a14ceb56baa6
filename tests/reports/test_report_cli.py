"""`wattgate report` end to end on a real ledger file: the files, their totals against the ledger's, and bad input."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from energy.ledger import EnergyLedger
from routing.intensity.traces import load_trace
from wattgate.cli import main

from report_fakes import PUE, REGION, T0, card, row, write_cards, write_ledger, write_settings

POOLS = ("fr-x86", "de-x86", "gb-arm")


def ledger_rows():
    rows = [row(i, pool=POOLS[i % 3], tenant=("acme", "beta", None)[i % 4 % 3], cache="hit" if i % 5 == 0 else "miss",
                active_j=0.001 if i % 5 == 0 else 0.02 + 0.001 * (i % 7), known=i % 17 != 0, measured=i % 11 == 0,
                model=("digits", "text")[i % 2]) for i in range(400)]
    rows += [row(1000 + i, model="legacy", time_s=T0 + 86400 * 3 + i) for i in range(4)]
    rows += [row(2000, time_s=T0 - 86400 * 30)]  # Q3: outside the period
    return rows


@pytest.fixture
def setup(tmp_path):
    db = write_ledger(tmp_path / "ledger.sqlite", ledger_rows(), [("startup", 36.0, "cpu-time-model", False, T0 + 1)])
    repo = write_cards(tmp_path / "repo", [
        card("digits", variants={"fp32": ({"accuracy": 0.97}, 0.01), "int8": ({"accuracy": 0.96}, 0.004)}),
        card("legacy", floor={"accuracy": 0.99}, description="the old digits model"),
    ])
    return tmp_path, db, write_settings(tmp_path, repo=repo, ledger=db)


def report(config, out, *extra) -> int:
    return main(["report", "--period", "2026-Q4", "--out", str(out), "--config", str(config), *extra])


def test_report_totals_reconcile_with_the_ledger(setup):
    tmp, db, config = setup
    assert report(config, tmp / "out") == 0
    figures = json.loads((tmp / "out" / "report.json").read_text())
    start, end = datetime(2026, 10, 1, tzinfo=timezone.utc).timestamp(), datetime(2027, 1, 1, tzinfo=timezone.utc).timestamp()
    with EnergyLedger(db, background=False) as ledger:
        for group, key in (("model", "by_model"), ("tenant", "by_tenant"), ("region", "by_region")):
            # The ledger holds nothing after the period, so from its start on is the period (the Q3 row is before it).
            expected = {(r[group] or "(none)"): r for r in ledger.totals(since_s=start, group_by=[group])}
            assert set(figures[key]) == set(expected)
            for name, got in figures[key].items():
                want = expected[name]
                assert got["requests"] == want["requests"]
                assert got["energy_j"] == pytest.approx(want["energy_j"], rel=1e-12)
                assert got["carbon_g"] == pytest.approx(want["carbon_g"], rel=1e-12)
                assert got["embodied_g"] == pytest.approx(want["embodied_g"], rel=1e-12)
                assert got["carbon_unknown_requests"] == want["carbon_unknown_requests"]
            # and the groups add up to the period's total
            assert sum(g["requests"] for g in figures[key].values()) == figures["total"]["requests"] == 404
            assert sum(g["energy_j"] for g in figures[key].values()) == pytest.approx(figures["total"]["energy_j"], rel=1e-12)
            assert sum(g["carbon_g"] for g in figures[key].values()) == pytest.approx(figures["total"]["carbon_g"], rel=1e-12)
        (total,) = ledger.totals(since_s=start)
    assert figures["total"]["energy_j"] == pytest.approx(total["energy_j"], rel=1e-12)
    assert figures["accounts"] == [{"kind": "startup", "pool": None, "method": "cpu-time-model", "entries": 1, "energy_j": 36.0}]
    md = (tmp / "out" / "report.md").read_text()
    assert f"| legacy | 4 | {4 * 0.03 / 3.6e6:.4g} |" in md  # the per-model SCI row: group, R_requests, E_kwh
    assert "| startup | - | cpu-time-model | 1 | 1e-05 |" in md
    assert all(r.time_s < end for r in ledger_rows())


def test_report_files_are_self_contained_with_plots(setup):
    tmp, _, config = setup
    out = tmp / "out"
    assert report(config, out) == 0
    html = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', html)
    assert len(images) == 4 and "http" not in html and "<script" not in html
    for name in images:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    for heading in ("## SCI (ISO/IEC 21031): (E x I + M) per R", "## Trends", "### By routing, against round-robin",
                    "### By time-shifting (deferrable jobs)", "### By the cache", "## Top energy consumers",
                    "## Energy anomalies", "### digits version 1", "## Retirement candidates"):
        assert heading in md
    assert "n/a: no deferrable jobs in the period" in md
    assert "- purpose: reads handwritten digits" in md and "-60% energy vs fp32" in md
    assert re.search(r"\| legacy \| 4 \|.*below its quality floor", md)
    assert "### text version" not in md  # no card: no impact statement


def test_tenant_report_holds_only_its_requests(setup):
    tmp, _, config = setup
    assert report(config, tmp / "out", "--tenant", "beta") == 0
    figures = json.loads((tmp / "out" / "report.json").read_text())
    assert list(figures["by_tenant"]) == ["beta"] and figures["accounts"] == []
    assert figures["total"]["requests"] == sum(1 for r in ledger_rows() if r.tenant == "beta" and r.time_s >= T0 - 86400)


@pytest.mark.parametrize(("args", "message"), [
    (["--period", "2026-Q5"], "does not parse"),
    (["--period", "2026-13"], "does not parse"),
    (["--period", "2027-Q1"], "no ledger records in period 2027-Q1"),
    (["--period", "2026-Q4", "--tenant", "nobody"], "for tenant 'nobody'"),
    (["--period", "2026-Q4", "--retire-below-requests-per-day", "-1"], "must be >= 0"),
])
def test_bad_input_exits_2_with_a_clear_message(setup, capsys, args, message):
    tmp, _, config = setup
    assert main(["report", *args, "--out", str(tmp / "out"), "--config", str(config)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp / "out" / "report.md").exists()


def test_missing_ledger_exits_2(tmp_path, capsys):
    assert main(["report", "--period", "2026-Q4", "--out", str(tmp_path), "--db", str(tmp_path / "none.sqlite")]) == 2
    assert "no ledger at" in capsys.readouterr().err


def test_routing_counterfactual_from_a_replayed_history(tmp_path):
    """Intensity traces replayed: the counterfactual reads each pool's region at the request's own time."""
    t0 = datetime(2020, 3, 2, tzinfo=timezone.utc)
    traces = {}
    for region, base in (("FR", 40.0), ("DE", 300.0), ("GB", 180.0)):
        lines = ["datetime_utc,carbon_intensity_g_per_kwh"]
        lines += [f"{(t0 + timedelta(minutes=30 * k)).strftime('%Y-%m-%dT%H:%M:%SZ')},{base + 10 * k}" for k in range(48)]
        traces[region] = tmp_path / f"{region}.csv"
        traces[region].write_text("\n".join(lines) + "\n")
    rows = [row(i, time_s=t0.timestamp() + 1800 * i + 60, pool="fr-x86") for i in range(40)]
    db = write_ledger(tmp_path / "ledger.sqlite", rows)
    config = write_settings(tmp_path, repo=tmp_path / "repo", ledger=db, intensity={
        "provider": "replay", "replay": {"files": {k: str(v) for k, v in traces.items()}}})
    assert main(["report", "--period", "2020-03-02", "--out", str(tmp_path / "out"), "--config", str(config)]) == 0
    loaded = {region: load_trace(path, region=region) for region, path in traces.items()}
    expected = sum(
        r.energy_j / 3.6e6 / 3 * sum(loaded[REGION[p]].at(datetime.fromtimestamp(r.time_s, timezone.utc)) * PUE[p] for p in PUE)
        - r.operational_g for r in rows)
    figures = json.loads((tmp_path / "out" / "report.json").read_text())
    assert figures["carbon_saved_g"]["routing"] == pytest.approx(expected, rel=1e-9)
    assert "regions DE, FR, GB" in (tmp_path / "out" / "report.md").read_text()
