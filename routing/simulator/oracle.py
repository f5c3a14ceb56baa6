"""The offline optimum: per time step, the carbon-minimal routing with perfect knowledge of the traces.

Every pool runs in one *mode* per step: off, or serving the clients for whom it can meet the SLO up
to a load cap. A client may use a pool only if RTT + service fits the SLO, and then the pool's load
must stay at or below ``L*[c, p]``, the highest load at which its M/M/c p99 wait still fits what is
left of the SLO for c; so a pool's modes are its distinct ``L*`` levels, each admitting the clients
whose ``L*`` reaches it (``L* < capacity``, so capacity holds too). Each pool's power is
``idle_w + j_per_request * load`` while it carries traffic, from :meth:`EnergyCurve.affine_bound`:
exact for power-model and constant curves, a lower bound for measured tables.

For a fixed choice of modes the rest is a transportation linear program whose costs depend only on
the pool; its optimum is the polymatroid greedy (fill pools cheapest first, each as far as a max
flow allows). The oracle scores every combination of modes that way, then solves the best one's
linear program with ``scipy.optimize.linprog`` (HiGHS) for the rates ``x[c, p]``. With too many
combinations it solves one mixed-integer program through ``linprog(integrality=...)`` instead.

So the result is a **lower bound** on the carbon of every routing that meets the SLO in every
(step, client, pool) cell, attained when no pool uses a table curve. A routing that misses the SLO
may undercut it. The oracle serves the preferred variant only. If no SLO-compliant routing exists
in a step, that step is re-solved with every pool capped at 99 % utilisation and no SLO, and counted
in ``relaxed_steps``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from energy.carbon import operational_g
from routing.queueing import max_load_for_wait_rps
from routing.simulator.scenario import Prepared
from wattgate.errors import BadRequest

__all__ = ["OracleSolution", "solve"]

# Mode combinations scored exhaustively per step; beyond this one MILP per step is cheaper.
MAX_COMBINATIONS = 2048
# Where no routing meets the SLO, pools may run this close to capacity (queues stay finite).
RELAXED_UTILISATION = 0.99
# L* is shaved by this fraction so solver tolerances cannot push a cell just past the SLO.
_SLO_SAFETY = 1e-6


@dataclass(frozen=True)
class OracleSolution:
    rates: np.ndarray  # [step, client, pool, variant]; only the preferred variant is used
    bound_carbon_g: float
    bound_energy_j: float
    relaxed_steps: int
    # Steps in which some pool runs at its load cap in the optimum: capacity (or the SLO) binds.
    binding_steps: int


@dataclass(frozen=True)
class _Mode:
    """One way a pool can run in a step: up to ``cap_rps``, serving the clients in ``mask``."""

    pool: int
    cap_rps: float
    mask: int  # bit c set: client c may use the pool in this mode
    idle_w: float
    j_per_request: float


def solve(prep: Prepared, variants: tuple[str, ...]) -> OracleSolution:
    sc, topo = prep.scenario, prep.topology
    variant = sc.request.variant
    v = variants.index(variant)
    n_steps, n_clients = prep.demand_rps.shape
    n_pools = len(topo.pools)
    slo_modes = _modes(prep, variant, capacity_only=False)
    cap_modes = _modes(prep, variant, capacity_only=True)
    pue = np.array([pool.pue for pool in topo.pools])

    rates = np.zeros((n_steps, n_clients, n_pools, len(variants)))
    carbon = energy = 0.0
    relaxed = binding = 0
    for t in range(n_steps):
        g_per_j = operational_g(1.0, prep.intensity_g_per_kwh[t], pue)
        demand = prep.demand_rps[t]
        best = None
        for modes in (slo_modes, cap_modes):
            usable = [m if prep.healthy[t, p] else [] for p, m in enumerate(modes)]
            best = _best_modes(demand, usable, g_per_j)
            if best is not None:
                break
            relaxed += 1
        if best is None:
            raise BadRequest(
                f"scenario {sc.name}: at {prep.times[t]:%Y-%m-%d %H:%M} demand "
                f"{demand.sum():.0f} rps exceeds the healthy pools' capacity"
            )
        x = _rates(demand, best, g_per_j, n_pools)
        rates[t, :, :, v] = x
        load = x.sum(axis=0)
        binding += any(load[m.pool] >= m.cap_rps * (1 - 1e-6) for m in best)
        step_w = np.zeros(n_pools)
        for m in best:
            if load[m.pool] > 0:
                step_w[m.pool] = m.idle_w + m.j_per_request * load[m.pool]
        carbon += float(step_w @ g_per_j) * prep.step_s
        energy += float(step_w.sum()) * prep.step_s
    return OracleSolution(rates, carbon, energy, relaxed, binding)


def _modes(prep: Prepared, variant: str, capacity_only: bool) -> list[list[_Mode]]:
    """Per pool, its on-modes: one per distinct SLO load cap (or one capacity-only mode)."""
    topo, slo = prep.topology, prep.scenario.slo_p99_ms
    out: list[list[_Mode]] = []
    for p, pool in enumerate(topo.pools):
        if not pool.serves(variant):
            out.append([])
            continue
        curve = pool.curve(variant)
        caps: dict[int, float] = {}
        for c, region in enumerate(prep.client_regions):
            if capacity_only:
                caps[c] = pool.capacity_rps * RELAXED_UTILISATION
                continue
            budget_ms = slo - pool.service_ms - pool.rtt_ms[region]
            if budget_ms >= 0:
                cap = max_load_for_wait_rps(0.99, budget_ms, pool.capacity_rps, pool.service_ms)
                if cap > 0:
                    caps[c] = cap * (1 - _SLO_SAFETY)
        modes = []
        for level in sorted(set(caps.values()), reverse=True):
            mask = sum(1 << c for c, cap in caps.items() if cap >= level)
            idle_w, j = curve.affine_bound(level)
            modes.append(_Mode(p, level, mask, idle_w, j))
        out.append(modes)
    return out


def _best_modes(demand: np.ndarray, modes: list[list[_Mode]], g_per_j: np.ndarray) -> tuple[_Mode, ...] | None:
    """The cheapest feasible combination of pool modes for this step's demand, or None."""
    n_combos = 1
    for m in modes:
        n_combos *= len(m) + 1
    if n_combos > MAX_COMBINATIONS:
        return _best_modes_milp(demand, modes, g_per_j)
    n_clients = len(demand)
    total = float(demand.sum())
    subsets = range(1 << n_clients)
    # Demand of the clients outside each subset X: the source side of a min cut.
    outside = [sum(demand[c] for c in range(n_clients) if not (x >> c) & 1) for x in subsets]
    tol = 1e-9 * max(total, 1.0)
    best, best_g = None, np.inf
    for combo in itertools.product(*[[None, *m] for m in modes]):
        on = sorted((m for m in combo if m is not None), key=lambda m: m.j_per_request * g_per_j[m.pool])
        if sum(m.cap_rps for m in on) < total - tol:
            continue
        # Polymatroid greedy: each pool, cheapest first, takes what a max flow adds when it joins.
        cut = list(outside)
        flow, grams = 0.0, 0.0
        loaded = []
        for m in on:
            for x in subsets:
                if m.mask & x:
                    cut[x] += m.cap_rps
            new_flow = min(cut)
            load = new_flow - flow
            if load > tol:
                grams += (m.idle_w + m.j_per_request * load) * g_per_j[m.pool]
                loaded.append(m)
            flow = new_flow
        if flow >= total - tol and grams < best_g:
            # Only pools that carry traffic: the LP below then cannot add an idle cost left out here.
            best, best_g = tuple(loaded), grams
    return best


