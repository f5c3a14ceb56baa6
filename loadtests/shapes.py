"""Load profiles as plain functions of elapsed time: steady, a 10x burst, a day compressed into minutes.

Each returns the user count at ``t_s``; the locustfile's ``LoadTestShape`` calls them every tick.
With ``constant_throughput`` users, users x per-user rate is the offered request rate, so 10x the
users is 10x the arrival rate (as long as the server keeps up).
"""

from __future__ import annotations

import math

from wattgate.errors import BadRequest

PROFILES = ("steady", "burst", "diurnal")


def steady_users(t_s: float, base_users: int) -> int:
    return base_users


def burst_users(t_s: float, base_users: int, run_time_s: float, factor: float = 10.0, start: float = 0.4, length: float = 0.2) -> int:
    """``base_users``, then ``factor`` times that between ``start`` and ``start + length`` of the run."""
    if run_time_s <= 0:
        raise BadRequest("a burst profile needs a positive run time")
    frac = t_s / run_time_s
    end = round(start + length, 9)  # 0.4 + 0.2 is 0.6000000000000001 in binary
    return int(round(base_users * factor)) if start <= frac < end else base_users


def day_fraction(hour: float) -> float:
    """Relative demand over a day: trough 15 % at 04:00, peak 100 % at 16:00 (one smooth cycle)."""
    return 0.15 + 0.85 * (1 - math.cos(2 * math.pi * ((hour - 4.0) % 24) / 24)) / 2


def diurnal_users(t_s: float, peak_users: int, day_s: float) -> int:
    """The day's curve with 24 h compressed into ``day_s`` seconds, starting at midnight; at least 1 user."""
    if day_s <= 0:
        raise BadRequest("a diurnal profile needs a positive day length")
    hour = (t_s / day_s) * 24.0
    return max(1, int(round(peak_users * day_fraction(hour))))


def users_at(profile: str, t_s: float, users: int, run_time_s: float, *, factor: float = 10.0, day_s: float | None = None) -> int:
    if profile == "steady":
        return steady_users(t_s, users)
    if profile == "burst":
        return burst_users(t_s, users, run_time_s, factor)
    if profile == "diurnal":
        return diurnal_users(t_s, users, day_s or run_time_s)
    raise BadRequest(f"unknown load profile {profile!r}; choose from {', '.join(PROFILES)}")


def pick_profile(explicit: str, classes: list[str], tags: list[str] | None) -> str:
    """``explicit`` unless "auto"; otherwise burst/diurnal when a selected class or tag names one."""
    if explicit != "auto":
        if explicit not in PROFILES:
            raise BadRequest(f"unknown load profile {explicit!r}; choose from auto, {', '.join(PROFILES)}")
        return explicit
    names = {c.lower() for c in classes} | {t.lower() for t in (tags or [])}
    for profile in ("burst", "diurnal"):
        if profile in names or f"{profile}user" in names:
            return profile
    return "steady"
