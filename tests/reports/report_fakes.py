"""Ledger rows, model cards and a settings file with known numbers for the report tests."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import yaml

from energy.carbon import J_PER_KWH
from energy.ledger import EnergyLedger, LedgerRecord
from models.card import ModelCard, TensorSpec, VariantCard

T0 = datetime(2026, 10, 5, tzinfo=timezone.utc).timestamp()  # a Monday in 2026-Q4
PUE = {"fr-x86": 1.2, "de-x86": 1.2, "gb-arm": 1.1}
REGION = {"fr-x86": "FR", "de-x86": "DE", "gb-arm": "GB"}
INTENSITY = {"FR": 50.0, "DE": 400.0, "GB": 200.0}


def row(i: int, *, time_s: float | None = None, model: str = "digits", variant: str = "fp32", pool: str = "fr-x86",
        tenant: str | None = "acme", cache: str = "miss", active_j: float = 0.02, idle_j: float = 0.01,
        batch_size: int = 4, known: bool = True, version: str = "1", measured: bool = False) -> LedgerRecord:
    """A request whose carbon follows energy/carbon.py: O = E x PUE x I, plus a fixed embodied part."""
    energy_j = active_j + idle_j
    region = REGION[pool]
    intensity = INTENSITY[region] if known else None
    operational = energy_j / J_PER_KWH * intensity * PUE[pool] if known else None
    embodied = 1e-7
    return LedgerRecord(
        time_s=T0 + 60.0 * i if time_s is None else time_s, request_id=f"r{i}", model=model, version=version,
        variant=variant, region=region, hardware="arm" if pool == "gb-arm" else "x86", pool=pool,
        batch_size=0 if cache == "hit" else batch_size, latency_ms=3.0, energy_j=energy_j,
        energy_method="rapl" if measured else "cpu-time-model", energy_measured=measured,
        intensity_g_per_kwh=intensity, carbon_g=None if not known else operational + embodied,
        operational_g=operational, embodied_g=embodied, cache=cache, tenant=tenant, route_reason="lowest-carbon",
        active_j=active_j, idle_j=idle_j, intensity_source="static/static/average-lca" if known else "none",
    )


def write_ledger(path: Path, rows, accounts=()) -> Path:
    with EnergyLedger(path, background=False) as ledger:
        for r in rows:
            ledger.append(r)
        for a in accounts:
            ledger.record_account(*a)
    return path


def card(name: str, version: str = "1", *, stage: str = "production", variants: dict | None = None,
         floor: dict | None = None, owner: str = "vision-team", description: str = "reads handwritten digits") -> ModelCard:
    spec = [TensorSpec(name="x", datatype="FP32", shape=[-1, 4])]
    variants = variants or {"fp32": ({"accuracy": 0.97}, 0.010)}
    return ModelCard(
        name=name, version=version, stage=stage, owner=owner, description=description, default_variant=next(iter(variants)),
        inputs=spec, outputs=spec, quality_floor=floor or {"accuracy": 0.95},
        variants={
            v: VariantCard(file=f"{v}.onnx", sha256="0" * 64, size_bytes=1, precision=v, inputs=spec, outputs=spec,
                           quality=q, energy_profile={"x86": {"method": "cpu-time-model", "measured": False,
                                                             "batches": {"1": {"energy_j_per_inference": j}}}})
            for v, (q, j) in variants.items()
        },
    )


def write_cards(repo: Path, cards) -> Path:
    for c in cards:
        d = repo / c.name / c.version
        d.mkdir(parents=True, exist_ok=True)
        (d / "card.json").write_text(c.model_dump_json())
    return repo


TOPOLOGY = {
    "client_regions": ["FR"],
    "pools": [
        {"name": name, "region": REGION[name], "hardware": "arm" if name == "gb-arm" else "x86", "pue": PUE[name],
         "capacity_rps": 100, "service_ms": 4, "rtt_ms": {"FR": 5}, "energy": {"*": 0.01}}
        for name in PUE
    ],
}


def write_settings(tmp: Path, *, repo: Path, ledger: Path, intensity: dict | None = None) -> Path:
    (tmp / "topology.yaml").write_text(yaml.safe_dump(TOPOLOGY))
    config = {
        "models": {"repository": str(repo)},
        "energy": {"ledger_path": str(ledger)},
        "routing": {"topology_file": str(tmp / "topology.yaml")},
        "intensity": intensity or {"provider": "static", "static": {"table": INTENSITY}},
    }
    path = tmp / "wattgate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
