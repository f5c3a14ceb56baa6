"""A remote pool is any Open Inference Protocol server: here a real Triton 2.51 (PyTriton) process,
reached over HTTP and over gRPC."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import yaml

from wattgate.settings import load_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TRITON_PY = ROOT / ".venv-triton" / "bin" / "python"


@pytest.fixture(scope="module", params=["http", "grpc"])
def protocol(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def triton(digits_repository, tmp_path_factory, protocol):
    """A Triton per protocol (the test stops it); yields it and the port the pool speaks ``protocol`` to."""
    if not TRITON_PY.exists():
        pytest.skip("no .venv-triton (make .venv-triton/.installed creates it)")
    from loadtests.procs import ServerProcess, free_port

    port, grpc_port = free_port(), free_port()
    libdir = __import__("subprocess").run(
        [str(TRITON_PY), "-c", "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"], capture_output=True, text=True
    ).stdout.strip()
    server = ServerProcess(
        [str(TRITON_PY), str(ROOT / "bench" / "triton_server.py"), "--model", f"digits={digits_repository / 'digits' / '1' / 'fp32.onnx'}", "--http-port", str(port),
         "--grpc-port", str(grpc_port)],
        tmp_path_factory.mktemp("triton") / "triton.log",
        env={**__import__("os").environ, "LD_LIBRARY_PATH": libdir},
    )
    server.wait_ready(f"http://127.0.0.1:{port}/v2/health/ready", timeout_s=120)
    yield server, grpc_port if protocol == "grpc" else port
    server.stop()


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository, triton, tmp_path_factory, protocol):
    _, port = triton
    tmp = tmp_path_factory.mktemp("remote")
    topology = {
        "client_regions": ["FR", "DE"],
        "pools": [
            {"name": "fr-triton", "region": "FR", "hardware": "x86", "pue": 1.2, "capacity_rps": 500, "service_ms": 3,
             "rtt_ms": {"FR": 2, "DE": 9}, "energy": {"*": {"idle_w": 0.74, "dynamic_j": 0.011, "source": "modelled: CCF x86 x 4 ms"}}},
            {"name": "de-local", "region": "DE", "hardware": "x86", "pue": 1.2, "capacity_rps": 500, "service_ms": 3,
             "rtt_ms": {"FR": 9, "DE": 2}, "energy": {"*": {"idle_w": 0.74, "dynamic_j": 0.011, "source": "modelled: CCF x86 x 4 ms"}}},
        ],
    }
    (tmp / "topology.yaml").write_text(yaml.safe_dump(topology))
    settings = load_settings(
        None,
        models={"repository": str(digits_repository)},
        server={"state_dir": str(tmp / "state")},
        cache={"enabled": False},
        intensity={"provider": "static", "static": {"table": {"FR": 56, "DE": 381}}},
        routing={"topology_file": str(tmp / "topology.yaml"), "default_client_region": "FR"},
        pools={"fr-triton": {"kind": "oip", "url": f"127.0.0.1:{port}", "protocol": protocol}},
    )
    return deploy(settings)


def _infer(url: str, x: np.ndarray) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/digits/infer", timeout=30,
                      json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]})


def test_lowest_carbon_sends_requests_to_triton_and_falls_back_when_it_dies(gateway, triton, digits_repository):
    x = np.random.default_rng(7).integers(0, 17, (3, 64)).astype(np.float32)
    direct = ort.InferenceSession(str(digits_repository / "digits" / "1" / "fp32.onnx")).run(["label"], {"pixels": x})[0]
    r = _infer(gateway, x)
    assert r.status_code == 200, r.text
    p = r.json()["parameters"]
    assert p["pool"] == "fr-triton" and p["region"] == "FR"
    assert p["energy_method"] == "pool-curve-modelled" and p["energy_measured"] is False  # Triton's energy is not ours to meter
    labels = next(o for o in r.json()["outputs"] if o["name"] == "label")["data"]
    assert labels == direct.tolist()

    server, _ = triton
    server.stop()
    for seed in range(3):  # the dead pool is skipped; no request fails
        r = _infer(gateway, x + seed)
        assert r.status_code == 200, r.text
        assert r.json()["parameters"]["pool"] == "de-local"
