"""Remote pools' modelled energy: one idle bill across ingress replicas, idle and dynamic parts of a curve."""

from __future__ import annotations

import pytest

from routing.pools import PoolIdleAccount, idle_and_dynamic
from routing.topology import EnergyCurve


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pools_idle_power_is_billed_once_across_ingress_replicas():
    clock = Clock()
    replicas = [PoolIdleAccount(120.0, 1 / 4, clock) for _ in range(4)]
    clock.now += 10.0
    billed = sum(account.take()[0] for account in replicas)
    assert billed == pytest.approx(120.0 * 10.0)  # not 4 x: each replica bills its quarter
    assert replicas[0].take() == (0.0, 0.0)  # and only once


def test_idle_and_dynamic_parts_of_a_curve():
    assert idle_and_dynamic(EnergyCurve.from_power_model(0.74, 0.011)) == (0.74, 0.011)
    h200 = EnergyCurve.from_table([(8_700, 0.0166), (52_000, 0.0043), (140_000, 0.0028)], source="NVML on an H200")
    idle_w, dynamic_j = idle_and_dynamic(h200)
    assert dynamic_j == 0.0028 and idle_w == pytest.approx(8_700 * (0.0166 - 0.0028))  # ~120 W: NVML's idle power
    assert idle_and_dynamic(EnergyCurve.constant(0.02)) == (0.0, 0.02)
