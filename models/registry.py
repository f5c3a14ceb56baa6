"""The on-disk model repository: name -> version -> variant ONNX files plus a card per version.

Layout::

    <root>/<name>/<version>/card.json
    <root>/<name>/<version>/<variant>.onnx
    <root>/<name>/<version>/<support files, e.g. tokenizer.json>

Every write goes to a temporary file in the same directory and is renamed into place, so a reader
never sees half a card or half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from models.card import ModelCard, Preprocess, TensorSpec, VariantCard, check_name, check_variant, worst_domain
from models.onnx_io import inspect_onnx, sha256_file
from wattgate.errors import BadRequest, Conflict, ModelNotFound, Unprocessable

CARD_FILE = "card.json"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- reading ---------------------------------------------------------------------------
    def _version_dir(self, name: str, version: str) -> Path:
        return self.root / check_name(name) / check_name(version, "version")

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> list[ModelCard]:
        base = self.root / check_name(name)
        if not base.is_dir():
            raise ModelNotFound(f"unknown model {name!r}")
        cards = [self._read_card(d / CARD_FILE) for d in base.iterdir() if (d / CARD_FILE).is_file()]
        return sorted(cards, key=ModelCard.version_key)

    def list_models(self) -> list[ModelCard]:
        """Every version of every model, oldest version first within a model."""
        return [card for name in self.names() for card in self.versions(name)]

    def show(self, name: str, version: str | None = None) -> ModelCard:
        """A version's card; with no version, the newest production version, else the newest live one."""
        if version is not None:
            path = self._version_dir(name, version) / CARD_FILE
            if not path.is_file():
                raise ModelNotFound(f"unknown version {version!r} of model {name!r}")
            return self._read_card(path)
        cards = [c for c in self.versions(name) if c.stage != "retired"]
        if not cards:
            raise ModelNotFound(f"model {name!r} has no live version")
        prod = [c for c in cards if c.stage == "production"]
        return (prod or cards)[-1]

    def variant_path(self, card: ModelCard, variant: str | None = None) -> Path:
        _, v = card.variant(variant)
        return self._version_dir(card.name, card.version) / v.file

    def support_path(self, card: ModelCard, filename: str) -> Path:
        path = self._version_dir(card.name, card.version) / filename
        if path.parent != self._version_dir(card.name, card.version):
            raise BadRequest(f"support file {filename!r} escapes the model directory")
        return path

    @staticmethod
    def _read_card(path: Path) -> ModelCard:
        return ModelCard.model_validate_json(path.read_bytes())

    # -- writing ---------------------------------------------------------------------------
    def _write_card(self, card: ModelCard) -> None:
        data = json.dumps(card.model_dump(mode="json"), indent=2, sort_keys=True).encode()
        _atomic_write_bytes(self._version_dir(card.name, card.version) / CARD_FILE, data)

    def register(
        self,
        name: str,
        version: str,
        variants: dict[str, str | Path],
        *,
        owner: str = "unknown",
        description: str = "",
        default_variant: str | None = None,
        precision: dict[str, str] | None = None,
        hardware: dict[str, list[str]] | None = None,
        quality: dict[str, dict[str, float]] | None = None,
        domain_quality: dict[str, dict[str, dict[str, float]]] | None = None,
        heldout_domains: list[str] | None = None,
        preprocess: dict[str, Any] | None = None,
        support_files: Iterable[str | Path] = (),
        served_inputs: list[dict] | None = None,
        quality_floor: dict[str, float] | None = None,
        fallback_variants: list[str] | None = None,
    ) -> ModelCard:
        """Validate each ONNX file, copy it in and write the version's card (stage ``staging``)."""
        check_name(name)
        check_name(version, "version")
        if not variants:
            raise BadRequest("register needs at least one variant")
        vdir = self._version_dir(name, version)
        if (vdir / CARD_FILE).exists():
            raise Conflict(f"model {name!r} version {version!r} already exists")
        cards: dict[str, VariantCard] = {}
        for variant, src in variants.items():
            check_variant(variant)
            src = Path(src)
            if not src.is_file():
                raise BadRequest(f"variant {variant!r}: no file at {src}")
            inputs, outputs = inspect_onnx(src)
            cards[variant] = VariantCard(
                file=f"{variant}.onnx",
                sha256=sha256_file(src),
                size_bytes=src.stat().st_size,
                precision=(precision or {}).get(variant, variant if variant in ("fp32", "fp16", "int8") else "fp32"),
                inputs=inputs,
                outputs=outputs,
                hardware=(hardware or {}).get(variant, ["x86", "arm"]),
                quality=(quality or {}).get(variant, {}),
                domain_quality=(domain_quality or {}).get(variant, {}),
            )
        default = default_variant or next(iter(variants))
        if default not in cards:
            raise BadRequest(f"default variant {default!r} is not among {sorted(cards)}")
        served_in = [TensorSpec(**t) for t in served_inputs] if served_inputs else cards[default].inputs
        card = ModelCard(
            name=name,
            version=version,
            owner=owner,
            description=description,
            default_variant=default,
            variants=cards,
            preprocess=Preprocess(**preprocess) if preprocess else None,
            inputs=served_in,
            outputs=cards[default].outputs,
            quality_floor=quality_floor or {},
            heldout_domains=list(heldout_domains or []),
            fallback_variants=[v for v in (fallback_variants or []) if v in cards],
            history=[_event("registered", "staging")],
        )
        for variant, src in variants.items():
            _atomic_copy(Path(src), vdir / cards[variant].file)
        for extra in support_files:
            extra = Path(extra)
            _atomic_copy(extra, vdir / check_name(extra.name, "support file name"))
        self._write_card(card)
        return card

    def update_variant(self, name: str, version: str, variant: str, **fields: Any) -> ModelCard:
        """Merge ``quality`` / ``energy_profile`` dicts and append ``training`` records."""
        card = self.show(name, version)
        _, v = card.variant(variant)
        for key, value in fields.items():
            if key in ("quality", "energy_profile"):
                getattr(v, key).update(value)
            elif key == "training":
                v.training.append(value)
            else:
                raise BadRequest(f"update_variant cannot change {key!r}")
        self._write_card(card)
        return card

    def promote(self, name: str, version: str) -> ModelCard:
        """staging -> production, only if every variant has an energy profile and meets the quality floor on every domain."""
        card = self.show(name, version)
        if card.stage == "production":
            return card
        problems = promotion_problems(card)
        if problems:
            raise Unprocessable(f"cannot promote {name}:{version}: " + "; ".join(problems))
        card.stage = "production"
        card.history.append(_event("promoted", "production"))
        self._write_card(card)
        return card

    def retire(self, name: str, version: str) -> ModelCard:
        card = self.show(name, version)
        card.stage = "retired"
        card.history.append(_event("retired", "retired"))
        self._write_card(card)
        return card


def promotion_problems(card: ModelCard) -> list[str]:
    problems = []
    for vname, v in sorted(card.variants.items()):
        if not v.energy_profile:
            problems.append(f"variant {vname!r} has no energy profile (run `wattgate optimize` or profile it)")
        for metric, floor in card.quality_floor.items():
            if metric not in v.quality:
                problems.append(f"variant {vname!r} lacks quality metric {metric!r} (floor {floor})")
                continue
            # The worst domain decides, not the average: a variant may pass overall and fail on text unlike its training text.
            got, domain = worst_domain(v.quality, v.domain_quality, metric)
            if got < floor and domain is None:
                problems.append(f"variant {vname!r} {metric}={got:.4g} is below the floor {floor}")
            elif got < floor:
                held = " (held out)" if domain in card.heldout_domains else ""
                problems.append(f"variant {vname!r} {metric}={got:.4g} on domain {domain!r}{held} is below the floor {floor} "
                                f"(overall {v.quality[metric]:.4g})")
    return problems


def _event(action: str, stage: str) -> dict[str, str]:
    return {"at": datetime.now(timezone.utc).isoformat(), "action": action, "stage": stage}
