"""Tensor-model batching on Ray Serve's ``@serve.batch`` queue (the work itself: serving/batching.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from ray import serve

from models.runtime import Runtime
from models.work import WorkItem, WorkResult
from serving.batching import BatchEnergy, TensorBatchRunner


def _rows(items: Sequence[WorkItem]) -> int:
    return sum(i.rows for i in items)


class ServeTensorBatcher(TensorBatchRunner):
    """One ``@serve.batch`` queue per served tensor-model variant; the queue counts rows."""

    def __init__(self, runtime: Runtime, energy: BatchEnergy, max_batch_size: int, batch_wait_timeout_s: float,
                 executor: ThreadPoolExecutor | None = None) -> None:
        super().__init__(runtime, energy, executor)
        self.run_batch.set_max_batch_size(max_batch_size)
        self.run_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    async def infer(self, item: WorkItem) -> WorkResult:
        result = await self.run_batch(item)
        if isinstance(result, BaseException):
            raise result
        return result

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002, batch_size_fn=_rows)
    async def run_batch(self, items: list[WorkItem]) -> list[WorkResult | BaseException]:
        return await self.run_items(items)
