"""Model cards: what a registered model version is, serves, costs and may be promoted to."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from wattgate.errors import InvalidName

# Names become path components; the character set rules out traversal ("..", "/", "\\", NUL).
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VARIANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

Stage = Literal["staging", "production", "retired"]
STAGES: tuple[str, ...] = ("staging", "production", "retired")


def check_name(value: str, what: str = "model name") -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value) or ".." in value:
        raise InvalidName(
            f"invalid {what} {str(value)[:80]!r}: use 1-64 characters from A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return value


def check_variant(value: str) -> str:
    if not isinstance(value, str) or not _VARIANT_RE.match(value):
        raise InvalidName(f"invalid variant {str(value)[:40]!r}: use 1-32 characters from a-z 0-9 _ -")
    return value


class TensorSpec(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    datatype: str
    shape: list[int]  # -1 marks a dynamic axis


class VariantCard(BaseModel):
    file: str
    sha256: str
    size_bytes: int
    precision: str = "fp32"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # Hardware classes ("x86", "arm", "gpu", "tpu") this variant is meant to run on.
    hardware: list[str] = Field(default_factory=lambda: ["x86", "arm"])
    quality: dict[str, float] = Field(default_factory=dict)
    # Per corpus domain (e.g. "man-overviews"), the same metrics on that domain's held-out sentences.
    domain_quality: dict[str, dict[str, float]] = Field(default_factory=dict)
    # Filled by optimizers/: per hardware class, per batch size: latency_ms, cpu_s, energy_j, method.
    energy_profile: dict[str, Any] = Field(default_factory=dict)
    training: list[dict[str, Any]] = Field(default_factory=list)


def worst_domain(quality: dict[str, float], domain_quality: dict[str, dict[str, float]], metric: str) -> tuple[float, str | None]:
    """The lowest ``metric`` over every domain (None: the overall figure, when no domain is lower or none is known)."""
    worst = (quality.get(metric, float("-inf")), None)
    for domain, values in sorted(domain_quality.items()):
        if metric in values and values[metric] < worst[0]:
            worst = (values[metric], domain)
    return worst


class Preprocess(BaseModel):
    """Work the gateway does before the runtime: e.g. tokenising BYTES text into input ids."""

    kind: Literal["text-tokenizer"]
    tokenizer_file: str
    max_length: int = 128


class ModelCard(BaseModel):
    name: str
    version: str
    stage: Stage = "staging"
    owner: str = "unknown"
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    description: str = ""
    default_variant: str
    variants: dict[str, VariantCard]
    preprocess: Preprocess | None = None
    # Served interface; differs from the ONNX graph's when the gateway preprocesses.
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # Variants the router may fall back to when a carbon budget is nearly spent, cheapest first.
    fallback_variants: list[str] = Field(default_factory=list)
    # A promotion to production needs each of these metrics at or above its floor.
    quality_floor: dict[str, float] = Field(default_factory=dict)
    # Corpus domains no variant was trained on (reported; the floor holds on every domain alike).
    heldout_domains: list[str] = Field(default_factory=list)
    history: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)

    @field_validator("version")
    @classmethod
    def _version(cls, v: str) -> str:
        return check_name(v, "version")

    def variant(self, name: str | None) -> tuple[str, VariantCard]:
        from wattgate.errors import ModelNotFound

        key = name or self.default_variant
        try:
            return key, self.variants[key]
        except KeyError:
            raise ModelNotFound(
                f"model {self.name!r} version {self.version!r} has no variant {key!r} "
                f"(has: {', '.join(sorted(self.variants))})"
            ) from None

    def version_key(self) -> tuple:
        """Sort key: numeric versions numerically, others lexically after them."""
        return (0, int(self.version), "") if self.version.isdigit() else (1, 0, self.version)
