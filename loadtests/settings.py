"""Typed settings of the headless load-test runner (``wattgate loadtest``): the config file's ``loadtest:`` section."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Profile = Literal["auto", "steady", "burst", "diurnal"]


class LoadtestSettings(BaseModel):
    """Defaults of ``wattgate loadtest``; every field has a command-line flag that overrides it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Locust user count (the base count for burst, the peak for diurnal) and spawn rate.
    users: int = Field(default=16, ge=1, le=10_000)
    spawn_rate: float = Field(default=16.0, gt=0)
    duration_s: float = Field(default=30.0, gt=0, le=86_400)
    # Offered load per user (requests/s, locust constant_throughput); 0 sends back to back.
    user_rps: float = Field(default=10.0, ge=0)
    profile: Profile = "auto"
    # Locust user classes (empty: the default mix) and tags (empty: every task).
    classes: tuple[str, ...] = ("SteadyUser", "CacheHeavyUser", "BadInputUser")
    tags: tuple[str, ...] = ()
    # "name[:variant][@weight]" entries, e.g. ("digits:fp32", "minilm:int8@0.5").
    models: tuple[str, ...] = ("digits:fp32",)
    binary_share: float = Field(default=0.5, ge=0, le=1)
    bad_share: float = Field(default=0.05, ge=0, le=1)
    zipf_s: float = Field(default=1.1, gt=0)
    burst_factor: float = Field(default=10.0, ge=1)
    results_dir: Path = Path("loadtests/results")
    gateway_start_timeout_s: float = Field(default=180.0, gt=0)
    # Seconds to wait after the run for the gateway's ledger writer (it flushes every ~1 s).
    ledger_settle_s: float = Field(default=2.5, ge=0)
    # e.g. "p99_ms=200,j_per_1k=50,error_rate=0"; parsed by loadtests.thresholds.
    fail_on: str | None = None

    @field_validator("fail_on")
    @classmethod
    def _thresholds_parse(cls, value: str | None) -> str | None:
        if value:
            from loadtests.thresholds import parse_fail_on

            try:
                parse_fail_on(value)
            except Exception as exc:  # BadRequest -> a pydantic error with the same message
                raise ValueError(str(getattr(exc, "message", exc))) from None
        return value
