"""A deferrable job: OIP infer requests to run before a deadline, its plan and its state."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

State = Literal["scheduled", "running", "done", "failed", "expired", "cancelled"]
STATES: tuple[State, ...] = ("scheduled", "running", "done", "failed", "expired", "cancelled")
FINISHED = frozenset({"done", "failed", "expired", "cancelled"})

# How the window was chosen: moved to a cleaner window, already the cleanest now, or no forecast.
Decision = Literal["shifted", "now-is-cleanest", "no-forecast"]


def iso(t: datetime | None) -> str | None:
    return None if t is None else t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Plan:
    """When a job runs and why: the window's start and end on the provider's clock, its expected
    intensity (the cleanest region's forecast mean over the window) and the forecast it came from."""

    start: datetime
    end: datetime
    decision: Decision
    reason: str
    expected_g_per_kwh: float | None = None
    region: str | None = None
    forecast_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"start": iso(self.start), "end": iso(self.end), "decision": self.decision, "reason": self.reason,
                "expected_g_per_kwh": self.expected_g_per_kwh, "region": self.region,
                "forecast_at": iso(self.forecast_at)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        def t(v):
            return None if v is None else datetime.fromisoformat(v.replace("Z", "+00:00"))
        return cls(t(d["start"]), t(d["end"]), d["decision"], d["reason"], d.get("expected_g_per_kwh"),
                   d.get("region"), t(d.get("forecast_at")))


@dataclass(frozen=True)
class JobRequest:
    """One stored OIP infer request body, exactly as /infer would take it."""

    body: bytes
    header_length: int | None = None  # binary tensor extension: Inference-Header-Content-Length
    content_type: str | None = None


@dataclass
class Job:
    id: str
    model: str
    version: str | None  # None: the model's default version when it runs
    submitted_at: datetime  # provider clock (replay time when replaying)
    deadline: datetime
    plan: Plan
    requests_n: int
    rows: int
    expected_run_s: float
    # Intensity per region at submission: the counterfactual "had it run at once".
    intensity_at_submission: dict[str, float] = field(default_factory=dict)
    state: State = "scheduled"
    callback_url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)  # x-client-region of the submitter
    created_wall_s: float = 0.0
    started_wall_s: float | None = None
    finished_wall_s: float | None = None
    error: str | None = None
    cancel_requested: bool = False
    results: list[dict[str, Any] | None] = field(default_factory=list)
    # Who submitted it (from the API key, or a trusted proxy's X-Tenant): its requests run, are
    # ledgered and spend the budget as this tenant; only this tenant (or an admin) sees the job.
    tenant: str | None = None
    key_id: str | None = None

    def summary(self) -> dict[str, Any]:
        """What POST answers (202) and what GET starts with."""
        return {"id": self.id, "state": self.state, "model": self.model, "version": self.version,
                "scheduled_for": iso(self.plan.start), "expected_intensity_g_per_kwh": self.plan.expected_g_per_kwh,
                "deadline": iso(self.deadline), "submitted_at": iso(self.submitted_at), "plan": self.plan.to_dict(),
                "requests": self.requests_n, "expected_run_s": self.expected_run_s, "tenant": self.tenant}

    def to_dict(self, with_results: bool = True) -> dict[str, Any]:
        out = self.summary()
        out["error"] = self.error
        if with_results:
            out["results"] = self.results
            out["totals"] = totals(self.results)
        return out


def totals(results: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Energy and carbon of a job's finished requests, and the carbon had each run at submission."""
    done = [r for r in results if r is not None and "error" not in r]
    energy = sum(r["parameters"].get("energy_j") or 0.0 for r in done)
    carbon = [r["parameters"].get("carbon_g") for r in done]
    cf = [r.get("counterfactual_carbon_g") for r in done]
    known = done and all(c is not None for c in carbon) and all(c is not None for c in cf)
    return {"requests_done": len(done), "energy_j": energy,
            "carbon_g": sum(carbon) if known else None,
            "counterfactual_carbon_g": sum(cf) if known else None,
            "carbon_avoided_g": (sum(cf) - sum(carbon)) if known else None}
