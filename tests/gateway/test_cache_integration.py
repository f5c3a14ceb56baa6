"""The prediction cache in front of a real Ray Serve app, with a real redis-server that we kill."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from wattgate.settings import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository, redis, tmp_path_factory):
    settings = load_settings(
        None,
        models={"repository": str(digits_repository), "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.01}},
        server={"state_dir": str(tmp_path_factory.mktemp("cache-state"))},
        cache={"url": redis.url, "default_ttl_s": 60, "breaker_backoff_s": 0.2, "breaker_max_backoff_s": 0.5},
    )
    return deploy(settings)


def _body(x: np.ndarray) -> dict:
    return {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}


def _executions(url: str) -> int:
    return httpx.get(f"{url}/v2/models/digits/stats").json()["model_stats"][0]["execution_count"]


def _metric(url: str, name: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " "))


def test_second_identical_request_is_a_hit_without_replica_call(gateway):
    x = np.random.default_rng(1).integers(0, 17, (1, 64)).astype(np.float32)
    first = httpx.post(f"{gateway}/v2/models/digits/infer", json=_body(x))
    assert first.status_code == 200 and first.json()["parameters"]["cache"] == "miss"
    calls, hits = _executions(gateway), _metric(gateway, "wattgate_cache_hits_total")
    second = httpx.post(f"{gateway}/v2/models/digits/infer", json=_body(x))
    assert second.json()["parameters"]["cache"] == "hit" and second.headers["x-cache"] == "hit"
    assert second.json()["outputs"] == first.json()["outputs"]
    assert _executions(gateway) == calls, "a hit must not touch the model"
    assert _metric(gateway, "wattgate_cache_hits_total") == hits + 1
    assert _metric(gateway, "wattgate_energy_avoided_joules_total") > 0
    # A hit carries its own small cost, far below the model's.
    assert 0 < second.json()["parameters"]["energy_j"] < first.json()["parameters"]["energy_j"]


def test_json_and_binary_inputs_share_one_entry(gateway):
    x = np.random.default_rng(2).integers(0, 17, (2, 64)).astype(np.float32)
    assert httpx.post(f"{gateway}/v2/models/digits/infer", json=_body(x)).json()["parameters"]["cache"] == "miss"
    client = triton.InferenceServerClient(gateway.removeprefix("http://"))
    inp = triton.InferInput("pixels", [2, 64], "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    outs = [triton.InferRequestedOutput("probabilities", binary_data=False), triton.InferRequestedOutput("label", binary_data=False)]
    assert client.infer("digits", [inp], outputs=outs).get_response()["parameters"]["cache"] == "hit"


def test_concurrent_identical_requests_run_the_model_once(gateway):
    x = np.random.default_rng(3).integers(0, 17, (1, 64)).astype(np.float32)
    calls = _executions(gateway)

    async def fire():
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(*(c.post(f"{gateway}/v2/models/digits/infer", json=_body(x)) for _ in range(24)))

    responses = asyncio.run(fire())
    assert all(r.status_code == 200 for r in responses)
    assert [r.json()["parameters"]["cache"] for r in responses].count("miss") == 1
    assert _executions(gateway) == calls + 1


def test_killing_redis_under_load_fails_no_request_and_cache_resumes(gateway, redis):
    rng = np.random.default_rng(4)
    xs = rng.integers(0, 17, (40, 1, 64)).astype(np.float32)
    want = {}
    for i, x in enumerate(xs):  # reference answers, and warm entries
        want[i] = httpx.post(f"{gateway}/v2/models/digits/infer", json=_body(x)).json()["outputs"]

    async def load(n: int):
        async with httpx.AsyncClient(timeout=30) as c:
            async def one(k):
                i = k % len(xs)
                r = await c.post(f"{gateway}/v2/models/digits/infer", json=_body(xs[i]))
                return i, r
            return await asyncio.gather(*(one(k) for k in range(n)))

    async def kill_midway():
        task = asyncio.ensure_future(load(400))
        await asyncio.sleep(0.3)
        redis.kill()
        return await task

    bypass_before = _metric(gateway, "wattgate_cache_bypass_total")
    results = asyncio.run(kill_midway())
    assert [r.status_code for _, r in results].count(200) == len(results), "no request may fail"
    for i, r in results:
        assert r.json()["outputs"] == want[i]
    assert _metric(gateway, "wattgate_cache_bypass_total") > bypass_before

    redis.start()  # same port; the cache reconnects on its own
    x = rng.integers(0, 17, (1, 64)).astype(np.float32)
    statuses = []
    for _ in range(40):
        statuses.append(httpx.post(f"{gateway}/v2/models/digits/infer", json=_body(x)).json()["parameters"]["cache"])
        if statuses[-1] == "hit":
            break
        asyncio.run(asyncio.sleep(0.1))
    assert statuses[-1] == "hit", statuses
