"""Prometheus series for energy and carbon, fed from ledger records and the attributor's books.

Per replica: counters of energy (``kind="active|idle"``: what a request's own run added, and its
share of idle power; sum over ``kind`` for the total), carbon and requests by
model/version/variant/region/hardware, a histogram of energy per request, the attributor's
metered/start-up/unattributed/pending joules, requests whose carbon is unknown (no intensity), and
joules per 1,000 requests over a sliding window. ``merge()`` sums gauges across replicas, which
is right for the window's energy and request gauges but not for their ratio: after merging, call
:func:`recompute_joules_per_1k` to derive the ratio from the summed parts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable

from energy.attribution import AttributionTotals
from energy.ledger_record import LedgerRecord
from wattgate.metrics import MetricsRegistry

LABELS = ("model", "version", "variant", "region", "hardware")
WINDOW_LABELS = ("model", "variant")

JOULES_PER_1K = "wattgate_joules_per_1k_requests"
WINDOW_ENERGY = "wattgate_window_energy_joules"
WINDOW_REQUESTS = "wattgate_window_requests"


class EnergyMetrics:
    def __init__(self, registry: MetricsRegistry, *, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.window_s = window_s
        self._clock = clock
        self.energy = registry.counter(
            "wattgate_energy_joules_total", "Energy charged to requests (J), by kind: active (the request's own run) "
            "or idle (its share of idle power)", (*LABELS, "kind"),
        )
        self.carbon_unknown = registry.counter(
            "wattgate_carbon_unknown_requests_total", "Requests whose region had no intensity reading", LABELS
        )
        self.startup = registry.counter(
            "wattgate_startup_energy_joules_total", "Energy metered before a replica was ready (J); no request's", ("method",)
        )
        self.carbon = registry.counter("wattgate_carbon_grams_total", "Carbon (SCI: operational + embodied) of requests (gCO2eq)", LABELS)
        self.requests = registry.counter("wattgate_requests_total", "Requests with an energy record", LABELS)
        self.request_energy = registry.histogram("wattgate_request_energy_joules", "Energy per request (J)", LABELS)
        self.metered = registry.counter("wattgate_metered_energy_joules_total", "Energy metered by replica meters (J)", ("method",))
        self.unattributed = registry.counter(
            "wattgate_unattributed_energy_joules_total", "Metered energy written off without a request to charge (J)", ("method",)
        )
        self.pending = registry.gauge("wattgate_pending_energy_joules", "Metered energy waiting for the next batch (J)", ("method",))
        self.per_1k = registry.gauge(JOULES_PER_1K, "Joules per 1,000 requests over the sliding window", WINDOW_LABELS)
        self.window_energy = registry.gauge(WINDOW_ENERGY, "Energy of requests in the sliding window (J)", WINDOW_LABELS)
        self.window_requests = registry.gauge(WINDOW_REQUESTS, "Requests in the sliding window", WINDOW_LABELS)
        self._lock = threading.Lock()
        self._window: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self._window_j: dict[tuple[str, str], float] = {}  # running sums: a scrape costs O(expired), not O(window)
        self._seen = {"metered": {}, "written_off": {}, "startup": {}}

    def observe(self, record: LedgerRecord) -> None:
        """Per request: the counters and histogram now; the window's gauges on :meth:`refresh`."""
        labels = {k: getattr(record, k) for k in LABELS}
        series = self.carbon.key(**labels)  # one key for three families
        active_j = min(record.active_j, record.energy_j)
        self.energy.inc(active_j, **labels, kind="active")
        self.energy.inc(record.energy_j - active_j, **labels, kind="idle")  # the two always sum to energy_j
        if record.carbon_g is None:
            self.carbon_unknown.inc_key(series, 1.0)
        else:
            self.carbon.inc_key(series, record.carbon_g)
        self.requests.inc_key(series, 1.0)
        self.request_energy.observe_key(series, record.energy_j)
        key = (record.model, record.variant)
        now = self._clock()
        with self._lock:
            q = self._window.get(key)
            if q is None:
                q = self._window[key] = deque()
            q.append((now, record.energy_j))
            self._window_j[key] = self._window_j.get(key, 0.0) + record.energy_j
            self._expire(key, now - self.window_s)  # memory stays bounded by the window

    def refresh(self) -> None:
        """Drop observations older than the window and set its gauges (call before a scrape)."""
        horizon = self._clock() - self.window_s
        with self._lock:
            for key in self._window:
                self._update(key, horizon)

    def _expire(self, key: tuple[str, str], horizon: float) -> None:
        """O(expired) per call: the window keeps a running sum instead of re-adding itself."""
        q = self._window[key]
        while q and q[0][0] < horizon:
            self._window_j[key] -= q.popleft()[1]

    def _update(self, key: tuple[str, str], horizon: float) -> None:
        self._expire(key, horizon)
        q = self._window[key]
        model, variant = key
        energy_j = max(0.0, self._window_j[key]) if q else 0.0
        self._window_j[key] = energy_j
        self.window_energy.set(energy_j, model=model, variant=variant)
        self.window_requests.set(len(q), model=model, variant=variant)
        self.per_1k.set(1000.0 * energy_j / len(q) if q else 0.0, model=model, variant=variant)

    def observe_attribution(self, totals: AttributionTotals) -> None:
        """Mirror an attributor's books; counters advance by what changed since the last call."""
        method = totals.method
        with self._lock:
            for key, counter, value in (
                ("metered", self.metered, totals.metered_j),
                ("written_off", self.unattributed, totals.written_off_j),
                ("startup", self.startup, totals.startup_j),
            ):
                seen = self._seen[key].get(method)
                delta = value - (seen or 0.0)
                if delta > 0 or seen is None:  # a series from the first scrape on, even at 0 J
                    counter.inc(max(delta, 0.0), method=method)
                    self._seen[key][method] = value
        self.pending.set(totals.pending_j, method=method)


def recompute_joules_per_1k(merged: dict) -> dict:
    """Fix the per-1k gauge of a merged snapshot: sum(energy) / sum(requests), not a sum of ratios."""
    energy = {tuple(k): v for k, v in merged.get(WINDOW_ENERGY, {}).get("series", [])}
    requests = {tuple(k): v for k, v in merged.get(WINDOW_REQUESTS, {}).get("series", [])}
    if JOULES_PER_1K in merged:
        merged[JOULES_PER_1K]["series"] = [
            [list(k), 1000.0 * energy.get(k, 0.0) / n if n else 0.0] for k, n in sorted(requests.items())
        ]
    return merged
