"""The data plane driven directly, as MLServer's tests drive its DataPlane: no Ray, no HTTP server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from wattgate.errors import BadRequest, ModelNotFound, PayloadTooLarge


def _body(x: np.ndarray, **parameters) -> bytes:
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}
    if parameters:
        doc["parameters"] = parameters
    return json.dumps(doc).encode()


def _infer(plane, x: np.ndarray, headers: dict | None = None, **parameters) -> dict:
    body, _ = asyncio.run(plane.dataplane.infer("digits", None, _body(x, **parameters), headers or {}))
    return json.loads(body)


def test_importing_serving_loads_no_ray():
    code = "import serving.assembly, serving.dataplane, sys; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_infer_matches_onnxruntime_and_reports_energy_and_carbon(make_plane, digits_repository, pixels):
    plane = make_plane(cache={"enabled": False})
    x = pixels[:4]
    doc = _infer(plane, x)
    sess = ort.InferenceSession(str(digits_repository / "digits" / "1" / "fp32.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(["label"], {"pixels": x})[0]
    got = {o["name"]: o for o in doc["outputs"]}
    assert got["label"]["data"] == want.tolist()
    p = doc["parameters"]
    assert p["energy_j"] > 0 and p["energy_method"] == "cpu-time-model" and p["energy_measured"] is False
    assert p["energy_j"] == pytest.approx(p["energy_active_j"] + p["energy_idle_j"])
    assert p["carbon_g"] == pytest.approx(p["operational_g"] + p["embodied_g"]) and p["carbon_g"] > 0
    assert p["cache"] == "off" and p["batch_size"] == 4
    assert p["pool"] in {"fr-x86", "de-x86", "gb-arm"} and p["route_reason"]


def test_identical_request_is_a_cache_hit_that_ran_no_model(make_plane, pixels):
    plane = make_plane()
    x = pixels[10:12]
    first = _infer(plane, x)
    second = _infer(plane, x)
    assert (first["parameters"]["cache"], second["parameters"]["cache"]) == ("miss", "hit")
    assert first["outputs"] == second["outputs"]
    stats = plane.dataplane.model_stats("digits", None)["model_stats"]
    assert sum(s["execution_count"] for s in stats) == 1  # the hit never reached a runtime
    assert second["parameters"]["batch_size"] == 0 and second["parameters"]["energy_method"] == "cpu-time-model"


def test_concurrent_requests_share_batches_and_each_gets_its_own_rows(make_plane, pixels):
    plane = make_plane(cache={"enabled": False}, routing={"topology_file": "/nonexistent"})

    async def many():
        return await asyncio.gather(*(plane.dataplane.infer("digits", None, _body(pixels[i : i + 1]), {}) for i in range(16)))

    docs = [json.loads(b) for b, _ in asyncio.run(many())]
    sess_labels = [int(np.argmax(d["outputs"][0]["data"])) for d in docs]
    labels = [d["outputs"][1]["data"][0] for d in docs]
    assert sess_labels == labels
    stats = plane.dataplane.model_stats("digits", None)["model_stats"][0]
    assert stats["inference_count"] == 16 and stats["execution_count"] < 16  # batched
    assert max(b["batch_size"] for b in stats["batch_stats"]) > 1
    assert {d["parameters"]["pool"] for d in docs} == {"local"}  # no topology: one local pool


def test_energy_charged_to_requests_is_what_the_meter_metered(make_plane, pixels):
    plane = make_plane(cache={"enabled": False})
    total = sum(_infer(plane, pixels[i : i + 2])["parameters"]["energy_j"] for i in range(0, 20, 2))
    books = plane.metrics_sink.attributor.totals()
    assert books.attributed_j == pytest.approx(total, rel=1e-9)
    assert books.metered_j == pytest.approx(books.attributed_j + books.written_off_j + books.pending_j, rel=1e-9)


@pytest.mark.parametrize("body,error", [
    (b"{not json", BadRequest),
    (json.dumps({"inputs": [{"name": "pixels", "datatype": "FP64", "shape": [1, 64], "data": [0.0] * 64}]}).encode(), BadRequest),
    (json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 63], "data": [0.0] * 63}]}).encode(), BadRequest),
    (b"x" * 300_000, PayloadTooLarge),
])
def test_bad_requests_raise_the_error_their_status_comes_from(make_plane, pixels, body, error):
    plane = make_plane(server={"max_request_bytes": 256 * 1024})
    with pytest.raises(error):
        asyncio.run(plane.dataplane.infer("digits", None, body, {}))
    assert _infer(plane, pixels[:1])["outputs"]  # and the plane keeps serving


def test_unknown_model_is_not_found(make_plane):
    plane = make_plane()
    with pytest.raises(ModelNotFound):
        asyncio.run(plane.dataplane.infer("nope", None, b"{}", {}))


def test_client_region_and_slo_reach_the_router(make_plane, pixels):
    plane = make_plane(cache={"enabled": False}, routing={"policy": "latency-first"})
    # latency-first picks the pool nearest the client: RTTs in local-topology.yaml make it the client's region.
    for region, pool in (("FR", "fr-x86"), ("DE", "de-x86"), ("GB", "gb-arm")):
        assert _infer(plane, pixels[:1], {"x-client-region": region})["parameters"]["pool"] == pool
