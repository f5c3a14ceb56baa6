"""Reports: the energy and carbon report for a period (``wattgate report``), from the ledger and the intensity history."""
