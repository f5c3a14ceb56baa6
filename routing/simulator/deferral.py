"""Deferrable work in the simulator: a share of each step's demand shifted to low-carbon hours before its deadline.

``workload.deferrable: {share, deadline_h, max_utilisation}`` makes ``share`` of every step's requests
deferrable. The jobs scheduler (``jobs/window.py`` in the gateway) moves such work to the
minimum-carbon window before its deadline, on spare capacity only; here the same idea runs over
the simulated steps, so the shifted demand goes through the same routers, queues and accounting:

- each sampled step's deferrable requests are placed, in chunks, on the sampled steps from their
  arrival to ``deadline_h`` later (clipped at the scenario's end) whose *marginal* intensity is the
  least: the intensity x PUE of the cleanest pool that still has room, given the load already there
  (interactive plus what was shifted before). So "when" and "where" are chosen together;
- a step only takes deferred work up to ``max_utilisation`` of the pools' full capacity (jobs use
  spare capacity; latency-bound traffic keeps the rest);
- the forecast is the trace itself (a perfect forecast, as the replay provider's ``forecast()``).

Stated approximation: a shifted request keeps its client (RTT) and is served like any other; its
carbon is the average of the step it lands in (idle power shared by all the step's requests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Shift", "shift_demand"]

CHUNKS = 8  # each step's deferrable work is placed in this many parts


@dataclass(frozen=True)
class Shift:
    """The demand after shifting, and which fraction of each step's requests is deferrable work."""

    demand_rps: np.ndarray  # [step, client], sampled steps only carry the moved work
    deferrable_fraction: np.ndarray  # [step]: share of the step's requests that are deferred work
    moved_share: float  # of the deferrable requests, how many run in another step than their arrival's


def _marginal(g_pue: np.ndarray, caps: np.ndarray, load: float) -> float:
    """Intensity x PUE of the pool the next request would use if load fills the cleanest pools first; inf if full."""
    filled = 0.0
    for i in np.argsort(g_pue):
        filled += caps[i]
        if load < filled:
            return float(g_pue[i])
    return float("inf")


def shift_demand(demand_rps: np.ndarray, intensity_g_per_kwh: np.ndarray, pue: np.ndarray, capacity_rps: np.ndarray,
                 steps: list[tuple[int, float]], step_s: float, share: float, deadline_h: float,
                 max_utilisation: float) -> Shift:
    """Shift ``share`` of each sampled step's demand (``steps``: (step, represented seconds)) within ``deadline_h``."""
    idx = [t for t, _ in steps]
    rep = {t: r for t, r in steps}
    caps = capacity_rps * max_utilisation
    total_cap = float(caps.sum())
    interactive = demand_rps * (1.0 - share)
    out = interactive.copy()
    load = {t: float(interactive[t].sum()) for t in idx}
    g_pue = intensity_g_per_kwh * pue[None, :]
    landed = {t: 0.0 for t in idx}
    moved = 0.0
    deferred_total = 0.0
    window = deadline_h * 3600.0
    for k, t in enumerate(idx):
        mix = demand_rps[t] * share  # per client, rps over the represented seconds of step t
        amount = float(mix.sum()) * rep[t]  # requests
        if amount <= 0:
            continue
        deferred_total += amount
        candidates = [u for u in idx[k:] if (u - t) * step_s <= window]
        chunk = amount / CHUNKS
        for _ in range(CHUNKS):
            best, best_g = t, float("inf")
            for u in candidates:
                add = chunk / rep[u]
                if load[u] + add > total_cap:
                    continue
                g = _marginal(g_pue[u], caps, load[u] + add / 2)
                if g < best_g:
                    best, best_g = u, g
            # No step with room: the work runs at arrival (as the live scheduler falls back).
            rate = chunk / rep[best]
            out[best] += mix / mix.sum() * rate
            load[best] += rate
            landed[best] += rate
            if best != t:
                moved += chunk
    total = out.sum(axis=1)
    frac = np.zeros(len(total))
    for t in idx:
        frac[t] = landed[t] / total[t] if total[t] > 0 else 0.0
    return Shift(out, frac, moved / deferred_total if deferred_total else 0.0)
