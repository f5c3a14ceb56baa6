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
    params = [_infer(plane, pixels[i : i + 2])["parameters"] for i in range(0, 20, 2)]
    books = plane.attributor.totals()
    assert books.attributed_j == pytest.approx(sum(p["energy_j"] for p in params), rel=1e-9)
    assert books.active_j == pytest.approx(sum(p["energy_active_j"] for p in params), rel=1e-9)
    # Conservation, extended: active + idle + start-up + written off + pending = metered.
    assert books.metered_j == pytest.approx(
        books.active_j + books.idle_j + books.startup_j + books.written_off_j + books.pending_j, rel=1e-9)
    assert books.startup_j > 0  # loading the model, booked before the first request and never charged to it


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


def test_a_lone_request_after_idle_time_reports_that_time_as_idle_not_active(make_plane, pixels):
    import time

    plane = make_plane(cache={"enabled": False})
    _infer(plane, pixels[:1])
    time.sleep(0.5)
    p = _infer(plane, pixels[1:2])["parameters"]
    # 0.5 s of the reserved half vCPU's static power (0.74 W x 0.5) is idle; the run itself is tiny.
    assert p["energy_idle_j"] >= 0.74 * 0.5 * 0.5
    assert p["energy_active_j"] < p["energy_idle_j"]


def test_cache_hits_pay_a_positive_cost_from_the_same_books(make_plane, pixels):
    plane = make_plane()
    miss = _infer(plane, pixels[:1])["parameters"]
    hits = [_infer(plane, pixels[:1])["parameters"] for _ in range(20)]
    assert miss["cache"] == "miss" and {h["cache"] for h in hits} == {"hit"}
    assert all(h["energy_j"] > 0 and h["carbon_g"] > 0 for h in hits)
    books = plane.attributor.totals()
    total = miss["energy_j"] + sum(h["energy_j"] for h in hits)
    assert books.attributed_j == pytest.approx(total, rel=1e-9)  # a hit's CPU is in the books once


def test_a_region_without_an_intensity_reading_has_unknown_carbon_not_zero(make_plane, pixels):
    # The static table knows FR and DE only; GB has no reading and no fallback.
    plane = make_plane(cache={"enabled": False}, routing={"policy": "latency-first"},
                       intensity={"provider": "static", "static": {"table": {"FR": 56.0, "DE": 380.0}}})
    p = _infer(plane, pixels[:1], {"x-client-region": "GB"})["parameters"]
    assert p["pool"] == "gb-arm"  # latency-first still serves the nearest pool
    assert (p["carbon_g"], p["carbon_known"], p["intensity_source"]) == (None, False, "none")
    assert p["intensity_g_per_kwh"] is None and p["embodied_g"] > 0
    lowest = make_plane(cache={"enabled": False}, routing={"policy": "lowest-carbon"},
                        intensity={"provider": "static", "static": {"table": {"FR": 500.0, "DE": 600.0}}})
    # Unknown is not 0 g/kWh: lowest-carbon never prefers GB for its missing reading.
    assert {_infer(lowest, pixels[i : i + 1], {"x-client-region": "GB"})["parameters"]["pool"] for i in range(5)} == {"fr-x86"}


def test_logical_pools_say_what_hardware_their_energy_came_from(make_plane, pixels):
    plane = make_plane(cache={"enabled": False}, routing={"policy": "latency-first"})
    p = _infer(plane, pixels[:1], {"x-client-region": "GB"})["parameters"]
    assert p["pool"] == "gb-arm" and p["hardware"] == "x86" and p["emulates"] == "arm"
    assert p["energy_profile"] == "aws-x86"


def test_the_response_id_header_and_ledger_row_share_one_id(make_plane, pixels, tmp_path):
    plane = make_plane(cache={"enabled": False})
    for sent, headers in ((None, {}), ("client-42", {}), (None, {"x-request-id": "from-header"})):
        doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
        if sent:
            doc["id"] = sent
        body, out_headers = asyncio.run(plane.dataplane.infer("digits", None, json.dumps(doc).encode(), headers))
        got = json.loads(body)
        assert got["id"] == out_headers["x-request-id"] == got["parameters"]["request_id"]
        assert got["id"] == (sent or headers.get("x-request-id") or got["id"])
    plane.ledger_sink.ledger.flush()
    ids = {r.request_id for r in plane.ledger_sink.ledger.records(limit=None)}
    assert {"client-42", "from-header"} <= ids


def test_under_overload_requests_are_shed_with_retry_after_and_no_accepted_one_is_lost(make_plane, pixels):
    from wattgate.errors import Overloaded

    plane = make_plane(cache={"enabled": False})

    async def burst():
        return await asyncio.gather(
            *(plane.dataplane.infer("digits", None, _body(pixels[i % 100 : i % 100 + 1]), {}) for i in range(400)),
            return_exceptions=True,
        )

    results = asyncio.run(burst())
    shed = [r for r in results if isinstance(r, Overloaded)]
    served = [json.loads(r[0]) for r in results if isinstance(r, tuple)]
    assert len(shed) + len(served) == 400  # nothing else went wrong
    assert shed and served  # the bounds bit, and traffic within them was served
    assert all(r.retry_after_s >= 1 for r in shed)
    assert all(d["outputs"][1]["data"] for d in served)
    series = plane.metrics.snapshot()["wattgate_shed_requests_total"]["series"]
    assert series == [[["digits"], float(len(shed))]]
