"""Quota refusals held before they are answered, through the HTTP and gRPC layers over a real data plane
(no Ray): held for their Retry-After, answered exactly as before, freed when the client goes away, and
only quota refusals (not 401, not a carbon budget's 429)."""

from __future__ import annotations

import asyncio
import json

import grpc
import numpy as np

from gateway.grpc_api import GrpcApi
from gateway.http import error_response
from tenants.hold import RefusalHold
from tenants.keys import KeyLimits
from wattgate.errors import TooManyRequests
from wattgate.metrics import render

from tests.gateway.test_grpc_api import Context, _infer_request
from tests.gateway.test_tenants_http import BODY, make_api


class FakeSleep:
    def __init__(self, released: bool = True) -> None:
        self.asked: list[float] = []
        self.release = asyncio.Event()
        if released:
            self.release.set()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.release.wait()


def gateway(make_plane, sleep, **auth):
    parts = make_plane(auth={"mode": "required", **auth})
    parts.gate.hold = RefusalHold(parts.settings.auth.refusal_hold_max_s, 64, 32, parts.metrics, sleep=sleep)
    return parts, make_api(parts)


async def test_an_http_refusal_is_held_then_answered_as_before(make_plane):
    sleep = FakeSleep()
    parts, api = gateway(make_plane, sleep)
    key = parts.keys.create("team-a", KeyLimits(rps=0.5, burst=1))[1]
    headers = {"authorization": f"Bearer {key}"}
    assert (await api.handle("POST", "/v2/models/digits/infer", headers, BODY, "127.0.0.1"))[0] == 200
    assert sleep.asked == []
    status, out_headers, body = await api.handle("POST", "/v2/models/digits/infer", headers, BODY, "127.0.0.1")
    error = json.loads(body)["error"]
    assert status == 429 and "requests/s" in error
    # Over 0.5 requests/s the next token is ~2 s away: held for the 1 s maximum, then the same answer as
    # an unheld refusal (status, Retry-After, JSON error).
    assert sleep.asked == [1.0] and parts.gate.hold.holding == 0
    assert (status, out_headers, body) == error_response(TooManyRequests(error, float(out_headers["retry-after"])))
    assert int(out_headers["retry-after"]) == 2
    assert (await api.handle("POST", "/v2/models/digits/infer", {}, BODY, "127.0.0.1"))[0] == 401
    assert sleep.asked == [1.0]  # a 401 is answered at once
    text = render(parts.snapshot())  # the replica's /metrics
    assert "wattgate_refusals_held_total 1" in text and "wattgate_refusals_holding 0" in text
    assert "wattgate_fair_refused_total 0" in text and "wattgate_fair_queued_total 0" in text


async def test_a_client_gone_while_held_frees_the_slot(make_plane):
    sleep = FakeSleep(released=False)
    parts, api = gateway(make_plane, sleep)
    key = parts.keys.create("team-a", KeyLimits(rps=1, burst=1))[1]
    headers = {"authorization": f"Bearer {key}"}
    assert (await api.handle("POST", "/v2/models/digits/infer", headers, BODY, "127.0.0.1"))[0] == 200
    held = asyncio.create_task(api.handle("POST", "/v2/models/digits/infer", headers, BODY, "127.0.0.1"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not held.done() and parts.gate.hold.holding_for("team-a") == 1
    held.cancel()  # Serve cancels the request's task when its client disconnects
    await asyncio.gather(held, return_exceptions=True)
    assert held.cancelled() and parts.gate.hold.holding == 0


async def test_a_carbon_budget_refusal_is_not_held(make_plane):
    sleep = FakeSleep()
    parts, api = gateway(make_plane, sleep)
    key = parts.keys.create("team-c", KeyLimits(budget_g=0.0, budget_period="day"))[1]
    status, _, body = await api.handle("POST", "/v2/models/digits/infer", {"authorization": f"Bearer {key}"}, BODY,
                                       "127.0.0.1")
    assert status == 429 and "carbon budget" in json.loads(body)["error"] and sleep.asked == []


async def test_holding_off_answers_at_once(make_plane):
    sleep = FakeSleep()
    parts, api = gateway(make_plane, sleep, refusal_hold_max_s=0)
    key = parts.keys.create("team-a", KeyLimits(rps=1, burst=1))[1]
    headers = {"authorization": f"Bearer {key}"}
    codes = [(await api.handle("POST", "/v2/models/digits/infer", headers, BODY, "127.0.0.1"))[0] for _ in range(3)]
    assert codes == [200, 429, 429] and sleep.asked == []


async def test_a_grpc_refusal_is_held_then_resource_exhausted_with_retry_after(make_plane):
    sleep = FakeSleep()
    parts, _ = gateway(make_plane, sleep)
    api = GrpcApi(parts.dataplane, make_api(parts).admin, gate=parts.gate)
    key = parts.keys.create("team-a", KeyLimits(rps=1, burst=1))[1]
    request = _infer_request(np.zeros((1, 64), np.float32))
    codes = []
    for _ in range(2):
        ctx = Context(metadata=[("authorization", f"Bearer {key}")])
        await api.call("ModelInfer", request, ctx)
        codes.append(ctx.code)
    assert codes == [None, grpc.StatusCode.RESOURCE_EXHAUSTED] and "requests/s" in ctx.details
    assert sleep.asked == [1.0] and dict(ctx.trailers)["retry-after"] == "1"
