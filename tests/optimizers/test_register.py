import shutil

import pytest

from models.registry import ModelRegistry
from optimizers.pipelines.common import Variant, cheapest_first, register_once

PROFILE = {"x86": {"method": "cpu-time-model", "measured": False, "batches": {"32": {"energy_j_per_inference": 1e-6}}}}


def _variants(tmp_path, tiny_mlp):
    cheap = tmp_path / "cheap.onnx"
    shutil.copy(tiny_mlp[0], cheap)
    return [
        Variant("fp32", tiny_mlp[0], quality={"accuracy": 0.97}, energy_profile=PROFILE,
                training=[{"step": "train", "energy_j": 5.0, "duration_s": 1.0, "method": "cpu-time-model", "hardware": "x86_64"}]),
        Variant("int8", cheap, "int8", quality={"accuracy": 0.96},
                energy_profile={"x86": {**PROFILE["x86"], "batches": {"32": {"energy_j_per_inference": 5e-7}}}}),
    ]


def test_registers_once_with_profile_quality_and_training_then_is_a_no_op(tmp_path, tiny_mlp):
    reg = ModelRegistry(tmp_path / "repo")
    variants = _variants(tmp_path, tiny_mlp)
    kwargs = {"quality_floor": {"accuracy": 0.95}, "fallback_variants": cheapest_first(variants, "accuracy", 0.95)}
    card, new = register_once(reg, "m", variants, tmp_path / "run", kwargs, log=lambda s: None)
    assert new and card.version == "1" and card.stage == "staging"
    assert card.variants["fp32"].training[0]["energy_j"] == 5.0
    assert card.variants["int8"].precision == "int8" and card.variants["int8"].energy_profile == variants[1].energy_profile
    assert card.fallback_variants == ["int8", "fp32"]
    reg.promote("m", "1")  # profiles and floors are satisfied

    again, new = register_once(reg, "m", variants, tmp_path / "run", kwargs, log=lambda s: None)
    assert not new and again.version == "1" and len(reg.versions("m")) == 1


def test_changed_quality_makes_a_new_version_and_a_missing_profile_blocks_promotion(tmp_path, tiny_mlp):
    from wattgate.errors import Unprocessable

    reg = ModelRegistry(tmp_path / "repo")
    variants = _variants(tmp_path, tiny_mlp)
    register_once(reg, "m", variants, tmp_path / "run", {}, log=lambda s: None)
    variants[1].quality = {"accuracy": 0.90}
    variants[1].energy_profile = {}
    card, new = register_once(reg, "m", variants, tmp_path / "run", {"quality_floor": {"accuracy": 0.95}}, log=lambda s: None)
    assert new and card.version == "2"
    with pytest.raises(Unprocessable, match="no energy profile"):
        reg.promote("m", "2")


def test_other_seeds_are_summed_into_one_training_record():
    from optimizers.pipelines.digits import _seed_total

    run = {"energy_j": 2.0, "duration_s": 1.0, "cpu_s": 0.5, "method": "cpu-time-model", "measured": False, "hardware": "x86_64"}
    per_seed = [[dict(run, step="kd-s1", details={"seed": 1})], [dict(run, step="kd-s2", details={"seed": 2})]]
    (total,) = _seed_total(per_seed)
    assert total["energy_j"] == 4.0 and total["cpu_s"] == 1.0 and total["details"]["seeds"] == [1, 2]
    assert total["method"] == "cpu-time-model" and total["measured"] is False
    assert _seed_total([]) == []
