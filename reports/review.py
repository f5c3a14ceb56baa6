"""Per-model review: anomalies over the period, impact statements of production models, retirement candidates.

Pure: ledger rows and model cards in, frozen findings out.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

from energy.anomaly import EnergyAnomalyDetector, EnergyObservation
from energy.ledger_record import LedgerRecord
from models.card import ModelCard
from reports.figures import SciRow, sci_row

# Default of ``--retire-below-requests-per-day``: a model served fewer times a day than this is a candidate.
DEFAULT_RETIRE_BELOW_REQUESTS_PER_DAY = 10.0


@dataclass(frozen=True)
class Anomaly:
    time_s: float
    model: str
    variant: str
    pool: str
    state: str  # "started" | "cleared"
    cause: str
    observed_j_per_request: float
    expected_j_per_request: float
    ratio: float


@dataclass(frozen=True)
class AnomalyScan:
    events: tuple[Anomaly, ...]
    observed: int
    ignored: int  # NaN or negative energy
    skipped: int  # cache hits: ran no model


def scan_anomalies(rows: Iterable[LedgerRecord], detector: EnergyAnomalyDetector) -> AnomalyScan:
    """Run the detector over the rows in time order. A ledger row is one request; its rows are not
    recorded, so the detector compares active J per request (rows=1)."""
    events, observed = [], 0
    for r in sorted(rows, key=lambda r: r.time_s):
        observed += 1
        event = detector.observe(EnergyObservation(
            model=r.model, variant=r.variant, pool=r.pool, hardware=r.hardware, version=r.version,
            batch_size=r.batch_size, rows=1, active_j=r.active_j, time_s=r.time_s,
        ))
        if event is not None:
            events.append(Anomaly(r.time_s, event.model, event.variant, event.pool, event.state, event.cause,
                                  event.observed_j_per_inference, event.expected_j_per_inference, event.ratio))
    return AnomalyScan(tuple(events), observed, detector.ignored, detector.skipped)


@dataclass(frozen=True)
class VariantComparison:
    variant: str
    precision: str
    quality: dict[str, float]
    profile_hardware: str | None  # the hardware class the profile figure is for
    profile_j_per_inference: float | None  # the card's energy profile at batch 1
    profile_method: str | None
    requests: int  # served in the period
    energy_j: float


@dataclass(frozen=True)
class ImpactStatement:
    model: str
    version: str
    purpose: str
    owner: str
    default_variant: str
    quality: dict[str, float]
    quality_floor: dict[str, float]
    figures: SciRow  # the period's rows of this model and version
    variants: tuple[VariantComparison, ...]


def _profile_at_batch_1(card: ModelCard, variant: str, hardware: str | None) -> tuple[str | None, float | None, str | None]:
    profile = card.variants[variant].energy_profile or {}
    classes = [hardware] if hardware in profile else sorted(profile)
    for hw in classes:
        entry = profile.get(hw) or {}
        batch = (entry.get("batches") or {}).get("1") or {}
        if "energy_j_per_inference" in batch:
            return hw, float(batch["energy_j_per_inference"]), entry.get("method")
    return None, None, None


def impact_statements(rows: Sequence[LedgerRecord], cards: Iterable[ModelCard]) -> list[ImpactStatement]:
    out = []
    for card in sorted(cards, key=lambda c: (c.name, c.version_key())):
        if card.stage != "production":
            continue
        mine = [r for r in rows if r.model == card.name and r.version == card.version]
        hardware = Counter(r.hardware for r in mine).most_common(1)[0][0] if mine else None
        variants = []
        for name, vcard in sorted(card.variants.items(), key=lambda kv: (kv[0] != card.default_variant, kv[0])):
            served = [r for r in mine if r.variant == name]
            hw, j, method = _profile_at_batch_1(card, name, hardware)
            variants.append(VariantComparison(name, vcard.precision, dict(vcard.quality), hw, j, method, len(served),
                                              sum(r.energy_j for r in served)))
        default = card.variants.get(card.default_variant)
        out.append(ImpactStatement(
            card.name, card.version, card.description or "(no description on the card)", card.owner,
            card.default_variant, dict(default.quality) if default else {}, dict(card.quality_floor),
            sci_row(f"{card.name}/{card.version}", mine), tuple(variants),
        ))
    return out


@dataclass(frozen=True)
class RetirementCandidate:
    model: str
    requests: int
    requests_per_day: float
    energy_j: float
    carbon_g: float
    reasons: tuple[str, ...]


def retirement_candidates(rows: Sequence[LedgerRecord], cards: Iterable[ModelCard], days: float,
                          below_requests_per_day: float) -> list[RetirementCandidate]:
    """Models that used energy in the period and either served fewer than ``below_requests_per_day``
    requests a day, or whose live (production) card's default variant is below its own quality floor."""
    below_floor: dict[str, str] = {}
    for card in cards:
        default = card.variants.get(card.default_variant)
        if card.stage != "production" or default is None:
            continue
        short = [f"{m} {default.quality.get(m, float('nan')):g} < floor {f:g}" for m, f in sorted(card.quality_floor.items())
                 if not default.quality.get(m, float("-inf")) >= f]
        if short:
            below_floor[card.name] = f"version {card.version} below its quality floor: {', '.join(short)}"
    sums: dict[str, list] = {}
    for r in rows:
        s = sums.setdefault(r.model, [0, 0.0, 0.0])
        s[0] += 1
        s[1] += r.energy_j
        s[2] += r.carbon_g or 0.0
    out = []
    for model, (requests, energy_j, carbon_g) in sorted(sums.items()):
        if energy_j <= 0:
            continue
        per_day = requests / days if days > 0 else float(requests)
        reasons = []
        if per_day < below_requests_per_day:
            reasons.append(f"{per_day:.3g} requests/day < {below_requests_per_day:g}")
        if model in below_floor:
            reasons.append(below_floor[model])
        if reasons:
            out.append(RetirementCandidate(model, requests, per_day, energy_j, carbon_g, tuple(reasons)))
    return out
