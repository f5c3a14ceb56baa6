"""Ledger: background batched writes, restart, totals, CSV/Parquet export round trip, the CLI."""

from __future__ import annotations

import argparse
import io
import json
import sqlite3
import threading
import time

import pytest

from energy import cli
from energy.ledger import EnergyLedger, LedgerRecord
from energy.ledger_export import read_export
from wattgate.errors import BadRequest


def record(i: int, **over) -> LedgerRecord:
    base = dict(
        time_s=1_700_000_000.0 + i * 0.125,
        request_id=f"req-{i}",
        model="digits",
        version="1",
        variant=("fp32", "int8")[i % 2],
        region=("eu-north", "us-east")[i % 3 == 0],
        hardware="x86",
        pool="cpu-eu",
        batch_size=1 + i % 8,
        latency_ms=1.5 + i / 7,
        energy_j=0.01 + i / 3000,
        energy_method="cpu-time-model",
        energy_measured=bool(i % 5 == 0),
        intensity_g_per_kwh=42.0 + i,
        carbon_g=1e-6 * (i + 1) / 3,
        operational_g=1e-6 * i / 3,
        embodied_g=1e-6 / 3,
        cache=("miss", "hit", "bypass", "off")[i % 4],
        tenant=None if i % 3 else f"tenant-{i % 2}",
        route_reason=None if i % 2 else "lowest-intensity",
    )
    base.update(over)
    return LedgerRecord(**base)


def test_clean_shutdown_loses_nothing_and_restart_reads_back(tmp_path):
    db = tmp_path / "var" / "ledger.sqlite"
    ledger = EnergyLedger(db, flush_interval_s=60.0, flush_size=10_000)  # nothing flushes on its own
    recs = [record(i) for i in range(257)]
    for r in recs:
        assert ledger.append(r)
    assert ledger.pending() == 257
    ledger.close()
    ledger.close()  # idempotent
    with EnergyLedger(db) as again:
        assert again.count() == 257
        assert again.records(limit=None) == recs
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_background_thread_writes_by_size_and_by_interval(tmp_path):
    with EnergyLedger(tmp_path / "l.sqlite", flush_interval_s=0.05, flush_size=5) as ledger:
        for i in range(5):
            ledger.append(record(i))
        deadline = time.monotonic() + 5
        while ledger.written < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.written == 5  # the size trigger
        ledger.append(record(5))
        while ledger.written < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ledger.written == 6  # the interval trigger
        assert ledger.pending() == 0


def test_full_queue_drops_and_counts_instead_of_blocking(tmp_path):
    ledger = EnergyLedger(tmp_path / "l.sqlite", background=False, max_pending=3)
    assert [ledger.append(record(i)) for i in range(5)] == [True, True, True, False, False]
    assert ledger.dropped == 2
    ledger.close()
    assert not ledger.append(record(9))  # after close: dropped, counted
    assert ledger.dropped == 3


def test_concurrent_appends_all_land(tmp_path):
    with EnergyLedger(tmp_path / "l.sqlite", flush_interval_s=0.01, flush_size=64) as ledger:
        def writer(k):
            for i in range(250):
                ledger.append(record(k * 1000 + i))

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ledger.flush()
        assert ledger.count() == 1000
        assert len({r.request_id for r in ledger.records(limit=None)}) == 1000


