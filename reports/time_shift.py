"""What deferrable jobs saved by time-shifting, from the ledger's ``jobs`` table (issue 15).

The jobs scheduler books each finished job once (``energy/ledger.py`` ``record_job``): its actual
carbon and the counterfactual, the same requests run at submission on the same pool. Jobs carry no
tenant yet, so a tenant's report has no time-shift figure.
"""

from __future__ import annotations

from energy.ledger import EnergyLedger
from reports.savings import TimeShiftSavings


def read_time_shift(ledger: EnergyLedger, start_s: float, end_s: float, tenant: str | None = None) -> TimeShiftSavings | None:
    """Deferrable jobs finished in ``[start_s, end_s)`` with their carbon and counterfactual; None when there are none
    (or for a tenant: jobs are not attributed to tenants)."""
    if tenant is not None:
        return None
    jobs, actual_g, counterfactual_g = ledger.shifted(start_s, end_s)
    return TimeShiftSavings(jobs, actual_g, counterfactual_g) if jobs else None
