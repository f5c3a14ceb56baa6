import pytest

from optimizers.pareto import Point, budget_table, pareto_front, recommend, write_report
from optimizers.search import Candidate, mlp_space, search

POINTS = [Point("big", 0.99, 10.0), Point("mid", 0.97, 3.0), Point("bad", 0.95, 5.0), Point("small", 0.90, 1.0),
          Point("tie", 0.97, 3.0)]


def test_front_drops_dominated_points_and_sorts_cheapest_first():
    front = pareto_front(POINTS)
    assert [p.name for p in front] == ["small", "mid", "tie", "big"]
    assert "bad" not in {p.name for p in front}


def test_recommendation_is_the_best_quality_within_budget():
    assert recommend(POINTS, 4.0).name == "mid"
    assert recommend(POINTS, 100).name == "big"
    assert recommend(POINTS, 0.5) is None
    assert [p.name for _, p in budget_table(POINTS)][-1] == "big"


def test_search_keeps_the_pareto_set_of_measured_candidates(tmp_path):
    quality = {"w16-d1": 0.90, "w16-d2": 0.89, "w64-d1": 0.95, "w64-d2": 0.96}
    energy = {"w16-d1": 1.0, "w16-d2": 1.5, "w64-d1": 2.0, "w64-d2": 3.0}

    def train(cand: Candidate, d):
        return cand.name, quality[cand.name]

    report = search(mlp_space(64, 10, (64, 16), (2, 1)), train,
                    lambda name: {"energy_j_per_inference": energy[name], "latency_ms": 0.1}, tmp_path, batch=32)
    assert {t.candidate.name for t in report.front} == {"w16-d1", "w64-d1", "w64-d2"}
    assert report.trials[0].candidate.params["sizes"] == (64, 16, 10)
    assert report.rows()[1]["frontier"] == ""


def test_report_writes_markdown_and_a_png_for_profiled_variants(tmp_path, tiny_mlp):
    from models.registry import ModelRegistry

    reg = ModelRegistry(tmp_path / "repo")
    path = tiny_mlp[0]
    reg.register("m", "1", {"fp32": path, "int8": path}, quality={"fp32": {"accuracy": 0.97}, "int8": {"accuracy": 0.96}})
    for name, e in (("fp32", 2e-6), ("int8", 1e-6)):
        reg.update_variant("m", "1", name, energy_profile={"x86": {"method": "cpu-time-model", "measured": False,
                                                                   "batches": {"32": {"energy_j_per_inference": e, "latency_ms": 0.1}}}})
    md, png = write_report(reg.show("m", "1"), tmp_path / "out", "accuracy", notes=["a note"])
    text = md.read_text()
    assert "| int8 | int8 | 0.9600 | 1e-06 |" in text
    assert "| <= 2e-06 | fp32 | 0.9700 |" in text and "- a note" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_refuses_a_model_without_profiles(tmp_path, tiny_mlp):
    from models.registry import ModelRegistry

    reg = ModelRegistry(tmp_path / "repo")
    reg.register("m", "1", {"fp32": tiny_mlp[0]}, quality={"fp32": {"accuracy": 0.9}})
    with pytest.raises(ValueError, match="profile"):
        write_report(reg.show("m", "1"), tmp_path / "out", "accuracy")
