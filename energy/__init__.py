"""Energy meters, per-request attribution, carbon (SCI) and the energy ledger."""
