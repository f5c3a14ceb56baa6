"""Typed serving settings, read once from a YAML file plus ``WATTGATE_`` environment variables, then passed down.

Environment variables override the YAML file; a section and its field are joined by one
underscore (``WATTGATE_CACHE_URL`` sets ``cache.url``, ``WATTGATE_SERVER_PORT`` sets ``server.port``).
The same file may hold the sections of other commands (``optimizers:``, ``loadtest:``): they read
them themselves (``wattgate.config_file.load_section``); serving skips them unread.
No other module reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from cache.settings import CacheSettings
from energy.settings import EnergySettings
from jobs.settings import JobsSettings
from routing.intensity.settings import IntensitySettings
from routing.settings import RoutingSettings
from tenants.settings import AuthSettings
from wattgate.config_file import COMMAND_SECTIONS, FileSettings, build, read_config


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    # OIP over gRPC (inference.GRPCInferenceService), as Triton on 8001; 0 turns gRPC off.
    grpc_port: int = Field(8001, ge=0, le=65535)
    # HAProxy + direct ingress measured ~17x the default Python proxy here (see README).
    proxy: Literal["haproxy", "default"] = "haproxy"
    ingress_replicas: int = Field(1, ge=1, le=64)
    ingress_num_cpus: float = Field(0.5, gt=0, le=64)
    max_ongoing_requests: int = Field(256, ge=1)
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    # Ray Serve's access log line per request. Off by default: the ledger already keeps every request
    # (id, model, pool, latency, energy), and the log line and its handler were ~4% of the ingress
    # replica's CPU samples under load (py-spy, digits c=32).
    access_log: bool = False
    # With no key, admin endpoints answer only to loopback clients.
    admin_api_key: SecretStr | None = None
    app_name: str = "wattgate"
    # Where this gateway's own replicas run, for carbon, when no routing topology names pools.
    region: str = "DE"
    hardware: Literal["x86", "arm", "gpu", "tpu"] = "x86"
    state_dir: Path = Path("var")
    # Where the local Ray node serves its own Prometheus metrics (ray_serve_*); 0: a free port Ray
    # picks, logged at start-up. Only for the Ray that `wattgate serve` starts, not one it joins.
    ray_metrics_port: int = Field(0, ge=0, le=65535)


class ModelServing(BaseModel):
    """How one model's variants are batched and executed on a replica."""

    max_batch_size: int = Field(32, ge=1, le=4096)
    batch_wait_timeout_s: float = Field(0.002, ge=0, le=1)
    intra_op_threads: int = Field(1, ge=1, le=256)
    inter_op_threads: int = Field(1, ge=1, le=256)
    # Text models: batches in flight at once, one worker thread each (2: one runs while the next
    # forms); a batch may waste at most this share of its tokens on padding (0 when the profile
    # shows padded batches losing to single sentences).
    max_concurrent_batches: int = Field(2, ge=1, le=64)
    text_max_pad_fraction: float = Field(0.1, ge=0, lt=1)
    enabled: bool = True
    # Restrict which variants load; None loads all.
    variants: list[str] | None = None


class ModelsSettings(BaseModel):
    repository: Path = Path("model_repository")
    defaults: ModelServing = ModelServing()
    per_model: dict[str, ModelServing] = Field(default_factory=dict)
    # Load every live model at startup (Triton's default); otherwise only ``load`` these.
    load: list[str] | None = None

    def serving(self, name: str) -> ModelServing:
        override = self.per_model.get(name)
        if override is None:
            return self.defaults
        merged = self.defaults.model_dump()
        merged.update(override.model_dump(exclude_unset=True))
        return ModelServing(**merged)


class PoolExecutorSettings(BaseModel):
    """Where a topology pool runs. ``local``: in the ingress process (logical pools on this node);
    ``ray``: a Serve deployment pinned to nodes by label; ``oip``: a remote OIP server (Triton, KServe...)
    at ``url`` (host:port), spoken to over ``protocol``."""

    kind: Literal["local", "ray", "oip"] = "local"
    url: str | None = None
    protocol: Literal["http", "grpc"] = "http"
    model_name: str | None = None
    label_selector: dict[str, str] = Field(default_factory=dict)
    num_replicas: int = Field(1, ge=1, le=64)
    num_cpus: float = Field(0.5, gt=0, le=64)


