"""Locust headless against a small OIP server on loopback that misbehaves on purpose: 5xx and accepted
malformed input must count as failures, tags must pick the encoding, and the runner's counts must
match what the server saw."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serving.protocol import parse_infer_request, validate_inputs
from loadtests.runner import run
from loadtests.settings import LoadtestSettings
from models.card import TensorSpec
from wattgate.errors import BadRequest

pytestmark = pytest.mark.integration

PIXELS = [TensorSpec(name="pixels", datatype="FP32", shape=[-1, 64])]
META = {"name": "digits", "versions": ["1"], "platform": "onnxruntime_onnx",
        "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]}


class Seen:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts = {"json": 0, "binary": 0, "answered_500": 0, "accepted_bad": 0, "unknown_model": 0}
        self.bad = 0

    def misanswer(self) -> str:
        """Alternates the two wrong answers to malformed input, so a run with two bad requests sees both
        (choosing by kind left one of them to chance: 1 kind in 9 answered 500)."""
        with self.lock:
            self.bad += 1
            key = "answered_500" if self.bad % 2 else "accepted_bad"
            self.counts[key] += 1
            return key

    def add(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1


def make_handler(seen: Seen):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _send(self, status: int, doc: dict, headers: dict[str, str] | None = None) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/v2/models/digits":
                self._send(200, META)
            else:
                self._send(404, {"error": "no metrics here"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            if self.path != "/v2/models/digits/infer":
                seen.add("unknown_model")
                return self._send(404, {"error": "unknown model"})
            header_len = self.headers.get("inference-header-content-length")
            try:
                req = parse_infer_request(body, header_len)
                validate_inputs(req.inputs, PIXELS, 64)
            except BadRequest:
                if seen.misanswer() == "answered_500":
                    return self._send(500, {"error": "boom"})
                return self._send(200, {"outputs": []})
            seen.add("binary" if header_len else "json")
            self._send(200, {"model_name": "digits", "outputs": []}, {
                "x-cache": "miss", "x-pool": "fake-pool", "x-energy-j": "0.002", "x-carbon-g": "1e-06",
                "x-energy-method": "fake-model"})

    return Handler


@pytest.fixture()
def fake_server():
    seen = Seen()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(seen))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def test_bad_answers_to_malformed_input_fail_the_run(fake_server, tmp_path):
    url, seen = fake_server
    s = LoadtestSettings(users=3, spawn_rate=3, duration_s=4, user_rps=15, classes=("SteadyUser", "BadInputUser"),
                         tags=("binary",), bad_share=0.5, results_dir=tmp_path, ledger_settle_s=0,
                         fail_on="error_rate=0,j_per_1k=5")
    outcome = run(s, url=url, ledger=tmp_path / "no-ledger.sqlite", plot=True)
    r, c = outcome.report, seen.counts

    # Tag "binary": every valid request used the binary tensor extension.
    assert c["json"] == 0 and c["binary"] > 10
    # Server-side failures (500s and accepted malformed bodies) are locust's failures; locust may
    # have stopped users with a few requests in flight, which the server saw but locust never counted.
    bad_seen = c["answered_500"] + c["accepted_bad"]
    assert r.failures > 0 and r.failures <= bad_seen <= r.failures + s.users
    assert r.requests <= sum(c.values()) <= r.requests + s.users
    assert r.error_rate == pytest.approx(r.failures / r.requests)
    kinds = " ".join(f["Error"] for f in r.failure_kinds)
    assert "server error instead of 4xx" in kinds and "accepted instead of 4xx" in kinds
    unknown = sum(e["requests"] for e in r.endpoints if e["name"] == "bad-input unknown-model")
    assert unknown <= c["unknown_model"] <= unknown + s.users
    assert all(e["failures"] == 0 for e in r.endpoints if e["name"] == "bad-input unknown-model")  # a 404 is right

    # No ledger and no /metrics: energy, cache and pools come from the responses' own headers.
    assert r.sources["energy"] == "responses" and r.j_per_1k == pytest.approx(2.0) and r.g_per_1k == pytest.approx(1e-3)
    assert r.energy_methods == {"fake-model": r.cross_check["tallied_responses"]}
    assert r.cache_hit_rate == 0.0 and r.pool_share == {"fake-pool": 1.0}
    assert r.cross_check["ledger_rows"] is None and r.cross_check["metrics_requests"] is None

    assert [v.passed for v in outcome.verdicts] == [False, True] and outcome.exit_code == 1
    saved = json.loads(outcome.json_path.read_text())
    assert saved["requests"] == r.requests and saved["failures"] == r.failures
    assert len(saved["timeseries"]) >= 3 and outcome.png_path.stat().st_size > 10_000
