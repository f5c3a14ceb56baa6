"""Reads what deferrable jobs saved by time-shifting from the ledger's ``jobs`` table (issue 15).

The jobs scheduler books each finished job once (``energy/ledger.py`` ``record_job``): its actual
carbon and the counterfactual, the same requests run at submission on the same pool. Jobs carry no
tenant yet, so a tenant's report has no time-shift figure.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from reports.savings import TimeShiftSavings
from wattgate.errors import DependencyError


def read_time_shift(ledger_path: str | Path, start_s: float, end_s: float, tenant: str | None = None) -> TimeShiftSavings | None:
    """Deferrable jobs finished in ``[start_s, end_s)`` with their carbon and counterfactual; None when there are none
    (or for a tenant: jobs are not attributed to tenants)."""
    if tenant is not None:
        return None
    try:
        conn = sqlite3.connect(f"file:{Path(ledger_path)}?mode=ro", uri=True)
        try:
            if conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='jobs'").fetchone() is None:
                return None
            jobs, actual_g, counterfactual_g = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(carbon_g), 0), COALESCE(SUM(counterfactual_carbon_g), 0) FROM jobs "
                "WHERE carbon_g IS NOT NULL AND counterfactual_carbon_g IS NOT NULL AND time_s >= ? AND time_s < ?",
                (start_s, end_s),
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise DependencyError(f"cannot read deferrable jobs from the ledger at {ledger_path}: {exc}") from exc
    return TimeShiftSavings(jobs, actual_g, counterfactual_g) if jobs else None
