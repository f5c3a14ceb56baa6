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
from typing import Callable, Iterable

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
        # (time, J, requests) per group of requests; running sums: a scrape costs O(expired), not O(window)
        self._window: dict[tuple[str, str], deque[tuple[float, float, int]]] = {}
        self._window_j: dict[tuple[str, str], float] = {}
        self._window_n: dict[tuple[str, str], int] = {}
        self._seen = {"metered": {}, "written_off": {}, "startup": {}}

    def observe(self, record: LedgerRecord) -> None:
        """One request: the counters and histogram now; the window's gauges on :meth:`refresh`."""
        self.observe_many([record])

    def observe_many(self, records: Iterable[LedgerRecord]) -> None:
        """A group of requests: summed per series first, so the label work is paid once per series."""
        groups: dict[tuple, list] = {}
        for r in records:
            key = (r.model, r.version, r.variant, r.region, r.hardware)
            g = groups.get(key)
            if g is None:
                g = groups[key] = [0.0, 0.0, 0.0, 0, []]  # active J, idle J, gCO2e, carbon unknown, energies
            active_j = min(r.active_j, r.energy_j)
            g[0] += active_j
            g[1] += r.energy_j - active_j  # active and idle always sum to energy_j
            if r.carbon_g is None:
                g[3] += 1
            else:
                g[2] += r.carbon_g
            g[4].append(r.energy_j)
        now = self._clock()
        window: dict[tuple[str, str], list[float]] = {}
        for series, (active_j, idle_j, carbon_g, unknown, energies) in groups.items():
            self.energy.inc_key((*series, "active"), active_j)
            self.energy.inc_key((*series, "idle"), idle_j)
            if unknown:
                self.carbon_unknown.inc_key(series, float(unknown))
            if unknown < len(energies):
                self.carbon.inc_key(series, carbon_g)
            self.requests.inc_key(series, float(len(energies)))
            self.request_energy.observe_many_key(series, energies)
            w = window.setdefault((series[0], series[2]), [0.0, 0])
            w[0] += sum(energies)
            w[1] += len(energies)
        with self._lock:
            for key, (energy_j, n) in window.items():
                q = self._window.get(key)
                if q is None:
                    q = self._window[key] = deque()
                q.append((now, energy_j, n))
                self._window_j[key] = self._window_j.get(key, 0.0) + energy_j
                self._window_n[key] = self._window_n.get(key, 0) + n
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
            _, energy_j, n = q.popleft()
            self._window_j[key] -= energy_j
            self._window_n[key] -= n

    def _update(self, key: tuple[str, str], horizon: float) -> None:
        self._expire(key, horizon)
        q = self._window[key]
        model, variant = key
        energy_j = max(0.0, self._window_j[key]) if q else 0.0
        n = self._window_n[key] if q else 0
        self._window_j[key], self._window_n[key] = energy_j, n
        self.window_energy.set(energy_j, model=model, variant=variant)
        self.window_requests.set(n, model=model, variant=variant)
        self.per_1k.set(1000.0 * energy_j / n if n else 0.0, model=model, variant=variant)

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
