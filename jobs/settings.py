"""Settings of deferrable jobs (the ``jobs:`` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class JobsSettings(BaseModel):
    enabled: bool = True
    # sqlite: a file under server.state_dir, shared by one node's ingress replicas; redis: shared by
    # gateways on several nodes (jobs.redis_url, else auth.redis_url; a Redis that never evicts keys).
    store: Literal["sqlite", "redis"] = "sqlite"
    # Relative to server.state_dir unless absolute; every ingress replica of a node shares it.
    path: Path = Path("jobs.sqlite")
    redis_url: str | None = None
    redis_prefix: str = "wattgate:jobs"
    # Finished jobs (their results) are kept this long, then purged.
    result_ttl_s: float = Field(24 * 3600.0, gt=0)
    max_requests_per_job: int = Field(1000, ge=1)  # a longer list is 413
    max_deadline_h: float = Field(48.0, gt=0)
    # A deadline past the forecast's last point is 400 unless this is set (the window is then
    # chosen within the forecast).
    allow_beyond_forecast: bool = False
    # Callbacks to loopback, link-local and private addresses (SSRF) are refused unless this is set.
    allow_private_callbacks: bool = False
    poll_interval_s: float = Field(1.0, gt=0, le=60)
    replan_interval_s: float = Field(300.0, gt=0)  # wall seconds between forecast re-plans
    # Per pool, jobs may hold at most this share of its in-flight bound (latency-bound traffic keeps the rest).
    max_pool_share: float = Field(0.25, gt=0, le=1)
    max_concurrent_requests: int = Field(4, ge=1, le=256)  # job requests in flight per ingress replica
    lease_s: float = Field(30.0, gt=0)  # a running job whose runner stopped renewing this long is failed
    # Run time per row when the variant's card has no energy profile to take it from.
    default_s_per_row: float = Field(0.05, gt=0)
    callback_timeout_s: float = Field(5.0, gt=0)

    def file(self, state_dir: Path) -> Path:
        return self.path if self.path.is_absolute() else state_dir / self.path
