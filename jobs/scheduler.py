"""Plans jobs: deadlines checked, the run time estimated from the variant's profile, the window
chosen on the intensity provider's forecast (``jobs/window.py``) and re-chosen when a newer forecast
moves it. Time is the provider's clock: wall time live, the replay clock when replaying traces.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Sequence

from jobs.model import Job, Plan, iso
from jobs.settings import JobsSettings
from jobs.window import best_window, horizon_end
from routing.intensity.base import CarbonIntensityProvider, IntensityReading, utcnow
from wattgate.errors import BadRequest, WattgateError

log = logging.getLogger("wattgate.jobs")

__all__ = ["Scheduler", "expected_run_s"]


def expected_run_s(profile: dict[str, Any], hardware: str, rows: Sequence[int], max_batch_size: int,
                   default_s_per_row: float) -> tuple[float, str]:
    """Seconds the requests take, from the variant's energy profile on ``hardware`` (the largest
    profiled batch that fits), and where the figure came from."""
    batches = ((profile or {}).get(hardware) or {}).get("batches") or {}
    usable = sorted((int(b), row["latency_ms"]) for b, row in batches.items()
                    if str(b).isdigit() and int(b) <= max_batch_size and isinstance(row, dict)
                    and isinstance(row.get("latency_ms"), (int, float)))
    if not usable:
        return sum(rows) * default_s_per_row, f"no {hardware} profile: {default_s_per_row:g} s per row assumed"
    b, latency_ms = usable[-1]
    return sum(math.ceil(r / b) for r in rows) * latency_ms / 1000.0, f"{hardware} profile, batch {b}: {latency_ms:g} ms"


class Scheduler:
    def __init__(self, settings: JobsSettings, provider: CarbonIntensityProvider,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.provider = provider
        self._clock = clock or getattr(provider, "clock", None) or utcnow

    def now(self) -> datetime:
        return self._clock().astimezone(timezone.utc)

    def deadline(self, value: Any, now: datetime) -> datetime:
        """``parameters.deadline``: an RFC 3339 time or seconds from now; 400 if past or too far."""
        if isinstance(value, bool) or value is None:
            raise BadRequest("parameters.deadline is required: an RFC 3339 time or seconds from now")
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise BadRequest("parameters.deadline must be finite")
            at = now + timedelta(seconds=float(value))
        elif isinstance(value, str):
            try:
                at = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise BadRequest(f"parameters.deadline {value[:40]!r} is not an RFC 3339 time") from None
            if at.tzinfo is None:
                raise BadRequest("parameters.deadline needs a time zone (e.g. Z)")
            at = at.astimezone(timezone.utc)
        else:
            raise BadRequest("parameters.deadline must be an RFC 3339 time or seconds from now")
        if at <= now:
            raise BadRequest(f"deadline {iso(at)} is in the past (now {iso(now)})")
        if at - now > timedelta(hours=self.settings.max_deadline_h):
            raise BadRequest(f"deadline {iso(at)} is more than jobs.max_deadline_h = {self.settings.max_deadline_h:g} h away")
        return at

    def forecasts(self, regions: Sequence[str], now: datetime, deadline: datetime) -> dict[str, list[IntensityReading]]:
        """Each region's forecast to the deadline; regions without one are left out (never raises)."""
        hours = (deadline - now).total_seconds() / 3600.0 + 1.0
        out = {}
        for region in regions:
            try:
                points = [p for p in self.provider.forecast(region, hours) if p.signal and p.kind != "static"]
            except WattgateError as exc:  # NotSupported, outage, unknown region: no forecast for it
                log.debug("no forecast for %s: %s", region, exc)
                continue
            except Exception as exc:  # a provider bug must not stop the scheduler
                log.warning("forecast for %s failed: %s", region, exc)
                continue
            if points:
                out[region] = points
        return out

    def within_horizon(self, regions: Sequence[str], now: datetime, seconds: float) -> float:
        """``seconds`` from now, cut to jobs.max_deadline_h and to the end of the regions' forecast (the
        latest horizon), so a default deadline is never refused as beyond it; with no forecast, as is."""
        seconds = min(float(seconds), self.settings.max_deadline_h * 3600.0)
        forecasts = self.forecasts(regions, now, now + timedelta(seconds=seconds))
        if forecasts:
            horizon = max(horizon_end(p) for p in forecasts.values())
            if horizon > now:
                seconds = min(seconds, (horizon - now).total_seconds())
        return seconds

    def intensity_now(self, regions: Sequence[str]) -> dict[str, float]:
        out = {}
        for region in regions:
            try:
                out[region] = self.provider.current(region).intensity_g_per_kwh
            except Exception as exc:
                log.debug("no current intensity for %s: %s", region, exc)
        return out

    def plan(self, regions: Sequence[str], now: datetime, deadline: datetime, run_s: float, *,
             check_horizon: bool = False) -> Plan:
        """The min-carbon window before ``deadline``; run-now (said so) with no forecast.

        ``check_horizon``: a deadline past the forecast's end is 400 unless jobs.allow_beyond_forecast.
        """
        forecasts = self.forecasts(regions, now, deadline)
        if not forecasts:
            return Plan(now, now + timedelta(seconds=run_s), "no-forecast",
                        f"no forecast for {', '.join(regions) or 'any region'}: runs now", None, None, now)
        horizon = max(horizon_end(p) for p in forecasts.values())
        if check_horizon and deadline > horizon and not self.settings.allow_beyond_forecast:
            raise BadRequest(f"deadline {iso(deadline)} is beyond the forecast horizon ({iso(horizon)}); "
                             "set jobs.allow_beyond_forecast to accept it")
        w = best_window(forecasts, now, deadline, run_s)
        if w is None:
            return Plan(now, now + timedelta(seconds=run_s), "no-forecast",
                        "the forecast does not cover a run starting now: runs now", None, None, now)
        if w.start <= now:
            return Plan(w.start, w.end, "now-is-cleanest",
                        f"now is the cleanest window before the deadline ({w.region}, {w.mean_g_per_kwh:.0f} g/kWh)",
                        w.mean_g_per_kwh, w.region, now)
        return Plan(w.start, w.end, "shifted",
                    f"min-carbon window {iso(w.start)} in {w.region}: {w.mean_g_per_kwh:.0f} g/kWh forecast "
                    f"against {w.now_g_per_kwh:.0f} now", w.mean_g_per_kwh, w.region, now)

    def replan(self, job: Job, regions: Sequence[str]) -> Plan | None:
        """A new plan when a newer forecast moves the window (start or expected intensity), else None."""
        now = self.now()
        if job.plan.start <= now:
            return None  # due: run it, do not move it
        new = self.plan(regions, now, job.deadline, job.expected_run_s)
        if new.decision == "no-forecast" and job.plan.decision != "no-forecast":
            return None  # a forecast outage keeps the last good plan
        moved = abs((new.start - job.plan.start).total_seconds()) >= 1.0
        if not moved:
            return None
        return Plan(new.start, new.end, new.decision, f"re-planned on the forecast of {iso(now)}: {new.reason}",
                    new.expected_g_per_kwh, new.region, now)
