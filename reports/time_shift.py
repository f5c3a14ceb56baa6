"""What deferrable jobs saved by time-shifting, from the ledger's ``jobs`` table (issue 15).

The jobs scheduler books each finished job once (``energy/ledger.py`` ``record_job``): its actual
carbon and the counterfactual, the same requests run at submission on the same pool, under the
tenant of the key that submitted it (none with auth off), so a tenant's report has its own figure.
"""

from __future__ import annotations

from energy.ledger import EnergyLedger
from reports.savings import TimeShiftSavings


def read_time_shift(ledger: EnergyLedger, start_s: float, end_s: float, tenant: str | None = None) -> TimeShiftSavings | None:
    """Deferrable jobs finished in ``[start_s, end_s)`` (of ``tenant`` when given) with their carbon and
    counterfactual; None when there are none."""
    jobs, actual_g, counterfactual_g = ledger.shifted(start_s, end_s, tenant)
    return TimeShiftSavings(jobs, actual_g, counterfactual_g) if jobs else None
