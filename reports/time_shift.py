"""Reads what deferrable jobs saved by time-shifting from the ledger, once the jobs scheduler records it (issue 15).

The jobs scheduler is to record each deferrable job's actual and counterfactual carbon ("had it run
at submission") on its ledger row. This reader expects a ``counterfactual_carbon_g`` column on the
``ledger`` table next to ``carbon_g``; until a ledger has that column (or has no such rows in the
period) there is nothing to read and the report says n/a.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from reports.savings import TimeShiftSavings
from wattgate.errors import DependencyError

COUNTERFACTUAL_COLUMN = "counterfactual_carbon_g"


def read_time_shift(ledger_path: str | Path, start_s: float, end_s: float, tenant: str | None = None) -> TimeShiftSavings | None:
    """Deferrable jobs in ``[start_s, end_s)`` (of ``tenant``) with their carbon and counterfactual; None when there are none."""
    try:
        conn = sqlite3.connect(f"file:{Path(ledger_path)}?mode=ro", uri=True)
        try:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(ledger)")}
            if COUNTERFACTUAL_COLUMN not in columns:
                return None
            sql = (f"SELECT COUNT(*), COALESCE(SUM(carbon_g), 0), COALESCE(SUM({COUNTERFACTUAL_COLUMN}), 0) FROM ledger "
                   f"WHERE {COUNTERFACTUAL_COLUMN} IS NOT NULL AND carbon_g IS NOT NULL AND time_s >= ? AND time_s < ?")
            params: tuple = (start_s, end_s)
            if tenant is not None:
                sql += " AND tenant = ?"
                params += (tenant,)
            jobs, actual_g, counterfactual_g = conn.execute(sql, params).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DependencyError(f"cannot read deferrable jobs from the ledger at {ledger_path}: {exc}") from exc
    return TimeShiftSavings(jobs, actual_g, counterfactual_g) if jobs else None
