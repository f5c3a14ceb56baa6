"""One row of the energy ledger: what a request cost and how that was obtained; the ledger's and its exports' columns."""

from __future__ import annotations

from dataclasses import dataclass, fields

CACHE_STATES = ("hit", "miss", "bypass", "off")


@dataclass(frozen=True)
class LedgerRecord:
    time_s: float  # unix seconds
    request_id: str
    model: str
    version: str
    variant: str
    region: str
    hardware: str
    pool: str
    batch_size: int
    latency_ms: float
    energy_j: float
    energy_method: str
    energy_measured: bool
    intensity_g_per_kwh: float | None  # None: no reading for the region (carbon unknown, not 0)
    carbon_g: float | None
    operational_g: float | None
    embodied_g: float
    cache: str  # "hit" | "miss" | "bypass" | "off"
    tenant: str | None = None
    route_reason: str | None = None
    # energy_j == active_j + idle_j: what the request's own execution added, and its share of idle power.
    active_j: float = 0.0
    idle_j: float = 0.0
    intensity_source: str | None = None  # "provider/kind/signal", or "none"

    def __post_init__(self) -> None:
        if self.cache not in CACHE_STATES:
            raise ValueError(f"cache must be one of {CACHE_STATES}, got {self.cache!r}")


FIELDS = tuple(f.name for f in fields(LedgerRecord))


@dataclass(frozen=True)
class JobRecord:
    """One deferrable job in the ledger: when it was asked for, when it ran and why, and the carbon
    it cost against the counterfactual (the same requests run at submission, same pool)."""

    job_id: str
    time_s: float  # unix seconds, when the job finished
    model: str
    version: str | None
    state: str
    decision: str  # "shifted" | "now-is-cleanest" | "no-forecast"
    plan_reason: str
    submitted_at: str  # RFC 3339, provider clock (replay time when replaying)
    scheduled_for: str
    deadline: str
    region: str | None  # the region the plan expected to be cleanest
    expected_intensity_g_per_kwh: float | None
    requests: int
    energy_j: float
    carbon_g: float | None  # None: some request's carbon is unknown
    counterfactual_carbon_g: float | None
    tenant: str | None = None  # the submitting key's tenant; None with auth off (and for jobs booked before schema 4)


JOB_FIELDS = tuple(f.name for f in fields(JobRecord))


@dataclass(frozen=True)
class QualityRecord:
    """One live quality-guard sample: a request's answer from ``variant`` compared with ``reference``'s.

    ``energy_j`` and ``carbon_g`` are the guard's own cost (the reference run); ``served_energy_j`` is
    what the served variant spent on the same request, so the two give the saving the variant bought.
    """

    time_s: float
    request_id: str
    model: str
    version: str
    variant: str
    reference: str
    metric: str  # "cosine_mean" | "top1_agreement"
    value: float  # mean over the request's rows
    rows: int
    energy_j: float
    carbon_g: float | None
    served_energy_j: float | None
    energy_method: str
    accuracy: float | None = None  # against the client's labels, when it sent them
    reference_accuracy: float | None = None


QUALITY_FIELDS = tuple(f.name for f in fields(QualityRecord))
