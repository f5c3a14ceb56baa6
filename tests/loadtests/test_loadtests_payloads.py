"""Request bodies (checked by the gateway's own OIP parser), Zipf draws, load profiles and response tallies."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from serving.protocol import parse_infer_request, validate_inputs
from loadtests.payloads import BodyFactory, ModelTarget, ZipfSampler, digits_images, malformed_bodies, oip_body, parse_models
from loadtests.shapes import burst_users, day_fraction, diurnal_users, pick_profile, users_at
from loadtests.tally import ResponseTally
from models.card import TensorSpec
from wattgate.errors import BadRequest

PIXELS = [TensorSpec(name="pixels", datatype="FP32", shape=[-1, 64])]


@pytest.mark.parametrize("binary", [False, True])
def test_bodies_decode_to_the_same_pixels_json_and_binary(binary):
    factory = BodyFactory(ModelTarget("digits", "fp32"), "pixels", "FP32", rows=3)
    body, headers = factory.body(5, binary)
    req = parse_infer_request(body, headers.get("inference-header-content-length"))
    validate_inputs(req.inputs, PIXELS, 64)
    np.testing.assert_array_equal(req.inputs[0].data, digits_images()[5:8])
    assert req.parameters["variant"] == "fp32"
    assert req.parameters.get("binary_data_output", False) is binary  # tritonclient's default for binary
    assert ("inference-header-content-length" in headers) is binary
    assert factory.body(5 + factory.items, binary) is factory.body(5, binary)  # cached, wraps around


@pytest.mark.parametrize("binary", [False, True])
def test_text_bodies_carry_bytes(binary):
    body, headers = oip_body({"text": np.array([b"hello", b"world"], dtype=object)}, binary=binary)
    req = parse_infer_request(body, headers.get("inference-header-content-length"))
    assert req.inputs[0].datatype == "BYTES" and list(req.inputs[0].data) == [b"hello", b"world"]


def test_every_malformed_body_is_refused_by_the_gateway_parser():
    for kind, path, body, headers in malformed_bodies("digits"):
        if kind == "unknown-model":
            assert "no-such-model" in path
            continue
        with pytest.raises(BadRequest):
            req = parse_infer_request(body, headers.get("inference-header-content-length"))
            validate_inputs(req.inputs, PIXELS, 64)


def test_parse_models():
    assert parse_models("digits:fp32, minilm:int8@0.5,minilm") == [
        ModelTarget("digits", "fp32", 1.0), ModelTarget("minilm", "int8", 0.5), ModelTarget("minilm", None, 1.0)]
    for bad in ("", "digits@x", "digits@0", ":fp32"):
        with pytest.raises(BadRequest):
            parse_models(bad)


def test_zipf_draws_favour_low_ranks_and_repeat():
    z = ZipfSampler(1000, 1.1, seed=3)
    draws = Counter(z.draw() for _ in range(5000))
    top = z._items[0]
    assert draws.most_common(1)[0][0] == top
    assert draws[top] / 5000 > 0.1  # rank 1 holds ~13 % of the mass at s=1.1 over 1,000 items
    assert 0.5 < z.expected_hit_rate(5000) < 0.95
    assert ZipfSampler(10_000, 0.5).expected_hit_rate(1000) < z.expected_hit_rate(1000)
    with pytest.raises(BadRequest):
        ZipfSampler(0, 1.0)


def test_burst_is_ten_times_base_for_a_fifth_of_the_run():
    counts = [burst_users(t, 5, 100.0) for t in range(100)]
    assert counts[:40] == [5] * 40 and counts[40:60] == [50] * 20 and counts[60:] == [5] * 40


def test_diurnal_has_a_night_trough_and_afternoon_peak():
    assert day_fraction(4) == pytest.approx(0.15)
    assert day_fraction(16) == pytest.approx(1.0)
    day = [diurnal_users(t, 40, 240.0) for t in range(240)]  # 10 s per hour
    assert min(day) == day[40] == 6 and max(day) == day[160] == 40
    assert users_at("diurnal", 160, 40, 240.0) == 40
    with pytest.raises(BadRequest):
        users_at("sawtooth", 0, 1, 10)


def test_profile_follows_explicit_choice_then_classes_and_tags():
    assert pick_profile("steady", ["BurstUser"], None) == "steady"
    assert pick_profile("auto", ["BurstUser"], None) == "burst"
    assert pick_profile("auto", [], ["diurnal", "json"]) == "diurnal"
    assert pick_profile("auto", ["SteadyUser"], None) == "steady"


def test_tally_prefers_headers_and_falls_back_to_the_json_body(tmp_path):
    t = ResponseTally()
    t.started("steady")
    t.observe({"x-cache": "hit", "x-pool": "fr-x86", "x-energy-j": "0.002", "x-carbon-g": "1e-6", "x-energy-method": "rapl"})
    t.observe({}, json.dumps({"parameters": {"cache": "miss", "pool": "local", "energy_j": 0.004}}))
    t.observe({}, "not json")
    for ms in (1.0, 2.0, 3.0, 100.0):
        t.observe_request(ms, failed=ms > 50, at_s=1000.2)
    t.write(tmp_path / "t.json")
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["responses"] == 3 and doc["with_energy"] == 2 and doc["with_carbon"] == 1
    assert doc["energy_j"] == pytest.approx(0.006)
    assert doc["counts"]["cache"] == {"hit": 1, "miss": 1} and doc["counts"]["pool"] == {"fr-x86": 1, "local": 1}
    [sec] = doc["per_second"]
    assert sec["time_s"] == 1000 and sec["requests_per_s"] == 4 and sec["failures_per_s"] == 1
    assert sec["p50_ms"] == pytest.approx(2.5)