def test_totals_group_and_filter(tmp_path):
    with EnergyLedger(tmp_path / "l.sqlite", background=False) as ledger:
        recs = [record(i) for i in range(40)]
        for r in recs:
            ledger.append(r)
        (overall,) = ledger.totals()
        assert overall["requests"] == 40
        assert overall["energy_j"] == pytest.approx(sum(r.energy_j for r in recs))
        assert overall["carbon_g"] == pytest.approx(sum(r.carbon_g for r in recs))
        rows = ledger.totals(group_by=("variant", "region"))
        assert sum(r["requests"] for r in rows) == 40
        fp32_eu = [r for r in rows if (r["variant"], r["region"]) == ("fp32", "eu-north")][0]
        expect = [r for r in recs if (r.variant, r.region) == ("fp32", "eu-north")]
        assert fp32_eu["requests"] == len(expect)
        assert fp32_eu["energy_j"] == pytest.approx(sum(r.energy_j for r in expect))
        since = recs[30].time_s
        assert ledger.count(since_s=since) == 10
        assert [r.request_id for r in ledger.records(limit=3, since_s=since)] == ["req-30", "req-31", "req-32"]
        with pytest.raises(BadRequest):
            ledger.totals(group_by=("energy_j; DROP TABLE ledger",))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_round_trips(tmp_path, fmt):
    recs = [record(i) for i in range(123)] + [record(999, tenant="", route_reason="a,b \"quoted\"\nline")]
    with EnergyLedger(tmp_path / "l.sqlite", background=False) as ledger:
        for r in recs:
            ledger.append(r)
        out = tmp_path / f"out.{fmt}"
        assert ledger.export(out, fmt=fmt) == len(recs)
        back = read_export(out, fmt)
        # CSV cannot tell an empty tenant from no tenant: it reads back as None.
        expect = recs if fmt == "parquet" else recs[:-1] + [record(999, tenant=None, route_reason="a,b \"quoted\"\nline")]
        assert back == expect
        assert ledger.export(tmp_path / f"since.{fmt}", fmt=fmt, since_s=recs[100].time_s) == 24  # 100..122 and 999
        with pytest.raises(BadRequest):
            ledger.export(tmp_path / "x.json", fmt="json")


def test_record_validates_cache_state():
    with pytest.raises(ValueError):
        record(0, cache="maybe")


def _cli(argv):
    parser = argparse.ArgumentParser(prog="wattgate")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    out = io.StringIO()
    rc = args.energy_cli(args, out=out)
    return rc, out.getvalue()


def test_cli_export_and_summary(tmp_path):
    db = tmp_path / "ledger.sqlite"
    recs = [record(i) for i in range(20)]
    with EnergyLedger(db, background=False) as ledger:
        for r in recs:
            ledger.append(r)
    rc, text = _cli(["ledger", "export", "--db", str(db), "--out", str(tmp_path / "e.parquet")])
    assert rc == 0 and "exported 20 records" in text and "parquet" in text
    assert read_export(tmp_path / "e.parquet", "parquet") == recs
    rc, text = _cli(["ledger", "export", "--db", str(db), "--out", str(tmp_path / "e.csv"), "--format", "csv"])
    assert rc == 0 and read_export(tmp_path / "e.csv", "csv") == recs
    rc, text = _cli(["ledger", "summary", "--db", str(db), "--group-by", "variant", "--json"])
    rows = json.loads(text)["requests"]
    assert rc == 0 and {r["variant"]: r["requests"] for r in rows} == {"fp32": 10, "int8": 10}
    rc, text = _cli(["ledger", "summary", "--db", str(db), "--group-by", ""])
    assert rc == 0 and text.splitlines()[0].split()[0] == "requests" and text.splitlines()[1].split()[0] == "20"
    rc, _ = _cli(["ledger", "summary", "--db", str(tmp_path / "missing.sqlite")])
    assert rc == 2 and not (tmp_path / "missing.sqlite").exists()


def test_records_and_accounts_between_since_and_until(tmp_path):
    with EnergyLedger(tmp_path / "l.sqlite", background=False) as ledger:
        for i in range(10):
            ledger.append(record(i))  # time_s = 1.7e9 + i/8
        for t in (10.0, 20.0, 30.0):
            ledger.record_account("startup", t, "cpu-time-model", False, time_s=t)
        got = ledger.records(limit=None, since_s=1_700_000_000.25, until_s=1_700_000_000.75)
        assert [r.request_id for r in got] == ["req-2", "req-3", "req-4", "req-5"]  # until is excluded
        assert [r.request_id for r in ledger.records(limit=None, until_s=1_700_000_000.25)] == ["req-0", "req-1"]
        assert ledger.accounts(since_s=15.0, until_s=30.0) == [{"kind": "startup", "pool": None, "method": "cpu-time-model", "entries": 1, "energy_j": 20.0}]


