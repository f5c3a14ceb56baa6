"""The minilm pipeline: all-MiniLM-L6-v2 -> fp32 ONNX, INT8, fp16 and a distilled shallower student, each measured."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from optimizers.pipelines.common import Runner, Variant, cheapest_first, register_once
from optimizers.settings import OptimizersSettings

MODEL = "minilm"
METRIC = "cosine_mean"
QUALITY_FLOOR = {METRIC: 0.95}


def embedding_quality(emb: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Mean and 5th-percentile cosine to the reference, and top-1 nearest-neighbour agreement.

    Neighbours are searched among the same held-out sentences (self excluded), once with each set
    of embeddings; agreement is the share of sentences whose nearest neighbour is the same.
    """
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    cos = (emb * ref).sum(1)

    def nn(e: np.ndarray) -> np.ndarray:
        sim = e @ e.T
        np.fill_diagonal(sim, -np.inf)
        return sim.argmax(1)

    return {
        "cosine_mean": round(float(cos.mean()), 5),
        "cosine_p5": round(float(np.percentile(cos, 5)), 5),
        "nn_top1_agreement": round(float((nn(emb) == nn(ref)).mean()), 5),
    }


def _session(path: Path, threads: int = 1):
    from models.runtime import OnnxRuntime, RuntimeOptions

    return OnnxRuntime(path, RuntimeOptions(intra_op_threads=threads))


def embed_onnx(path: Path, batches: list[dict[str, np.ndarray]], threads: int = 1) -> np.ndarray:
    rt = _session(path, threads)
    return np.concatenate([rt.run(b)["embedding"] for b in batches])


def throughput(paths: dict[str, Path], batches: list[dict[str, np.ndarray]], rounds: int = 5) -> dict[str, dict[str, Any]]:
    """Sentences per second of each model on 1 thread, by wall clock and by CPU time, in ``rounds``
    interleaved rounds (every model one pass a round), and each model's speed-up over the first
    model per round: median and range.

    On a shared machine a model's speed drifts by 10-20% between passes; interleaving puts the
    same drift on every model of a round, and the range says how far one run can be trusted. The
    CPU-time figures are the ones to compare: other tenants inflate wall time.
    """
    sessions = {name: _session(path, 1) for name, path in paths.items()}
    for rt in sessions.values():
        rt.run(batches[0])
    n = sum(len(b["input_ids"]) for b in batches)
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, rt in sessions.items():
            c0, t0 = time.process_time(), time.perf_counter()
            for b in batches:
                rt.run(b)
            wall[name].append(n / (time.perf_counter() - t0))
            cpu[name].append(n / max(time.process_time() - c0, 1e-9))
    base = np.array(cpu[next(iter(paths))])
    out = {}
    for name in paths:
        ratio = np.array(cpu[name]) / base
        out[name] = {"sentences_per_s": round(float(np.median(wall[name])), 1),
                     "sentences_per_cpu_s": round(float(np.median(cpu[name])), 1),
                     "speedup_cpu": {"median": round(float(np.median(ratio)), 2), "min": round(float(ratio.min()), 2),
                                     "max": round(float(ratio.max()), 2), "rounds": rounds}}
    return out


def _rows(tokenizer, sentences: list[str]) -> list[dict[str, np.ndarray]]:
    """Unpadded token rows: training batches pad each batch to its own longest row."""
    return [{"input_ids": t["input_ids"][0], "attention_mask": t["attention_mask"][0], "token_type_ids": t["token_type_ids"][0]}
            for t in (tokenizer([sent]) for sent in sentences)]


def student_key(s, spec) -> dict[str, Any]:
    """The settings that shape one distilled student: its step-cache key, beside the teacher targets'.

    The calibration size keys only the students it shapes (a depth student keeps its cache entry).
    The domain weights are in the targets' key already (the training sentences), so adding the
    setting kept every student's key. How the evaluation times variants does not shape a student.
    """
    return {**s.model_dump(mode="json", exclude={"students", "calibration_sentences", "train_domain_weights", "bench_rounds"}),
            **spec.shape(), **({"calibration_sentences": s.calibration_sentences} if spec.init == "reconstruct" else {})}


