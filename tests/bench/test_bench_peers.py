"""Bench pieces: the in-process limit, the peers on loopback (answering a real tritonclient), feature probes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from bench.peer_servers import merge, split
from bench.peers import grpc_cell, http_cell, inproc_cells, zipf_digits_requests
from bench.settings import BenchSettings
from bench.systems import discover_models, feature_skip, start_rayserve, start_triton, start_uvicorn
from loadtests.payloads import digits_images
from wattgate.errors import NotFound

ROOT = Path(__file__).resolve().parents[2]


def _direct_labels(repo: Path, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(str(repo / "digits" / "1" / "fp32.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(["label"], {"pixels": x})[0]


def test_discover_needs_digits(tmp_path):
    with pytest.raises(NotFound, match="models.digits"):
        discover_models(tmp_path)


def test_inproc_cells_batch_concurrency_rows(digits_repository):
    models = discover_models(digits_repository)
    assert [m.label for m in models] == ["digits"]
    cells = inproc_cells(models, BenchSettings(concurrency=(1, 16), duration_s=0.4, warmup_s=0.05))
    assert [(c.system, c.concurrency) for c in cells] == [("ort-inproc", 1), ("ort-inproc", 16)]
    for c in cells:
        assert c.requests > 0 and c.requests % c.concurrency == 0 and c.cpu_s > 0 and c.j_per_1k_modelled > 0
    assert cells[1].requests_per_s > 2 * cells[0].requests_per_s  # 16 rows per call amortise the call overhead


def test_merge_pads_token_rows_and_split_restores_requests():
    a = {"input_ids": np.ones((2, 3), np.int64)}
    b = {"input_ids": np.full((1, 5), 7, np.int64)}
    merged, rows = merge([a, b])
    assert rows == [2, 1] and merged["input_ids"].shape == (3, 5) and merged["input_ids"][0, 3:].tolist() == [0, 0]
    parts = split({"y": np.arange(3)}, rows)
    assert [p["y"].tolist() for p in parts] == [[0, 1], [2]]


def test_zipf_cache_bodies_repeat_but_span_a_large_catalogue():
    make = zipf_digits_requests(0.9, items=50_000)
    bodies = [make(i)[0] for i in range(3000)]
    distinct = len(set(bodies))
    assert 0.3 < 1 - distinct / len(bodies) < 0.8  # a realistic hit rate, not all hits and not none


def test_feature_probe_decides_which_wattgate_cells_run():
    assert feature_skip("wattgate-cache", {"cache": "miss", "cache_second": "hit"}) is None
    assert "cache=off" in feature_skip("wattgate-cache", {"cache": "off", "cache_second": "off"})
    assert "route_reason" in feature_skip("wattgate-green", {"region": "FR"})
    assert feature_skip("wattgate-green", {"route_reason": "lowest-carbon: fr"}) is None
    assert feature_skip("wattgate", {}) is None


def _client_infer(url: str, x: np.ndarray, binary: bool) -> np.ndarray:
    host = url.split("//", 1)[1].split("/", 1)[0]
    client = triton.InferenceServerClient(host)
    inp = triton.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return client.infer("digits", [inp], outputs=[triton.InferRequestedOutput("label", binary_data=binary)]).as_numpy("label")


@pytest.mark.integration
def test_uvicorn_peer_is_correct_and_measured(digits_repository, tmp_path):
    models = discover_models(digits_repository)
    s = BenchSettings(duration_s=1.0, warmup_s=0.3, results_dir=tmp_path)
    running = start_uvicorn(models, s, tmp_path)
    try:
        x = digits_images()[:5]
        np.testing.assert_array_equal(_client_infer(running.urls["digits"], x, binary=False), _direct_labels(digits_repository, x))
        cell = http_cell("uvicorn-ort", models[0], running.urls["digits"], 4, running.pid, s)
    finally:
        running.stop()
    assert cell.status_counts == {"200": cell.requests} and cell.requests_per_s > 20
    assert cell.cpu_s > 0 and cell.cpu_s_per_1k > 0 and cell.j_per_1k_modelled > 0 and cell.p50_ms <= cell.p99_ms


@pytest.mark.integration
def test_plain_ray_serve_peer_answers_tritonclient_over_http_and_grpc(digits_repository, tmp_path):
    """The plain-Serve baseline of the gRPC cells: Serve's own gRPC ingress behind HAProxy, tritonclient's service."""
    import tritonclient.grpc as tgrpc

    models = discover_models(digits_repository)
    s = BenchSettings(duration_s=1.0, warmup_s=0.3, results_dir=tmp_path)
    running = start_rayserve("haproxy")(models, s, tmp_path)
    try:
        x = digits_images()[20:23]
        want = _direct_labels(digits_repository, x)
        np.testing.assert_array_equal(_client_infer(running.urls["digits"], x, binary=False), want)
        assert running.grpc_system == "rayserve-grpc" and running.grpc_apps
        client = tgrpc.InferenceServerClient(running.grpc_target)
        inp = tgrpc.InferInput("pixels", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("digits", [inp], headers={"application": "digits"}).as_numpy("label")
        np.testing.assert_array_equal(got, want)
        cell = grpc_cell(running.grpc_system, models[0], running.grpc_target, 4, running.pid, s, app="digits")
    finally:
        running.stop()
    assert cell.status_counts == {"OK": cell.requests} and cell.requests > 0 and cell.cpu_s > 0


@pytest.mark.integration
def test_triton_peer_serves_digits_and_stops_cleanly(digits_repository, tmp_path):
    s = BenchSettings(duration_s=1.0, warmup_s=0.3, results_dir=tmp_path)
    if not (ROOT / s.triton_python).exists():
        pytest.skip(".venv-triton is not installed")
    models = discover_models(digits_repository)
    running = start_triton(models, s, tmp_path)
    try:
        x = digits_images()[10:14]
        got = _client_infer(running.urls["digits"], x, binary=True)
        np.testing.assert_array_equal(got.reshape(-1), _direct_labels(digits_repository, x))
        cell = http_cell("triton", models[0], running.urls["digits"], 4, running.pid, s)
        over_grpc = grpc_cell(running.grpc_system, models[0], running.grpc_target, 4, running.pid, s)
    finally:
        running.stop()
    assert cell.status_counts == {"200": cell.requests} and cell.requests_per_s > 20 and cell.cpu_s > 0
    assert over_grpc.system == "triton-grpc" and over_grpc.status_counts == {"OK": over_grpc.requests}
    assert over_grpc.requests_per_s > 20 and over_grpc.cpu_s > 0
    # No orphaned tritonserver: stop() waited for (or killed) everything in the server's session.
    alive = subprocess.run(["ps", "-o", "stat=", "-s", str(running.pid)], capture_output=True, text=True).stdout.split()
    assert all(stat.startswith("Z") for stat in alive)


def test_text_models_are_discovered_and_run_in_process(text_repository):
    models = discover_models(text_repository)
    assert [m.label for m in models] == ["digits", "minilm:fp32", "minilm:int8"]
    text = models[2]
    assert text.text and text.peer_name == "minilm-int8" and text.max_length == 16 and text.tokenizer.name == "tokenizer.json"
    cells = inproc_cells([text], BenchSettings(concurrency=(4,), duration_s=0.3, warmup_s=0.05))
    assert cells[0].model == "minilm:int8" and cells[0].requests > 0 and cells[0].requests % 4 == 0


@pytest.mark.integration
def test_uvicorn_peer_tokenises_text(text_repository, tmp_path):
    import json
    import urllib.request

    from bench.peer_servers import PeerModel, PeerRunner

    models = [m for m in discover_models(text_repository) if m.text]
    s = BenchSettings(duration_s=0.8, warmup_s=0.2, results_dir=tmp_path)
    running = start_uvicorn(models, s, tmp_path)
    try:
        body = json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["Short texts tokenise quickly.", "Hi"]}]})
        req = urllib.request.Request(running.urls["minilm:fp32"], data=body.encode(), headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            out = json.loads(resp.read())["outputs"][0]
        direct = PeerRunner(PeerModel(**models[0].peer_spec()))
        want = direct.run(direct.tokenize(["Short texts tokenise quickly.", "Hi"]))["sentence_embedding"]
        assert out["shape"] == [2, 4] and np.allclose(np.array(out["data"]).reshape(2, 4), want)
        cell = http_cell("uvicorn-ort", models[1], running.urls["minilm:int8"], 2, running.pid, s)
    finally:
        running.stop()
    assert cell.status_counts == {"200": cell.requests} and cell.requests > 0


def test_plain_ray_serve_and_the_wattgate_ingress_get_the_same_replicas(monkeypatch, tmp_path):
    """``--replicas``: neither Ray Serve system wins by running more processes than the other."""
    import json

    from bench import systems

    seen: dict[str, list[str]] = {}

    class Started(Exception):
        pass

    def fake_peer(kind, models, s, log_dir, extra_env=None, extra_args=None, grpc_port=None):
        seen[kind] = extra_args
        raise Started

    class FakeServer:
        def __init__(self, argv, *_, **__):
            seen["wattgate"] = argv
            raise Started

    monkeypatch.setattr(systems, "_peer", fake_peer)
    monkeypatch.setattr(systems, "ServerProcess", FakeServer)
    s = BenchSettings(replicas=3)
    with pytest.raises(Started):
        systems.start_rayserve("haproxy")([], s, tmp_path)
    with pytest.raises(Started):
        systems.start_wattgate("wattgate")([], s, tmp_path, tmp_path)
    assert seen["rayserve"][seen["rayserve"].index("--replicas") + 1] == "3"
    overrides = json.loads(seen["wattgate"][seen["wattgate"].index("--overrides") + 1])
    assert overrides["server"]["ingress_replicas"] == 3
