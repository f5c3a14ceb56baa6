"""The model registry: layout, validation, safe names, atomic writes and the stage lifecycle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.digits import mlp_to_onnx
from models.registry import ModelRegistry, promotion_problems
from wattgate.errors import BadRequest, Conflict, InvalidName, ModelNotFound, Unprocessable


@pytest.fixture
def onnx_file(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "m.onnx"
    mlp_to_onnx([rng.random((64, 8)), rng.random((8, 10))], [np.zeros(8), np.zeros(10)], path)
    return path


def test_register_derives_io_and_hashes(tmp_path, onnx_file):
    reg = ModelRegistry(tmp_path / "repo")
    card = reg.register("digits", "1", {"fp32": onnx_file}, owner="ml-team", quality={"fp32": {"accuracy": 0.97}})
    assert card.inputs[0].model_dump() == {"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}
    assert {o.name: o.datatype for o in card.outputs} == {"probabilities": "FP32", "label": "INT64"}
    v = card.variants["fp32"]
    assert len(v.sha256) == 64 and v.size_bytes == onnx_file.stat().st_size
    on_disk = json.loads((tmp_path / "repo" / "digits" / "1" / "card.json").read_text())
    assert on_disk["owner"] == "ml-team" and on_disk["stage"] == "staging"
    assert reg.show("digits").version == "1"
    assert not list((tmp_path / "repo" / "digits" / "1").glob(".*tmp"))  # no temp files left behind


def test_invalid_onnx_is_rejected(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(BadRequest, match="not a valid ONNX"):
        ModelRegistry(tmp_path / "repo").register("m", "1", {"fp32": bad})
    assert not (tmp_path / "repo" / "m" / "1" / "card.json").exists()


@pytest.mark.parametrize("name", ["../etc", "a/b", "..", ".hidden", "a\\b", "x" * 65, "", "a\x00b", "a..b"])
def test_hostile_names_are_refused(tmp_path, onnx_file, name):
    reg = ModelRegistry(tmp_path / "repo")
    with pytest.raises(InvalidName):
        reg.register(name, "1", {"fp32": onnx_file})
    with pytest.raises(InvalidName):
        reg.show(name)
    with pytest.raises(InvalidName):
        reg.register("ok", name, {"fp32": onnx_file})


def test_duplicate_version_conflicts(tmp_path, onnx_file):
    reg = ModelRegistry(tmp_path)
    reg.register("m", "1", {"fp32": onnx_file})
    with pytest.raises(Conflict):
        reg.register("m", "1", {"fp32": onnx_file})


def test_lifecycle_promote_gate_and_retire(tmp_path, onnx_file):
    reg = ModelRegistry(tmp_path)
    reg.register("m", "1", {"fp32": onnx_file}, quality={"fp32": {"accuracy": 0.5}}, quality_floor={"accuracy": 0.9})
    with pytest.raises(Unprocessable, match="no energy profile"):
        reg.promote("m", "1")
    reg.update_variant("m", "1", "fp32", energy_profile={"x86": {"method": "cpu-time-model"}})
    problems = promotion_problems(reg.show("m", "1"))
    assert problems == ["variant 'fp32' accuracy=0.5 is below the floor 0.9"]
    reg.update_variant("m", "1", "fp32", quality={"accuracy": 0.95})
    assert reg.promote("m", "1").stage == "production"
    reg.register("m", "2", {"fp32": onnx_file})
    assert reg.show("m").version == "1"  # newest production wins over newer staging
    reg.retire("m", "1")
    assert reg.show("m").version == "2"
    assert [c.version for c in reg.versions("m")] == ["1", "2"]
    with pytest.raises(ModelNotFound):
        reg.show("m", "7")


def test_promotion_refuses_a_variant_that_passes_on_average_but_fails_one_heldout_domain(tmp_path, onnx_file):
    reg = ModelRegistry(tmp_path)
    domains = {"docstrings": {"cosine_mean": 0.99}, "man-api": {"cosine_mean": 0.98}, "fortunes-heldout": {"cosine_mean": 0.90}}
    reg.register("m", "1", {"fp32": onnx_file, "student": onnx_file}, quality_floor={"cosine_mean": 0.95},
                 quality={"fp32": {"cosine_mean": 1.0}, "student": {"cosine_mean": 0.957}},  # the average passes
                 domain_quality={"fp32": {d: {"cosine_mean": 1.0} for d in domains}, "student": domains},
                 heldout_domains=["fortunes-heldout"])
    for v in ("fp32", "student"):
        reg.update_variant("m", "1", v, energy_profile={"x86": {"method": "cpu-time-model"}})
    card = reg.show("m", "1")
    assert card.variants["student"].domain_quality == domains and card.heldout_domains == ["fortunes-heldout"]
    assert promotion_problems(card) == [
        "variant 'student' cosine_mean=0.9 on domain 'fortunes-heldout' (held out) is below the floor 0.95 (overall 0.957)"]
    with pytest.raises(Unprocessable, match="fortunes-heldout"):
        reg.promote("m", "1")
    reg.update_variant("m", "1", "student", quality={"cosine_mean": 0.96})
    with pytest.raises(Unprocessable, match="fortunes-heldout"):
        reg.promote("m", "1")  # a better average does not help: the worst domain decides
