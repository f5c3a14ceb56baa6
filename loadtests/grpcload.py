"""A closed-loop gRPC load generator for OIP ``ModelInfer``: N workers on one grpc.aio channel, each
sending its next request as the last returns; the gRPC twin of ``loadtests.aioload``.

Requests are serialised ``ModelInferRequest`` bytes made once up front and responses are not
decoded, so the client spends its CPU on the wire, as the HTTP generator does with prebuilt bodies.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable


from loadtests.aioload import LoadResult

MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"


async def run_grpc_load(
    target: str,
    make_request: Callable[[int], bytes],
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    on_window: Callable[[str], None] | None = None,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> LoadResult:
    """``target`` is host:port; ``status_counts`` are keyed by gRPC status name (``OK``, ``UNAVAILABLE``...).
    ``metadata`` goes with every call (Ray Serve's ``application``, a key's ``authorization``)."""
    import grpc

    latencies: list[float] = []
    statuses: dict[str, int] = {}
    counter = 0
    deadline_warm = time.perf_counter() + warmup_s
    deadline = deadline_warm + duration_s

    async def worker(call) -> None:
        nonlocal counter
        while True:
            if time.perf_counter() >= deadline:
                return
            counter += 1
            request = make_request(counter)
            t0 = time.perf_counter()
            try:
                await call(request, timeout=120, metadata=metadata)
                status = "OK"
            except grpc.RpcError as exc:
                status = exc.code().name
            t1 = time.perf_counter()
            if t0 >= deadline_warm:
                latencies.append((t1 - t0) * 1000)
                statuses[status] = statuses.get(status, 0) + 1

    loop = asyncio.get_running_loop()
    if on_window is not None:
        loop.call_at(loop.time() + (deadline_warm - time.perf_counter()), on_window, "start")
        loop.call_at(loop.time() + (deadline - time.perf_counter()), on_window, "end")
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(MODEL_INFER)  # bytes in, bytes out
        await asyncio.gather(*(worker(call) for _ in range(concurrency)))
    return LoadResult.measured(latencies, statuses, duration_s, ok=lambda status: status == "OK")


def digits_grpc_request(model: str = "digits", rows: int = 1) -> Callable[[int], bytes]:
    """ModelInferRequests carrying real digits images (raw_input_contents), cycling through the dataset."""
    from tritonclient.grpc import service_pb2 as pb

    from loadtests.payloads import digits_images

    x = digits_images()
    messages = []
    for i in range(0, len(x) - rows, rows):
        msg = pb.ModelInferRequest(model_name=model)
        msg.inputs.add(name="pixels", datatype="FP32", shape=[rows, 64])
        msg.raw_input_contents.append(x[i : i + rows].tobytes())
        messages.append(msg.SerializeToString())
    return lambda i: messages[i % len(messages)]
