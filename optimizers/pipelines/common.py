"""What both pipelines share: metered cached steps, profiling, registering a version once, the Pareto report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from models.card import worst_domain
from optimizers.metering import make_run_meter, metered
from optimizers.progress import stage
from optimizers.settings import OptimizersSettings
from optimizers.stepcache import StepCache, content_hash


@dataclass
class Variant:
    name: str
    path: Path
    precision: str = "fp32"
    hardware: list[str] = field(default_factory=lambda: ["x86", "arm"])
    quality: dict[str, float] = field(default_factory=dict)
    # Per corpus domain, the same metrics on that domain's held-out sentences.
    domain_quality: dict[str, dict[str, float]] = field(default_factory=dict)
    training: list[dict[str, Any]] = field(default_factory=list)
    energy_profile: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Runs steps through the cache, each inside a metered window whose record is stored with the result."""

    def __init__(self, settings: OptimizersSettings, pipeline: str, log: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.dir = Path(settings.work_dir) / pipeline
        self.cache = StepCache(self.dir / "cache")
        self.meter = make_run_meter(settings.profile.host_profile)
        self.log = log

    def step(self, name: str, inputs: dict[str, Any], fn: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
        def wrapped(workdir: Path) -> dict[str, Any]:
            self.log(f"  running {name} ...")
            with metered(self.meter, name) as record, stage(name):
                result = fn(workdir)
            result["run"] = record.to_dict()
            self.log(f"  {name}: {record.duration_s:.1f} s, {record.energy_j:.1f} J ({record.method})")
            return result

        return self.cache.run(name, inputs, wrapped)

    def profile(self, variant: Variant, make_inputs: Callable[[int], dict[str, np.ndarray]], tokens_per_row: float = 1.0) -> None:
        from optimizers.profile import profile_variant

        def run(_: Path) -> dict[str, Any]:
            return {"energy_profile": profile_variant(variant.path, make_inputs, self.settings.profile, tokens_per_row,
                                                      tuple(variant.hardware))}

        _, res = self.step(f"profile-{variant.name}", {"model": variant.path, "profile": self.settings.profile,
                                                        "tokens_per_row": tokens_per_row, "hw": variant.hardware}, run)
        variant.energy_profile = res["energy_profile"]
        variant.training.append(res["run"])


def _registered_index(run_dir: Path) -> dict[str, str]:
    path = run_dir / "registered.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def register_once(
    registry, model: str, variants: list[Variant], run_dir: Path, register_kwargs: dict[str, Any], log=print
) -> tuple[Any, bool]:
    """Register ``variants`` as the next version of ``model`` unless these exact files already are.

    Returns (card, registered_now). The key is the variants' content plus what the card says, so
    a rerun with nothing new is a no-op, and a changed setting makes a new version.
    """
    from wattgate.errors import ModelNotFound

    key = content_hash(model, {v.name: [v.path, v.quality, v.domain_quality, v.precision, v.hardware] for v in variants},
                       register_kwargs)[:20]
    index = _registered_index(run_dir)
    if key in index:
        try:
            card = registry.show(model, index[key])
            from optimizers.stepcache import file_sha256

            if all(card.variants.get(v.name) and card.variants[v.name].sha256 == file_sha256(v.path) for v in variants):
                log(f"{model} v{card.version} already holds these variants: nothing to register")
                return card, False
        except ModelNotFound:
            pass
    try:
        numeric = [int(c.version) for c in registry.versions(model) if c.version.isdigit()]
    except ModelNotFound:
        numeric = []
    version = str(max(numeric, default=0) + 1)
    registry.register(
        model, version, {v.name: v.path for v in variants},
        precision={v.name: v.precision for v in variants},
        hardware={v.name: v.hardware for v in variants},
        quality={v.name: v.quality for v in variants},
        domain_quality={v.name: v.domain_quality for v in variants},
        **register_kwargs,
    )
    for v in variants:
        registry.update_variant(model, version, v.name, energy_profile=v.energy_profile)
        for record in v.training:
            registry.update_variant(model, version, v.name, training=record)
    index[key] = version
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "registered.json").write_text(json.dumps(index, indent=2))
    log(f"registered {model} v{version} with variants {', '.join(v.name for v in variants)} (stage staging)")
    return registry.show(model, version), True


def cheapest_first(variants: list[Variant], metric: str, floor: float, batch: int = 32) -> list[str]:
    """Variants at or above the quality floor, cheapest x86 J/inference first: the router's fallbacks."""
    from optimizers.profile import energy_per_inference

    ok = [v for v in variants if worst_domain(v.quality, v.domain_quality, metric)[0] >= floor and "x86" in v.energy_profile]
    return [v.name for v in sorted(ok, key=lambda v: energy_per_inference(v.energy_profile, "x86", batch))]
