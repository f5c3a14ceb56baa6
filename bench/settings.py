"""Typed settings of the peer benchmark (``make bench``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class BenchSettings(BaseModel):
    """Defaults of ``python -m bench.peers`` (``make bench``); its flags override them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    concurrency: tuple[int, ...] = (1, 8, 32, 128)
    # Seconds per cell; None: 8 s for digits alone, 4 s once MiniLM cells triple the count (~10 min).
    duration_s: float | None = Field(default=None, gt=0)
    warmup_s: float = Field(default=1.5, ge=0)
    systems: tuple[str, ...] = (
        "ort-inproc", "uvicorn-ort", "rayserve-default", "rayserve-haproxy", "triton",
        "wattgate", "wattgate-cache", "wattgate-green",
    )
    # 32: the naive baseline of the text target is plain Ray Serve with @serve.batch(max_batch_size=32).
    max_batch_size: int = Field(default=32, ge=1)
    batch_wait_timeout_s: float = Field(default=0.002, ge=0)
    # Serving replicas of each Ray Serve system: plain Ray Serve's deployment and wattgate's ingress
    # (server.ingress_replicas) get the same number, so neither wins by having more processes.
    replicas: int = Field(default=1, ge=1)
    # Zipf exponent of the cache-on cell's inputs over the 1,797 digits images (~50 % hits).
    zipf_s: float = Field(default=1.1, gt=0)
    triton_python: Path = Path(".venv-triton/bin/python")
    results_dir: Path = Path("loadtests/results")
    server_start_timeout_s: float = Field(default=180.0, gt=0)
