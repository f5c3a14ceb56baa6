"""Dynamic batching of tensor-model variants: the batcher interface and a plain-asyncio batcher.

Requests' rows are merged into one runtime call and split back; a batch counts rows (not
requests), so ``max_batch_size`` bounds what the runtime sees. Each batch is charged its energy
right after it runs, so every response leaves with final figures. ``TensorBatchRunner`` holds
the work (merge, run, charge, split, statistics); ``TensorBatcher`` adds the queue, on asyncio alone.

Why not Ray Serve's ``@serve.batch``: it served these queues until it was measured. Per request it
binds the call's signature (``inspect.signature``) and runs its own futures and events; this queue
costs one future and a deque append. On digits at c=32 and 128 the ingress replica's CPU per
request fell 5-25 % with it (README "Load tests and benchmarks").
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Awaitable, Callable, Protocol, Sequence

from energy.attribution import BatchToken, RequestEnergy
from models.batching import merge_rows, split_rows
from models.runtime import Runtime
from models.work import TextWorkItem, WorkItem, WorkResult
from wattgate.errors import WattgateError

class BatchEnergy(Protocol):
    """What a batch is charged (``energy.attribution.EnergyAttributor``): take a token right before it
    runs, then charge its requests by work units."""

    def begin_batch(self) -> BatchToken: ...

    def charge_batch(self, work_units: Sequence[float], token: BatchToken | None = None) -> list[RequestEnergy]: ...


class Batcher(Protocol):
    """One variant's batch queue. Statistics follow Triton's: ``calls`` runtime invocations
    (execution_count), ``rows_seen`` rows inferred (inference_count), ``batch_sizes`` rows -> batches."""

    calls: int
    rows_seen: int
    batch_sizes: dict[int, int]

    async def infer(self, item: WorkItem | TextWorkItem) -> WorkResult: ...

    def close(self) -> None: ...


async def run_isolated(items: list, run: Callable[[list], Awaitable[list[WorkResult]]]) -> list[WorkResult | WattgateError]:
    """``run(items)`` as one batch; if that fails, each item alone, so one bad request never fails its
    batch-mates. Each item gets its result or its own error."""
    try:
        return await run(items)
    except WattgateError as exc:
        if len(items) == 1:
            return [exc]
    results: list[WorkResult | WattgateError] = []
    for item in items:
        try:
            results.extend(await run([item]))
        except WattgateError as exc:
            results.append(exc)
    return results


class TensorBatchRunner:
    """Runs one batch of a tensor-model variant: merge rows, run, charge energy, split, count."""

    def __init__(self, runtime: Runtime, energy: BatchEnergy, executor: ThreadPoolExecutor | None = None) -> None:
        self.runtime = runtime
        self._energy = energy
        self.calls = 0
        self.rows_seen = 0
        self.batch_sizes: dict[int, int] = {}
        # A worker thread keeps long runs (text encoders) off the event loop; tiny models run inline
        # (executor None) because a thread hop costs more than their inference.
        self._executor = executor

    async def run_items(self, items: list[WorkItem]) -> list[WorkResult | WattgateError]:
        return await run_isolated(items, self._run)

    async def _run(self, items: list[WorkItem]) -> list[WorkResult]:
        merged, rows = merge_rows([i.inputs for i in items])
        token = self._energy.begin_batch()
        if self._executor is None:
            outputs = self.runtime.run(merged)
        else:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self.runtime.run, merged)
        energies = self._energy.charge_batch([i.work_units for i in items], token)
        self.calls += 1
        total = sum(rows)
        self.rows_seen += total
        self.batch_sizes[total] = self.batch_sizes.get(total, 0) + 1
        return [
            WorkResult(outputs=o, energy=e, batch_rows=total, batch_requests=len(items), batch_lead=k == 0)
            for k, (o, e) in enumerate(zip(split_rows(outputs, rows), energies))
        ]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)


def _settle(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


class TensorBatcher(TensorBatchRunner):
    """A batch queue on asyncio alone: a batch runs once it holds ``max_batch_size`` rows or its
    oldest request has waited ``batch_wait_timeout_s``; one batch runs at a time."""

    def __init__(self, runtime: Runtime, energy: BatchEnergy, max_batch_size: int, batch_wait_timeout_s: float,
                 executor: ThreadPoolExecutor | None = None) -> None:
        super().__init__(runtime, energy, executor)
        if max_batch_size < 1 or batch_wait_timeout_s < 0:
            raise ValueError("max_batch_size must be >= 1 and batch_wait_timeout_s >= 0")
        self.max_batch_size = max_batch_size
        self.batch_wait_timeout_s = batch_wait_timeout_s
        self._queue: deque[tuple[WorkItem, asyncio.Future]] = deque()
        self._queued_rows = 0
        self._full: asyncio.Future | None = None  # set while the worker waits for a batch to fill
        self._worker: asyncio.Task | None = None

    async def infer(self, item: WorkItem) -> WorkResult:
        # Per request: one future and a queue append. The worker sleeps on one timer per batch and
        # is woken early only when the batch is full, never once per arrival.
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((item, future))
        self._queued_rows += item.rows
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        elif self._full is not None and self._queued_rows >= self.max_batch_size:
            _settle(self._full)
        return await future

    async def _drain(self) -> None:
        try:
            await self._drain_batches()
        except BaseException as exc:  # nobody queued may wait forever on a worker that is gone
            while self._queue:
                _, future = self._queue.popleft()
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            self._queued_rows = 0
            raise

    async def _drain_batches(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            if self._queued_rows < self.max_batch_size and self.batch_wait_timeout_s > 0:
                self._full = full = loop.create_future()
                timer = loop.call_later(self.batch_wait_timeout_s, _settle, full)
                try:
                    await full
                finally:
                    timer.cancel()
                    self._full = None
            batch = self._take()
            if not batch:
                continue
            try:
                results = await self.run_items([item for item, _ in batch])
            except Exception as exc:  # a bug: these requests fail, the queue goes on
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results):
                if future.done():  # its request was cancelled
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _take(self) -> list[tuple[WorkItem, asyncio.Future]]:
        """The oldest live requests up to ``max_batch_size`` rows (a first request never waits alone)."""
        batch, rows = [], 0
        while self._queue:
            item, future = self._queue[0]
            if future.done():  # cancelled while queued: never runs
                self._queue.popleft()
                self._queued_rows -= item.rows
                continue
            if batch and rows + item.rows > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued_rows -= item.rows
            batch.append((item, future))
            rows += item.rows
        return batch
