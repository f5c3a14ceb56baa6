"""Stand-ins the batcher tests share: an energy account that charges each batch one joule."""

from __future__ import annotations

from energy.attribution import RequestEnergy


class OneJoulePerBatch:
    """Charges each batch one joule, split by work units (the attributor's interface)."""

    def begin_batch(self):
        return None

    def charge_batch(self, units, token=None):
        total = sum(units)
        return [RequestEnergy(u / total, u / total, 0.0, "test", False, len(units), u / total) for u in units]
