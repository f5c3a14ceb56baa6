"""``wattgate optimize ... --deadline 12h``: plan the run in the low-carbon window before the deadline
with the jobs room's scheduler (same forecast, same window rule), wait for it, and describe it for
the training record: the window, the intensity had it run at submission, and the run's carbon.

Time is the intensity provider's clock (wall time live, the replay clock when replaying), and the
wait is ``sleep`` on it, so tests run a 12 h wait with a fake clock and no real waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from jobs.model import iso
from jobs.scheduler import Scheduler
from wattgate.errors import BadRequest, WattgateError

__all__ = ["RunWindow", "expected_run_s", "parse_duration_s", "plan_run", "wait_for"]

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(d|h|m|s)?\s*", re.I)
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, None: 1.0}


def parse_duration_s(text: str) -> float:
    """``12h``, ``90m``, ``45s``, ``1.5d`` or plain seconds; BadRequest otherwise."""
    m = _DURATION.fullmatch(text or "")
    if m is None or float(m.group(1)) <= 0:
        raise BadRequest(f"{text!r} is not a duration: use e.g. 12h, 90m, 3600s")
    return float(m.group(1)) * _UNIT_S[(m.group(2) or "").lower() or None]


def expected_run_s(registry, model: str, flag_s: float | None) -> tuple[float, str]:
    """How long the run takes: ``--expected-duration`` when given, else the sum of the previous version's
    training records (each step once, as the step cache runs it once), else BadRequest."""
    if flag_s is not None:
        return flag_s, "--expected-duration"
    try:
        card = registry.show(model)
    except WattgateError:
        card = None
    steps: dict[tuple, float] = {}
    for variant in (card.variants.values() if card is not None else []):
        for rec in variant.training:
            if rec.get("step") == "carbon-window" or not isinstance(rec.get("duration_s"), (int, float)):
                continue
            steps[(rec.get("step"), (rec.get("details") or {}).get("seed"))] = float(rec["duration_s"])
    total = sum(steps.values())
    if total <= 0:
        raise BadRequest(f"no previous training record of {model!r} to estimate the run time: pass --expected-duration")
    return total, f"training records of {model} version {card.version} ({len(steps)} steps)"


@dataclass(frozen=True)
class RunWindow:
    submitted_at: datetime
    deadline: datetime
    start: datetime
    end: datetime
    region: str
    decision: str  # shifted | now-is-cleanest | no-forecast
    reason: str
    expected_intensity_g_per_kwh: float | None  # the forecast mean over the window
    counterfactual_intensity_g_per_kwh: float | None  # the region's intensity at submission
    expected_run_s: float
    expected_run_basis: str

    def describe(self) -> str:
        return (f"window {iso(self.start)} to {iso(self.end)} in {self.region} ({self.decision}: {self.reason}); "
                f"expected run {self.expected_run_s:.0f} s from {self.expected_run_basis}")

    def record(self, energy_j: float, method: str, measured: bool, actual_intensity_g_per_kwh: float | None) -> dict[str, Any]:
        """The training-record entry: the window and the counterfactual, and the run's carbon (gCO2e) at the
        intensity it ran at and at submission's. Energy is the run meter's (``method``, ``measured``); the
        carbon is modelled from it and the provider's intensity."""
        kwh = energy_j / 3.6e6

        def g(intensity: float | None) -> float | None:
            return None if intensity is None else kwh * intensity

        carbon, counterfactual = g(actual_intensity_g_per_kwh), g(self.counterfactual_intensity_g_per_kwh)
        return {
            "step": "carbon-window",
            "window": {"start": iso(self.start), "end": iso(self.end),
                       "expected_intensity_g_per_kwh": self.expected_intensity_g_per_kwh},
            "decision": self.decision, "reason": self.reason, "region": self.region,
            "submitted_at": iso(self.submitted_at), "deadline": iso(self.deadline),
            "expected_run_s": round(self.expected_run_s, 1), "expected_run_basis": self.expected_run_basis,
            "counterfactual_intensity_g_per_kwh": self.counterfactual_intensity_g_per_kwh,
            "actual_intensity_g_per_kwh": actual_intensity_g_per_kwh,
            "energy_j": round(energy_j, 4), "method": method, "measured": measured,
            "carbon_g": carbon, "counterfactual_carbon_g": counterfactual,
            "carbon_avoided_g": None if carbon is None or counterfactual is None else counterfactual - carbon,
            "carbon_basis": "modelled: run energy x grid intensity",
        }


def plan_run(scheduler: Scheduler, region: str, deadline_s: float, run_s: float, basis: str) -> RunWindow:
    """The minimum-carbon window of ``run_s`` before ``deadline_s`` from now, in this host's ``region``
    (an optimizer run cannot move); 400 for a deadline in the past or beyond the forecast."""
    now = scheduler.now()
    deadline = scheduler.deadline(deadline_s, now)
    if (deadline - now).total_seconds() < run_s:
        raise BadRequest(f"the run is expected to take {run_s:.0f} s ({basis}): longer than the deadline allows")
    plan = scheduler.plan([region], now, deadline, run_s, check_horizon=True)
    return RunWindow(now, deadline, plan.start, plan.end, region, plan.decision, plan.reason, plan.expected_g_per_kwh,
                     scheduler.intensity_now([region]).get(region), run_s, basis)


def wait_for(window: RunWindow, now: Callable[[], datetime], sleep: Callable[[float], None],
             log: Callable[[str], None], every_s: float = 600.0) -> float:
    """Sleep until the window starts, with a line every ``every_s``; the seconds waited (provider clock)."""
    started = now()
    while (left_s := (window.start - now()).total_seconds()) > 0:
        log(f"waiting for the low-carbon window at {iso(window.start)} "
            f"({window.expected_intensity_g_per_kwh or 0:.0f} g/kWh forecast against "
            f"{window.counterfactual_intensity_g_per_kwh or 0:.0f} at submission): {left_s / 3600:.2f} h left")
        sleep(min(left_s, every_s))
    return (now() - started).total_seconds()
