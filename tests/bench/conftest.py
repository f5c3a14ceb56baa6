"""A tiny text model registered as ``minilm`` (fp32 + int8, word-level tokenizer), for the bench's text path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def _text_onnx(path: Path) -> None:
    """input_ids/attention_mask/token_type_ids [batch, seq] -> sentence_embedding [batch, 4] (sums, scaled)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = ("input_ids", "attention_mask", "token_type_ids")
    nodes = [helper.make_node("Cast", [n], [f"{n}_f"], to=TensorProto.FLOAT) for n in names]
    nodes += [helper.make_node("Add", ["input_ids_f", "attention_mask_f"], ["s1"]),
              helper.make_node("Add", ["s1", "token_type_ids_f"], ["s2"]),
              helper.make_node("ReduceSum", ["s2", "axes"], ["summed"], keepdims=1),
              helper.make_node("Mul", ["summed", "scale"], ["sentence_embedding"])]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes"),
             numpy_helper.from_array(np.array([[1.0, 0.5, 0.25, 0.125]], np.float32), "scale")]
    graph = helper.make_graph(
        nodes, "tiny_text",
        [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    from loadtests.payloads import SENTENCES

    words = sorted({w for s in SENTENCES for w in s.replace(".", " ").replace("?", " ").replace(",", " ").split()})
    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(words)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))


@pytest.fixture(scope="session")
def text_repository(digits_repository, tmp_path_factory) -> Path:
    """A copy of the digits repository plus a tiny ``minilm`` text model."""
    from models.registry import ModelRegistry

    repo = tmp_path_factory.mktemp("text_repository")
    shutil.copytree(digits_repository, repo, dirs_exist_ok=True)
    work = tmp_path_factory.mktemp("text_model")
    _text_onnx(work / "fp32.onnx")
    _tokenizer(work / "tokenizer.json")
    ModelRegistry(repo).register(
        "minilm", "1", {"fp32": work / "fp32.onnx", "int8": work / "fp32.onnx"},
        preprocess={"kind": "text-tokenizer", "tokenizer_file": "tokenizer.json", "max_length": 16},
        support_files=[work / "tokenizer.json"], served_inputs=[{"name": "text", "datatype": "BYTES", "shape": [-1]}],
    )
    return repo
