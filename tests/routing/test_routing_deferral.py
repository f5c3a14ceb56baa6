"""Deferrable work in the simulator: shifted to the cleanest steps before its deadline, on spare capacity only."""

from __future__ import annotations

import numpy as np
import pytest

from routing.simulator.deferral import shift_demand


def test_work_moves_to_the_cleaner_steps_within_the_deadline_and_the_capacity_cap():
    # One client, one pool; 4 sampled steps of 1 h each; step 2 is the clean one.
    demand = np.array([[100.0], [100.0], [100.0], [100.0]])
    g = np.array([[400.0], [300.0], [50.0], [500.0]])
    steps = [(t, 3600.0) for t in range(4)]
    s = shift_demand(demand, g, np.array([1.0]), np.array([1000.0]), steps, 3600.0, share=0.3, deadline_h=2,
                     max_utilisation=0.7)
    assert s.demand_rps.sum() == pytest.approx(demand.sum())  # nothing lost, nothing made up
    # Steps 0..2 reach step 2 (within 2 h); step 3 has no later step: it runs at arrival.
    assert s.demand_rps[:, 0].tolist() == pytest.approx([70, 70, 70 + 90, 100])
    assert s.deferrable_fraction[2] == pytest.approx(90 / 160) and s.moved_share == pytest.approx(60 / 120)  # steps 0 and 1 moved; 2 is already clean
    tight = shift_demand(demand, g, np.array([1.0]), np.array([200.0]), steps, 3600.0, 0.3, 2, 0.7)
    assert tight.demand_rps[2, 0] <= 140 + 1e-9  # the clean step takes work only up to 70 % of capacity
