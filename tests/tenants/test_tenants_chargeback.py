"""Chargeback: `wattgate ledger summary --by tenant` with the energy each tenant's cache hits avoided."""

from __future__ import annotations

import argparse
import io
import json
from datetime import datetime, timezone

import pytest

from energy import cli
from energy.ledger import EnergyLedger, LedgerRecord

NOV = datetime(2026, 11, 10, tzinfo=timezone.utc).timestamp()
OCT = datetime(2026, 10, 10, tzinfo=timezone.utc).timestamp()


def row(n: int, tenant: str | None, cache: str, active_j: float, variant: str = "fp32", model: str = "digits",
        time_s: float = NOV) -> LedgerRecord:
    return LedgerRecord(
        time_s=time_s + n, request_id=f"r{n}", model=model, version="1", variant=variant, region="eu", hardware="x86",
        pool="cpu", batch_size=1, latency_ms=1.0, energy_j=active_j + 0.5, active_j=active_j, idle_j=0.5,
        energy_method="cpu-time-model", energy_measured=False, intensity_g_per_kwh=100.0, carbon_g=1e-4,
        operational_g=8e-5, embodied_g=2e-5, cache=cache, tenant=tenant, route_reason=None)


def summary(db, *args) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="wattgate")
    cli.register(parser.add_subparsers(dest="command"))
    parsed, out = parser.parse_args(["ledger", "summary", "--db", str(db), *args]), io.StringIO()
    return parsed.energy_cli(parsed, out=out), out.getvalue()


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with EnergyLedger(path, background=False) as ledger:
        for rec in [
            row(0, "team-a", "miss", 1.0), row(1, "team-a", "bypass", 3.0),  # digits/fp32 costs 2 J a request
            row(2, "team-b", "hit", 0.1), row(3, "team-b", "hit", 0.1), row(4, "team-b", "hit", 0.1),
            row(5, "team-a", "hit", 0.05, variant="int8"),  # int8 was computed only in October
            row(6, "team-a", "miss", 0.5, variant="int8", time_s=OCT),
            row(7, None, "hit", 0.0, model="never-computed"),
            row(8, "team-b", "hit", 0.1, time_s=OCT),  # outside the period
        ]:
            ledger.append(rec)
    return path


def test_summary_by_tenant_reports_energy_avoided_by_the_cache(db):
    rc, text = summary(db, "--by", "tenant", "--period", "2026-11", "--json")
    got = {r["tenant"]: r for r in json.loads(text)["requests"]}
    assert rc == 0 and set(got) == {None, "team-a", "team-b"}
    assert got["team-b"]["cache_hits"] == 3
    assert got["team-b"]["energy_avoided_j_est"] == pytest.approx(3 * 2.0 - 0.3)
    assert got["team-a"]["energy_avoided_j_est"] == pytest.approx(0.5 - 0.05)  # priced from October's int8
    assert got["team-a"]["cache_hits_unpriced"] == 0
    assert got[None]["energy_avoided_j_est"] == 0.0 and got[None]["cache_hits_unpriced"] == 1
    for r in got.values():  # what the tenant was charged is untouched by the estimate
        assert r["energy_j"] == pytest.approx(r["active_j"] + r["idle_j"])
    rc, text = summary(db, "--by", "tenant", "--period", "2026-11")
    header, *lines = text.splitlines()
    assert rc == 0 and "energy_avoided_j_est" in header and "cache_hits_unpriced" in header
    b = next(line for line in lines if line.startswith("team-b")).split()
    assert float(b[header.split().index("energy_avoided_j_est")]) == pytest.approx(5.7)


def test_one_total_and_other_groupings_carry_the_column_too(db):
    rc, text = summary(db, "--group-by", "", "--json")
    (total,) = json.loads(text)["requests"]
    # Whole ledger: fp32 and int8 costs from every computed request; 4 fp32 hits, 1 int8 hit, 1 unpriced.
    assert total["energy_avoided_j_est"] == pytest.approx(4 * 2.0 - 0.4 + 0.5 - 0.05)
    assert total["cache_hits_unpriced"] == 1
    rc, text = summary(db, "--group-by", "variant", "--period", "2026-11", "--json")
    by_variant = {r["variant"]: r["energy_avoided_j_est"] for r in json.loads(text)["requests"]}
    assert by_variant == pytest.approx({"fp32": 3 * 2.0 - 0.3, "int8": 0.45})
