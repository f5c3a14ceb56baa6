"""Request arrival times within one simulated window: Poisson, or a two-state MMPP with bursts.

The MMPP alternates calm and burst periods (exponential lengths, bursts ``mean_burst_s`` long on
average and a ``burst_fraction`` of the time), shared by all clients; in a burst every client sends
``burst_factor`` times its calm rate. Calm and burst rates are set so the mean is the step's demand.
"""

from __future__ import annotations

import numpy as np

__all__ = ["arrivals"]


def arrivals(rng: np.random.Generator, rates_rps: np.ndarray, duration_s: float, process: str = "poisson",
             burst_factor: float = 4.0, burst_fraction: float = 0.1, mean_burst_s: float = 0.5
             ) -> tuple[np.ndarray, np.ndarray]:
    """(times in [0, duration_s) sorted, client index of each) for per-client mean ``rates_rps``."""
    if process == "poisson":
        segments = [(0.0, duration_s, 1.0)]
    else:
        calm = 1.0 / (1.0 - burst_fraction + burst_fraction * burst_factor)
        mean_calm_s = mean_burst_s * (1.0 - burst_fraction) / burst_fraction
        segments, t = [], 0.0
        burst = rng.random() < burst_fraction
        while t < duration_s:
            length = rng.exponential(mean_burst_s if burst else mean_calm_s)
            end = min(t + length, duration_s)
            segments.append((t, end, calm * burst_factor if burst else calm))
            t, burst = end, not burst
    times, clients = [], []
    for c, rate in enumerate(np.asarray(rates_rps, dtype=float)):
        for start, end, factor in segments:
            n = rng.poisson(max(rate, 0.0) * factor * (end - start))
            times.append(rng.uniform(start, end, n))
            clients.append(np.full(n, c, dtype=np.int64))
    t_all = np.concatenate(times) if times else np.zeros(0)
    c_all = np.concatenate(clients) if clients else np.zeros(0, dtype=np.int64)
    order = np.argsort(t_all, kind="stable")
    return t_all[order], c_all[order]