def _rates(demand: np.ndarray, modes: tuple[_Mode, ...], g_per_j: np.ndarray, n_pools: int) -> np.ndarray:
    """The transportation LP for chosen modes: rates x[c, p] at least carbon (dynamic part)."""
    n_clients = len(demand)
    pairs = [(c, m) for m in modes for c in range(n_clients) if (m.mask >> c) & 1 and demand[c] > 0]
    x = np.zeros((n_clients, n_pools))
    if not pairs:
        return x
    cost = np.array([m.j_per_request * g_per_j[m.pool] for _, m in pairs])
    a_eq = np.zeros((n_clients, len(pairs)))
    a_ub = np.zeros((len(modes), len(pairs)))
    for k, (c, m) in enumerate(pairs):
        a_eq[c, k] = 1.0
        a_ub[modes.index(m), k] = 1.0
    res = linprog(cost, A_ub=a_ub, b_ub=[m.cap_rps for m in modes], A_eq=a_eq, b_eq=demand, bounds=(0, None), method="highs")
    if res.status != 0:  # pragma: no cover - the modes were checked feasible by max flow
        raise RuntimeError(f"oracle LP failed for feasible modes: {res.message}")
    for k, (c, m) in enumerate(pairs):
        x[c, m.pool] += max(res.x[k], 0.0)
    return x


def _best_modes_milp(demand: np.ndarray, modes: list[list[_Mode]], g_per_j: np.ndarray) -> tuple[_Mode, ...] | None:
    """Same choice as one MILP: binary w per mode (at most one per pool), continuous x per (client, mode)."""
    flat = [m for ms in modes for m in ms]
    n_clients = len(demand)
    pairs = [(c, k) for k, m in enumerate(flat) for c in range(n_clients) if (m.mask >> c) & 1 and demand[c] > 0]
    if not pairs:
        return None
    n_x, n_w = len(pairs), len(flat)
    cost = np.concatenate(
        [[flat[k].j_per_request * g_per_j[flat[k].pool] for _, k in pairs], [m.idle_w * g_per_j[m.pool] for m in flat]]
    )
    rows, b = [], []
    for k, m in enumerate(flat):  # load in mode k <= cap * w_k
        row = np.zeros(n_x + n_w)
        for i, (_, k2) in enumerate(pairs):
            if k2 == k:
                row[i] = 1.0
        row[n_x + k] = -m.cap_rps
        rows.append(row), b.append(0.0)
    for p in {m.pool for m in flat}:  # one mode per pool
        row = np.zeros(n_x + n_w)
        for k, m in enumerate(flat):
            if m.pool == p:
                row[n_x + k] = 1.0
        rows.append(row), b.append(1.0)
    a_eq = np.zeros((n_clients, n_x + n_w))
    for i, (c, _) in enumerate(pairs):
        a_eq[c, i] = 1.0
    bounds = [(0, None)] * n_x + [(0, 1)] * n_w
    res = linprog(
        cost, A_ub=np.array(rows), b_ub=b, A_eq=a_eq, b_eq=demand, bounds=bounds,
        integrality=np.concatenate([np.zeros(n_x), np.ones(n_w)]), method="highs",
    )
    if res.status != 0:
        return None
    return tuple(m for k, m in enumerate(flat) if res.x[n_x + k] > 0.5)
