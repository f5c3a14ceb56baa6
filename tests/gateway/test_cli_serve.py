"""`wattgate serve` runs in the foreground and stops cleanly on SIGTERM, leaving no Ray process behind
and every answered request, HTTP or gRPC, in the ledger."""

from __future__ import annotations

import signal
import time

import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
import yaml

from tests.gateway.serve_process import alive, wattgate_serve

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_then_stops_cleanly(digits_repository, tmp_path, sig):
    from tests.conftest import free_port

    port, grpc_port = free_port(), free_port()
    cfg = tmp_path / "wattgate.yaml"
    cfg.write_text(yaml.safe_dump({
        "server": {"port": port, "state_dir": str(tmp_path / "var")},
        "models": {"repository": str(digits_repository)},
    }))
    with wattgate_serve(cfg, port, "--grpc-port", str(grpc_port)) as (proc, family):
        answered = set()
        for i in range(25):
            body = {"id": f"before-stop-{i}", "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [float(i)] * 64}]}
            r = httpx.post(f"http://127.0.0.1:{port}/v2/models/digits/infer", json=body, timeout=30)
            assert r.status_code == 200 and r.headers["x-request-id"] == r.json()["id"] == f"before-stop-{i}"
            answered.add(r.json()["id"])
        over_grpc = tg.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        inp = tg.InferInput("pixels", [1, 64], "FP32")
        inp.set_data_from_numpy(np.full((1, 64), 3.0, np.float32))
        assert over_grpc.infer("digits", [inp], request_id="over-grpc").get_response().id == "over-grpc"
        answered.add("over-grpc")
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        from energy.ledger import EnergyLedger

        with EnergyLedger(tmp_path / "var" / "ledger.sqlite", background=False) as ledger:
            assert answered <= {r.request_id for r in ledger.records(limit=None)}  # none lost to the stop
            startup = {a["kind"]: a["energy_j"] for a in ledger.accounts()}
            assert startup.get("startup", 0) > 0  # model load and Serve's start, charged to no request
        time.sleep(2)
        left = [pid for pid in family if alive(pid)]
        assert not left, left
