"""Routing settings: the starting policy, its params, the default SLO and the topology file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from routing.policies import make_policy
from wattgate.errors import BadRequest


class RoutingSettings(BaseModel):
    # Policy at start-up; ops change it live through the admin API (routing.control.RoutingControl).
    policy: str = "lowest-carbon"
    params: dict[str, Any] = Field(default_factory=dict)
    # p99 latency SLO for requests whose model card or request names none.
    slo_ms: float = Field(100.0, gt=0, le=600_000)
    # Relative paths are relative to the working directory the gateway starts in (the repo root).
    topology_file: Path = Path("routing/scenarios/local-topology.yaml")
    # Region assumed for clients that do not say where they are.
    default_client_region: str = Field("FR", min_length=1)
    history_len: int = Field(100, ge=1, le=10_000)

    @model_validator(mode="after")
    def _policy_builds(self) -> "RoutingSettings":
        try:
            make_policy(self.policy, **self.params)
        except BadRequest as exc:
            raise ValueError(exc.message) from None
        return self
