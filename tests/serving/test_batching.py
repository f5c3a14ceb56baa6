"""The plain-asyncio tensor batcher: rows merged up to the cap, split back, failures isolated."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from models.work import WorkItem
from serving.batching import TensorBatcher
from serving_fakes import OneJoulePerBatch
from wattgate.errors import BackendError


class DoublingRuntime:
    providers = ("CPUExecutionProvider",)

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run(self, feeds, output_names=None):
        x = feeds["x"]
        if (x < 0).any():
            raise BackendError("negative input")
        self.batches.append(x.shape[0])
        return {"y": x * 2}


charge = OneJoulePerBatch()


def item(rows: int, value: float = 1.0) -> WorkItem:
    return WorkItem({"x": np.full((rows, 2), value, np.float32)}, rows, float(rows))


def test_requests_that_arrive_together_run_as_one_batch_and_get_their_own_rows():
    runtime = DoublingRuntime()
    batcher = TensorBatcher(runtime, charge, max_batch_size=8, batch_wait_timeout_s=0.05)

    async def go():
        return await asyncio.gather(*(batcher.infer(item(1, float(i))) for i in range(4)))

    results = asyncio.run(go())
    assert runtime.batches == [4]
    assert [float(r.outputs["y"][0, 0]) for r in results] == [0.0, 2.0, 4.0, 6.0]
    assert all(r.batch_rows == 4 and r.batch_requests == 4 for r in results)
    assert sum(r.energy.energy_j for r in results) == pytest.approx(1.0)
    assert (batcher.calls, batcher.rows_seen, batcher.batch_sizes) == (1, 4, {4: 1})


def test_a_batch_never_holds_more_rows_than_the_cap():
    runtime = DoublingRuntime()
    batcher = TensorBatcher(runtime, charge, max_batch_size=5, batch_wait_timeout_s=0.05)

    async def go():
        return await asyncio.gather(*(batcher.infer(item(2)) for _ in range(5)))

    asyncio.run(go())
    assert sum(runtime.batches) == 10 and max(runtime.batches) <= 5


def test_a_full_batch_does_not_wait_for_the_timeout():
    runtime = DoublingRuntime()
    batcher = TensorBatcher(runtime, charge, max_batch_size=2, batch_wait_timeout_s=30.0)

    async def go():
        return await asyncio.wait_for(asyncio.gather(batcher.infer(item(1)), batcher.infer(item(1))), 5)

    assert len(asyncio.run(go())) == 2


def test_a_bad_request_fails_alone_and_its_batch_mates_are_served():
    runtime = DoublingRuntime()
    batcher = TensorBatcher(runtime, charge, max_batch_size=8, batch_wait_timeout_s=0.05)

    async def go():
        return await asyncio.gather(batcher.infer(item(1, 1.0)), batcher.infer(item(1, -1.0)), batcher.infer(item(1, 3.0)),
                                    return_exceptions=True)

    good, bad, other = asyncio.run(go())
    assert isinstance(bad, BackendError)
    assert float(good.outputs["y"][0, 0]) == 2.0 and float(other.outputs["y"][0, 0]) == 6.0


def test_a_cancelled_request_never_runs_and_the_queue_goes_on():
    runtime = DoublingRuntime()
    batcher = TensorBatcher(runtime, charge, max_batch_size=8, batch_wait_timeout_s=0.05)

    async def go():
        doomed = asyncio.ensure_future(batcher.infer(item(3)))
        await asyncio.sleep(0)
        doomed.cancel()
        return await batcher.infer(item(1))

    assert asyncio.run(go()).batch_rows == 1
    assert runtime.batches == [1]


def test_the_batcher_serves_again_on_a_new_event_loop():
    batcher = TensorBatcher(DoublingRuntime(), charge, max_batch_size=8, batch_wait_timeout_s=0.0)
    for _ in range(3):  # each asyncio.run is a new loop: the queue's worker must follow it
        assert asyncio.run(asyncio.wait_for(batcher.infer(item(1)), 5)).batch_rows == 1