def run(settings: OptimizersSettings, registry, quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    import torch

    from optimizers.distill import EmbeddingDistillConfig, distill_embeddings
    from optimizers.graph import optimize_graph
    from optimizers.pipelines import minilm_model as mm
    from optimizers.pipelines.corpus import mixed_corpus
    from optimizers.quantize import DYNAMIC_INT8_REDUCE_RANGE, convert_fp16, quantize_dynamic_int8
    from optimizers.training import TrainConfig

    torch.set_num_threads(settings.torch_threads)
    s = settings.minilm
    if quick:
        s = s.model_copy(update={"train_sentences": 200, "heldout_sentences": 16, "epochs": 1, "bench_rounds": 2})
    runner = Runner(settings, MODEL + ("-quick" if quick else ""), log)
    corpus = mixed_corpus(s.train_sentences, s.heldout_sentences, weights=s.train_domain_weights)
    log(f"  corpus: {corpus.describe()}")
    train_s = corpus.train
    # Throughput and export samples: the same number of sentences from every domain, interleaved.
    heldout = [x for row in zip(*corpus.heldout.values()) for x in row]
    n_val = max(16, len(train_s) // 10)
    train_s, val_s = train_s[:-n_val], train_s[-n_val:]
    src = mm.model_dir()
    tokenizer_file = src / "tokenizer.json"
    weights = {"weights": src / "model.safetensors", "config": src / "config.json", "tokenizer": tokenizer_file}
    tok_train = mm.Tokenizer(tokenizer_file, s.max_length)
    tok_served = mm.Tokenizer(tokenizer_file, s.served_max_length)
    held_batches = [tok_served(heldout[i : i + s.bench_batch]) for i in range(0, len(heldout), s.bench_batch)]
    domain_batches = {d: [tok_served(x[i : i + s.bench_batch]) for i in range(0, len(x), s.bench_batch)]
                      for d, x in corpus.heldout.items()}
    bench_batches = held_batches[: max(1, s.bench_sentences // s.bench_batch)]

    # 1. teacher -> fp32 ONNX, then ORT's graph optimizations saved beside it (the report shows the rewrites).
    def export_teacher(out: Path) -> dict[str, Any]:
        teacher = mm.load_teacher()
        path = mm.export_onnx(teacher, out / "fp32.onnx", tok_served(heldout[:4]))
        ref = mm.embed(teacher, tok_served(heldout[:16]))
        got = embed_onnx(path, [tok_served(heldout[:16])])
        graph = optimize_graph(path, out / "fp32-optimized.onnx", "extended")
        return {"export_min_cosine_to_torch": float((ref * got).sum(1).min()), "graph": graph.to_dict()}

    d_fp32, r_fp32 = runner.step("export-fp32", weights, export_teacher)
    fp32 = d_fp32 / "fp32.onnx"

    # 2. post-training quantization and fp16.
    def quantize(per_channel: bool) -> Callable[[Path], dict[str, Any]]:
        return lambda out: {"report": quantize_dynamic_int8(fp32, out / "model.onnx", per_channel).to_dict()}

    d_int8, r_int8 = runner.step("int8-per-channel", {"model": fp32, "reduce_range": DYNAMIC_INT8_REDUCE_RANGE}, quantize(True))
    d_int8pt, r_int8pt = runner.step("int8-per-tensor", {"model": fp32, "reduce_range": DYNAMIC_INT8_REDUCE_RANGE}, quantize(False))
    d_fp16, r_fp16 = runner.step("fp16", {"model": fp32}, lambda out: {"report": convert_fp16(fp32, out / "model.onnx").to_dict()})

    # 3. the teacher's targets for distillation at the training length: sentence embeddings and,
    #    per token, the last hidden state (fp16 on disk: ~30 vectors a sentence).
    train_rows, val_rows = _rows(tok_train, train_s), _rows(tok_train, val_s)

    def teacher_targets(out: Path) -> dict[str, Any]:
        from optimizers.distill import pad_rows

        teacher = mm.load_teacher()
        for name, rows in (("train", train_rows), ("val", val_rows)):
            pooled = np.zeros((len(rows), mm.EMBEDDING_DIM), np.float32)
            hidden_rows: list[np.ndarray] = [np.empty(0)] * len(rows)
            order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")  # little padding
            for i in range(0, len(order), 32):
                idx = order[i : i + 32]
                tokens = pad_rows([rows[j] for j in idx])
                with torch.no_grad():
                    hidden, emb = teacher.encode(**{k: torch.from_numpy(v) for k, v in tokens.items()})
                pooled[idx] = emb.numpy()
                for k, j in enumerate(idx):
                    hidden_rows[j] = hidden[k, : len(rows[j]["input_ids"])].numpy().astype(np.float16)
            offsets = np.cumsum([0] + [len(h) for h in hidden_rows])
            np.savez(out / f"{name}.npz", pooled=pooled, tokens=np.concatenate(hidden_rows), offsets=offsets)
        return {"train": len(train_rows), "val": len(val_rows)}

    d_tgt, r_tgt = runner.step("teacher-targets", {"weights": weights, "train": train_s, "val": val_s,
                                                   "max_length": s.max_length}, teacher_targets)

    # 4. distilled students: fewer layers, initialised from the teacher's, trained to match its outputs.
    teacher_refs: dict[str, np.ndarray] = {}

    def before_distillation(student, teacher) -> dict[str, float]:
        """Per-domain mean cosine of the untrained student to the teacher (both in torch, fp32): what
        the initialisation alone gives, so the report shows what distillation added."""
        def embed_domains(model) -> dict[str, np.ndarray]:
            return {d: np.concatenate([mm.embed(model, b) for b in batches]) for d, batches in domain_batches.items()}

        if not teacher_refs:
            teacher_refs.update(embed_domains(teacher))
        return {d: embedding_quality(e, teacher_refs[d])[METRIC] for d, e in embed_domains(student).items()}

    def distill(spec) -> Callable[[Path], dict[str, Any]]:
        def step(out: Path) -> dict[str, Any]:
            calibration = None
            if spec.init == "reconstruct":
                cal = sorted(train_s[: s.calibration_sentences], key=len)  # little padding
                calibration = [tok_train(cal[i : i + 64]) for i in range(0, len(cal), 64)]
            teacher = mm.load_teacher()
            student = mm.make_student(teacher, spec.layers, spec.ffn, calibration)
            residuals = student.reconstruction_residuals
            start = before_distillation(student, teacher)
            train_t, val_t = np.load(d_tgt / "train.npz"), np.load(d_tgt / "val.npz")
            # One read of the array: each npz["key"] access would load it from disk again.
            all_tokens, off = train_t["tokens"], train_t["offsets"]
            token_targets = [all_tokens[off[i] : off[i + 1]] for i in range(len(off) - 1)]
            config = EmbeddingDistillConfig(batch_size=s.batch_size, token_weight=s.token_weight, train=TrainConfig(
                epochs=s.epochs, lr=s.lr, weight_decay=0.01, schedule="cosine", patience=2, checkpoint_every=1, seed=0))
            student, report = distill_embeddings(student, train_rows, train_t["pooled"], val_rows, val_t["pooled"],
                                                 config, checkpoint_dir=out, teacher_tokens=token_targets)
            mm.export_onnx(student, out / "model.onnx", tok_served(heldout[:4]))
            (out / "checkpoint.pt").unlink(missing_ok=True)
            return {"report": report.to_dict(), **spec.shape(), "before_distillation": start,
                    **({"reconstruction_residuals": [round(r, 4) for r in residuals]} if residuals else {})}

        return step

    student_variants, student_reports, starts = [], {}, {}
    for spec in s.students:
        name = spec.name
        d_st, r_st = runner.step(f"distill-{name}", {"targets": d_tgt / "train.npz", "val": d_tgt / "val.npz",
                                                     "settings": student_key(s, spec), "weights": weights}, distill(spec))
        path = d_st / "model.onnx"
        d_sti, r_sti = runner.step(f"{name}-int8", {"model": path, "reduce_range": DYNAMIC_INT8_REDUCE_RANGE},
                                   lambda out, path=path: {"report": quantize_dynamic_int8(path, out / "model.onnx", True).to_dict()})
        student_reports[name] = {**spec.shape(), **{k: v for k, v in r_st["report"].items()
                                                             if k not in ("temperature", "alpha", "mixup")},
                                 **({"reconstruction_residuals": r_st["reconstruction_residuals"]}
                                    if "reconstruction_residuals" in r_st else {})}
        if "before_distillation" in r_st:  # absent from steps cached before it was recorded
            starts[name] = r_st["before_distillation"]
        student_variants += [
            Variant(name, path, "fp32", training=[r_fp32["run"], r_tgt["run"], r_st["run"]]),
            Variant(f"{name}-int8", d_sti / "model.onnx", "int8", training=[r_fp32["run"], r_tgt["run"], r_st["run"], r_sti["run"]]),
        ]

    variants = [
        Variant("fp32", fp32, "fp32", training=[r_fp32["run"]]),
        Variant("int8", d_int8 / "model.onnx", "int8", training=[r_fp32["run"], r_int8["run"]]),
        Variant("int8-per-tensor", d_int8pt / "model.onnx", "int8", training=[r_fp32["run"], r_int8pt["run"]]),
        Variant("fp16", d_fp16 / "model.onnx", "fp16", hardware=["gpu"], training=[r_fp32["run"], r_fp16["run"]]),
        *student_variants,
    ]

    # 5. quality per domain on held-out sentences, tokenised as the gateway will; 1-thread throughput.
    def evaluate(out: Path) -> dict[str, Any]:
        refs = {d: embed_onnx(fp32, b) for d, b in domain_batches.items()}
        res = {}
        for v in variants:
            got = {d: embed_onnx(v.path, b) for d, b in domain_batches.items()}
            overall = embedding_quality(np.concatenate(list(got.values())), np.concatenate(list(refs.values())))
            res[v.name] = {**overall, "domains": {d: embedding_quality(got[d], refs[d]) for d in got}}
        # fp16 is for GPUs (the CPU runs it through casts); fp32 first: the speed-ups are over it.
        timed = throughput({v.name: v.path for v in variants if v.name != "fp16"}, bench_batches, s.bench_rounds)
        for v in variants:
            res[v.name].update(timed.get(v.name, {}))
            log(f"    {v.name}: {res[v.name]}")
        return {"variants": res}

    _, r_eval = runner.step("evaluate", {v.name: v.path for v in variants} | {"heldout": corpus.heldout, "b": s.bench_batch,
                                                                             "bench": s.bench_sentences,
                                                                             "rounds": s.bench_rounds}, evaluate)
    for v in variants:
        # Throughput stays out of the card's quality: it is a timing (the profile holds those), and
        # timing noise must not make a rerun look like a new model.
        v.quality = {k: r_eval["variants"][v.name][k] for k in ("cosine_mean", "cosine_p5", "nn_top1_agreement")}
        v.domain_quality = r_eval["variants"][v.name]["domains"]

    # 6. energy profiles at batch 1/8/32/64 on real held-out sentences padded to the longest.
    def make_inputs(batch: int) -> dict[str, np.ndarray]:
        pool = (heldout * (batch // len(heldout) + 1))[:batch]
        return tok_served(pool)

    mean_tokens = float(np.mean([b["attention_mask"].sum(1).mean() for b in held_batches]))
    for v in variants:
        runner.profile(v, make_inputs, tokens_per_row=mean_tokens)

    card, new = register_once(registry, MODEL, variants, runner.dir, {
        "owner": "wattgate",
        "description": "all-MiniLM-L6-v2 sentence embeddings (mean-pooled, L2-normalised); send text, get a 384-d embedding.",
        "default_variant": "int8",
        "preprocess": {"kind": "text-tokenizer", "tokenizer_file": "tokenizer.json", "max_length": s.served_max_length},
        "support_files": [tokenizer_file],
        "served_inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
        "quality_floor": QUALITY_FLOOR,
        "heldout_domains": list(corpus.heldout_domains),
        "fallback_variants": cheapest_first(variants, METRIC, QUALITY_FLOOR[METRIC]),
    }, log)
    from optimizers.pareto import write_report

    def speedup(name: str) -> dict[str, float | str]:
        """Median speed-up over fp32 by CPU time, and its range over the rounds (fp16 is not timed)."""
        x = r_eval["variants"][name].get("speedup_cpu")
        return {"x fp32 (cpu time, median)": x["median"] if x else "-", "x fp32 range": f"{x['min']}-{x['max']}" if x else "-"}

    table = [{"variant": v.name, "sentences/s": r_eval["variants"][v.name].get("sentences_per_s", "-"),
              "sentences/cpu-s": r_eval["variants"][v.name].get("sentences_per_cpu_s", "-"), **speedup(v.name), **v.quality}
             for v in variants]
    columns = {d: d + (" (held out)" if d in corpus.heldout_domains else "") for d in corpus.heldout}

    def by_domain(first: dict[str, str], quality: dict[str, float]) -> dict[str, Any]:
        """One per-domain table row: ``first``, each domain's cosine in the corpus's order, the worst."""
        return {**first, **{columns[d]: quality[d] for d in columns}, "worst domain": min(quality[d] for d in columns)}

    per_domain = [by_domain({"variant": v.name}, {d: v.domain_quality[d][METRIC] for d in columns}) for v in variants]
    untrained = [by_domain({"student (fp32, untrained)": name}, start) for name, start in starts.items()]
    md, png = write_report(card, runner.dir / "report", METRIC, batch=32, extra_rows=table, extra_title="Quality and 1-thread throughput",
                           sections=[(f"{METRIC} per domain (promotion checks the worst)", per_domain)]
                           + ([(f"{METRIC} per domain of each student before distillation (its initialisation alone)", untrained)]
                              if untrained else []),
                           notes=[
        f"corpus: {corpus.describe()}; train {len(train_s)}, val {len(val_s)}",
        f"throughput: 1 thread, batch {s.bench_batch}, {len(bench_batches) * s.bench_batch} sentences from every domain, padded to the "
        f"longest in each batch; {s.bench_rounds} interleaved rounds (every variant one pass a round), speed-up over fp32 per round: median and range",
        f"students (teacher layers kept of 6, feed-forward units kept of 1,536 if pruned, distillation): {student_reports}",
    ])
    return {"model": MODEL, "version": card.version, "registered": new, "report": str(md), "png": str(png),
            "table": table, "per_domain": per_domain, "cache_hits": runner.cache.hits, "cache_misses": runner.cache.misses}
