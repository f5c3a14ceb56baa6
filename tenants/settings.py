"""Typed settings of the tenants room: the ``auth`` section (modes, key store, quotas, budgets, audit)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator


class BudgetActions(BaseModel):
    """What happens as a tenant spends its carbon budget, as fractions of it, in this order:
    alert at each of ``alert_at``; serve a cheaper variant from ``cheaper_at``; turn deferrable work
    into a job from ``defer_at`` (over HTTP: 202 and the job, due within ``defer_deadline_s``, cut
    to the forecast's horizon; gRPC refuses it); reject everything from ``reject_at``."""

    alert_at: list[float] = Field(default_factory=lambda: [0.5, 0.8, 1.0])
    cheaper_at: float = Field(0.8, gt=0)
    defer_at: float = Field(0.9, gt=0)
    reject_at: float = Field(1.0, gt=0)
    defer_deadline_s: float = Field(12 * 3600.0, gt=0)  # a deferred request's job deadline, from now
    webhook_url: str | None = None  # a JSON POST when a tenant crosses an alert level

    @field_validator("alert_at")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(not (x > 0) for x in v):
            raise ValueError("alert_at fractions must be > 0")
        return sorted(v)


class FairSettings(BaseModel):
    """Weighted fair admission per ingress replica (``tenants/fair.py``)."""

    # Requests in flight on one replica before tenants queue and share it by key weight. Keep it
    # below server.max_ongoing_requests, or Serve queues first (first come, first served).
    capacity: int = Field(64, ge=1)
    # A tenant's waiting requests, and how long one waits, before 429 + Retry-After.
    max_queue_per_tenant: int = Field(64, ge=0)
    max_wait_s: float = Field(10.0, gt=0, le=600)


class AuthSettings(BaseModel):
    # off: no credential needed (the tenant is unknown); optional: a key, when sent, must be valid and
    # names the tenant; required: every model call needs a valid key.
    mode: Literal["off", "optional", "required"] = "off"
    # Listening on a non-loopback address with mode off is refused unless this says so.
    allow_open: bool = False
    # Peers whose X-Tenant header is believed when no key names the tenant. Behind HAProxy every
    # peer is the proxy: leave this empty unless a proxy of yours sets X-Tenant itself.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Keys: a JSON file (relative to server.state_dir unless absolute) or, with redis_url, Redis.
    keys_file: Path = Path("keys.json")
    redis_url: str | None = None  # also shares rate and concurrency limits across ingress replicas
    redis_prefix: str = "wattgate:tenants"
    fair: FairSettings = FairSettings()
    # A quota 429 (rate, concurrency, fair share) is answered after min(its Retry-After, this), so a
    # client that ignores Retry-After cannot recycle refusals as fast as the proxy turns them round
    # (tenants/hold.py); 0 answers at once. Bounded per ingress replica, and per tenant within it.
    refusal_hold_max_s: float = Field(1.0, ge=0, le=60)
    max_held_refusals: int = Field(64, ge=0)
    max_held_refusals_per_tenant: int = Field(32, ge=0)
    # `keys rotate` without --grace / grace_s: how long a rotated key's previous secret still works.
    rotation_grace_s: float = Field(0.0, ge=0)
    # /metrics tenant label: tenants with keys, up to this many; the rest fold into "other".
    max_tenant_labels: int = Field(50, ge=1, le=1000)
    audit_file: Path = Path("audit.jsonl")
    budgets: BudgetActions = BudgetActions()

    def in_state_dir(self, path: Path, state_dir: Path) -> Path:
        return path if path.is_absolute() else state_dir / path