def test_idle_energy_is_booked_per_pool_and_an_old_accounts_table_gains_the_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)  # an accounts table from before per-pool idle energy
    con.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, time_s REAL NOT NULL, kind TEXT NOT NULL, "
                "energy_j REAL NOT NULL, method TEXT NOT NULL, measured INTEGER NOT NULL)")
    con.execute("INSERT INTO accounts (time_s, kind, energy_j, method, measured) VALUES (1, 'startup', 5, 'm', 0)")
    con.commit()
    con.close()
    with EnergyLedger(path, background=False) as ledger:
        ledger.record_account("idle", 2.0, "cpu-time-model", False, time_s=10.0, pool="fr-x86")
        ledger.record_account("idle", 3.0, "cpu-time-model", False, time_s=20.0, pool="fr-x86")
        ledger.record_account("idle", 1.0, "cpu-time-model", False, time_s=20.0, pool="de-x86")
        got = {(a["kind"], a["pool"]): a["energy_j"] for a in ledger.accounts()}
        assert got == {("startup", None): 5.0, ("idle", "de-x86"): 1.0, ("idle", "fr-x86"): 5.0}
        assert {(a["kind"], a["pool"]): a["energy_j"] for a in ledger.accounts(since_s=15.0)} == {
            ("idle", "de-x86"): 1.0, ("idle", "fr-x86"): 3.0}


def test_an_old_jobs_table_gains_the_tenant_column_and_keeps_its_rows(tmp_path):
    import sqlite3

    from energy.ledger_record import JobRecord

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)  # a schema-3 jobs table: jobs carried no tenant
    con.execute("CREATE TABLE jobs (job_id TEXT PRIMARY KEY, time_s REAL NOT NULL, model TEXT NOT NULL, version TEXT, "
                "state TEXT NOT NULL, decision TEXT NOT NULL, plan_reason TEXT NOT NULL, submitted_at TEXT NOT NULL, "
                "scheduled_for TEXT NOT NULL, deadline TEXT NOT NULL, region TEXT, expected_intensity_g_per_kwh REAL, "
                "requests INTEGER NOT NULL, energy_j REAL NOT NULL, carbon_g REAL, counterfactual_carbon_g REAL)")
    con.execute("INSERT INTO jobs VALUES ('old', 1, 'digits', '1', 'done', 'shifted', 'r', 's', 's', 'd', 'FR', 40, 2, 1, 1, 3)")
    con.execute("PRAGMA user_version=3")
    con.commit()
    con.close()
    with EnergyLedger(path, background=False) as ledger:
        ledger.record_job(JobRecord("new", 2.0, "digits", "1", "done", "shifted", "r", "s", "s", "d", "FR", 40.0, 2, 1.0,
                                    0.5, 2.5, "team-a"))
        assert [(j.job_id, j.tenant) for j in ledger.jobs()] == [("new", "team-a"), ("old", None)]
        assert ledger.shifted() == (2, 1.5, 5.5)
        assert ledger.shifted(tenant="team-a") == (1, 0.5, 2.5)
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 4


def test_quality_samples_sit_next_to_the_carbon_the_variant_saved(tmp_path):
    from energy.ledger_record import QualityRecord

    db = tmp_path / "ledger.sqlite"
    with EnergyLedger(db, background=False) as ledger:
        for i in range(20):
            ledger.append(record(i))
        for i, value in enumerate((1.0, 0.5)):  # two samples: 4 rows at 1.0, 2 rows at 0.5
            ledger.append_quality(QualityRecord(
                time_s=1_700_000_000.0 + i, request_id=f"req-{i}", model="digits", version="1", variant="int8",
                reference="fp32", metric="top1_agreement", value=value, rows=4 - 2 * i, energy_j=0.03, carbon_g=1e-6,
                served_energy_j=0.01, energy_method="cpu-time-model", accuracy=0.5 if i else None))
        (q,) = ledger.quality()
    assert (q["samples"], q["rows"], q["value_min"]) == (2, 6, 0.5)
    assert q["value_mean"] == pytest.approx(5 / 6) and q["guard_energy_j"] == pytest.approx(0.06)
    rc, text = _cli(["ledger", "summary", "--db", str(db), "--json"])
    (row,) = json.loads(text)["quality"]
    int8_carbon = sum(record(i).carbon_g for i in range(20) if i % 2)
    # The reference spent 3x the variant's energy on the same requests: the variant saved 2x its own carbon.
    assert row["carbon_g"] == pytest.approx(int8_carbon) and row["carbon_saved_g_est"] == pytest.approx(2 * int8_carbon)
    assert row["guard_carbon_g"] == pytest.approx(2e-6) and row["accuracy"] == 0.5
    rc, text = _cli(["ledger", "summary", "--db", str(db)])
    assert rc == 0 and "live quality of cheaper variants" in text and "top1_agreement" in text