class BudgetSettings(BaseModel):
    """Carbon budgets per model for the carbon-budget routing policy."""

    period_s: float = Field(3600.0, gt=0)
    models_g: dict[str, float] = Field(default_factory=dict)


class QualityGuardSettings(BaseModel):
    """The live quality guard: a sample of requests served by a cheaper variant also runs on the
    reference variant, off the request path, and the two answers are compared (README "Optimizing models")."""

    enabled: bool = False
    # Share of eligible requests (served by a non-reference variant) that are sampled.
    sample_rate: float = Field(0.01, ge=0, le=1)
    # With a budget, sampling also stops once the guard's own metered energy this hour reaches it.
    budget_j_per_hour: float | None = Field(None, gt=0)
    # The variant to compare against; per_model overrides it. Must exist in every guarded model's card.
    reference_variant: str = "fp32"
    per_model_reference: dict[str, str] = Field(default_factory=dict)
    # Rolling window of compared rows per variant, and the rows needed before a verdict.
    window_rows: int = Field(200, ge=1, le=100_000)
    min_rows: int = Field(20, ge=1, le=100_000)
    # Only sample while the grid where the guard runs is at or below this intensity (a clean window);
    # None: whatever the grid. An unknown intensity counts as clean.
    max_intensity_g_per_kwh: float | None = Field(None, ge=0)
    # Samples waiting for the reference; a full queue drops (and counts) the new sample.
    queue_size: int = Field(16, ge=1, le=10_000)
    # Below the card's floor the guard always alerts (log line, metric); "exclude" also stops routing
    # to the variant until an operator re-enables it (PUT /v2/admin/quality/{model}/{variant}).
    action: Literal["alert", "exclude"] = "alert"
    # Per model, a floor that replaces the card's for the live metric.
    floors: dict[str, float] = Field(default_factory=dict)

    @field_validator("min_rows")
    @classmethod
    def _min_rows(cls, v: int, info) -> int:
        window = info.data.get("window_rows", v)
        if v > window:
            raise ValueError(f"min_rows ({v}) must not exceed window_rows ({window})")
        return v

    def reference(self, model: str) -> str:
        return self.per_model_reference.get(model, self.reference_variant)


class Settings(FileSettings):
    """What serving reads; ``WATTGATE_`` variables over the config file (``wattgate.config_file``)."""

    server: ServerSettings = ServerSettings()
    models: ModelsSettings = ModelsSettings()
    # Typed by the rooms that own them, composed here.
    cache: CacheSettings = CacheSettings()
    energy: EnergySettings = EnergySettings()
    intensity: IntensitySettings = IntensitySettings()
    routing: RoutingSettings = RoutingSettings()
    # Executors for the topology's pools, by pool name; pools not named here run locally.
    pools: dict[str, PoolExecutorSettings] = Field(default_factory=dict)
    budgets: BudgetSettings = BudgetSettings()
    jobs: JobsSettings = JobsSettings()  # deferrable jobs (jobs/settings.py)
    # Tenants: API keys, quotas, fairness, carbon budgets per tenant, the audit log.
    auth: AuthSettings = AuthSettings()
    quality_guard: QualityGuardSettings = QualityGuardSettings()

    def ledger_file(self) -> Path:
        """The energy ledger: ``energy.ledger_path``, relative to ``server.state_dir`` unless absolute."""
        path = self.energy.ledger_path
        return path if path.is_absolute() else self.server.state_dir / path

    def state_path(self, path: Path) -> Path:
        """``path`` relative to ``server.state_dir`` unless absolute (keys, audit log)."""
        return path if path.is_absolute() else self.server.state_dir / path

    def fingerprint(self) -> str:
        """A short id of these settings; /v2 reports it, so a redeploy can tell when it has taken effect."""
        import hashlib

        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]

    @field_validator("cache", "energy", "routing", "intensity", "pools", "budgets", "jobs", "auth", "quality_guard",
                     mode="before")
    @classmethod
    def _none_is_empty(cls, v):
        return {} if v is None else v


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read the YAML file (if any) under the environment; raise BadRequest with readable messages.

    The other commands' sections (``COMMAND_SECTIONS``) are dropped unread, so they neither fail
    serving nor change its ``fingerprint()``.
    """
    values = {k: v for k, v in read_config(config_file).items() if k not in COMMAND_SECTIONS}
    return build(Settings, values, **overrides)
