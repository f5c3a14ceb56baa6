"""M/M/c waiting-time model of a pool, shared by the live policies and the simulator.

A pool of ``capacity_rps`` whose requests take ``service_ms`` at low load is modelled as
``c = round(capacity_rps * service_ms / 1000)`` parallel slots, each serving ``capacity_rps / c``
requests per second, so the throughput limit stays exactly ``capacity_rps``. Waiting time is M/M/c
(Erlang C): ``P(W > t) = C(c, a) * exp(-(c*mu - lambda) * t)``. The p99 latency a client sees is
``rtt_ms + wait_p99_ms + service_ms`` (the service time is taken as deterministic).
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["erlang_c", "max_load_for_wait_rps", "servers_for", "wait_params", "wait_quantile_ms", "wait_tail"]


def servers_for(capacity_rps: float, service_ms: float) -> int:
    return max(1, int(round(capacity_rps * service_ms / 1000.0)))


def erlang_c(servers: int, offered_erlangs: float) -> float:
    """Probability that an arrival waits, for ``servers`` slots and offered load ``a = lambda/mu``."""
    if offered_erlangs <= 0:
        return 0.0
    rho = offered_erlangs / servers
    if rho >= 1.0:
        return 1.0
    # Erlang B by its stable recursion, then B -> C; exact for any c without factorial overflow.
    b = 1.0
    for k in range(1, servers + 1):
        b = offered_erlangs * b / (k + offered_erlangs * b)
    return b / (1.0 - rho * (1.0 - b))


def _params(load_rps: float, capacity_rps: float, service_ms: float, servers: int | None = None) -> tuple[float, float]:
    """(probability of waiting, decay rate c*mu - lambda in 1/s) for a pool at ``load_rps``."""
    c = servers or servers_for(capacity_rps, service_ms)
    mu = capacity_rps / c
    return erlang_c(c, load_rps / mu), capacity_rps - load_rps


@functools.lru_cache(maxsize=1024)
def _no_wait_below(servers: int, tail: float) -> float:
    """An offered load (Erlangs) below which fewer than ``tail`` of arrivals wait (C is increasing in it)."""
    lo, hi = 0.0, float(servers)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if erlang_c(servers, mid) <= tail else (lo, mid)
    return lo


def wait_quantile_ms(
    q: float, load_rps: float, capacity_rps: float, service_ms: float, servers: int | None = None
) -> float:
    """The q-quantile of the queueing delay in ms; ``inf`` at or beyond capacity."""
    if load_rps >= capacity_rps:
        return math.inf
    c = servers or servers_for(capacity_rps, service_ms)
    # Policies ask this for every pool on every request: skip Erlang C where no queue can form.
    if load_rps * c / capacity_rps < _no_wait_below(c, 1.0 - q):
        return 0.0
    p_wait, decay = _params(load_rps, capacity_rps, service_ms, c)
    tail = 1.0 - q
    if p_wait <= tail:
        return 0.0
    return 1000.0 * math.log(p_wait / tail) / decay


def wait_tail(
    t_ms: np.ndarray, p_wait: np.ndarray, decay_per_s: np.ndarray
) -> np.ndarray:
    """Vectorised ``P(W > t)`` for many pools/cells; ``t_ms < 0`` gives 1."""
    t_ms = np.asarray(t_ms, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        tail = np.where(t_ms < 0, 1.0, p_wait * np.exp(-decay_per_s * np.maximum(t_ms, 0.0) / 1000.0))
    return np.clip(np.nan_to_num(tail, nan=1.0), 0.0, 1.0)


def wait_params(load_rps: float, capacity_rps: float, service_ms: float) -> tuple[float, float]:
    """(P(wait), decay 1/s) for :func:`wait_tail`; a saturated pool waits forever (decay 0)."""
    if load_rps >= capacity_rps:
        return 1.0, 0.0
    return _params(load_rps, capacity_rps, service_ms)


def max_load_for_wait_rps(q: float, wait_budget_ms: float, capacity_rps: float, service_ms: float) -> float:
    """Largest load whose q-quantile wait stays within ``wait_budget_ms`` (bisection; 0 if none)."""
    if wait_budget_ms < 0:
        return 0.0
    lo, hi = 0.0, capacity_rps
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if wait_quantile_ms(q, mid, capacity_rps, service_ms) <= wait_budget_ms:
            lo = mid
        else:
            hi = mid
    return lo
