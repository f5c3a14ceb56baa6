"""Dynamic batching of one tensor-model variant on a replica with Ray Serve's ``@serve.batch`` (text: text_batcher.py).

Requests' rows are merged into one runtime call and split back; the batch queue counts rows (not
requests) so ``max_batch_size`` bounds what the runtime sees. Each batch is charged its energy by
the replica's attributor right after it runs, so every response leaves with final figures.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import numpy as np
from ray import serve

from models.batching import merge_rows, split_rows
from models.runtime import Runtime
from wattgate.errors import WattgateError


@dataclass
class WorkItem:
    inputs: dict[str, np.ndarray]
    rows: int
    work_units: float  # rows, or tokens for text: the share of the batch's energy this item pays


@dataclass
class WorkResult:
    outputs: dict[str, np.ndarray]
    energy: Any  # energy.attribution.RequestEnergy
    batch_rows: int
    batch_requests: int
    node_id: str | None = None  # set when a pool on another node ran it
    served_by: Any = None  # the pool that ran it, when the router fell back from the one it chose


def _rows(items: Sequence[WorkItem]) -> int:
    return sum(i.rows for i in items)


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


class VariantBatcher:
    """One batch queue per served tensor-model variant."""

    def __init__(
        self,
        runtime: Runtime,
        charge: Callable[[Sequence[float]], list[Any]],
        max_batch_size: int,
        batch_wait_timeout_s: float,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.runtime = runtime
        self._charge = charge
        self.calls = 0  # runtime invocations (Triton's execution_count)
        self.rows_seen = 0  # rows inferred (Triton's inference_count)
        self.batch_sizes: dict[int, int] = {}  # batch size in rows -> how many batches
        # A worker thread keeps long runs (text encoders) off the event loop; tiny models run inline
        # (executor None) because a thread hop costs more than their inference.
        self._executor = executor
        self.run_batch.set_max_batch_size(max_batch_size)
        self.run_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    async def infer(self, item: WorkItem) -> WorkResult:
        result = await self.run_batch(item)
        if isinstance(result, BaseException):
            raise result
        return result

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002, batch_size_fn=_rows)
    async def run_batch(self, items: list[WorkItem]) -> list[WorkResult | BaseException]:
        return await run_isolated(items, self._run)

    async def _run(self, items: list[WorkItem]) -> list[WorkResult]:
        merged, rows = merge_rows([i.inputs for i in items])
        if self._executor is None:
            outputs = self.runtime.run(merged)
        else:
            outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self.runtime.run, merged)
        energies = self._charge([i.work_units for i in items])
        self.calls += 1
        total = sum(rows)
        self.rows_seen += total
        self.batch_sizes[total] = self.batch_sizes.get(total, 0) + 1
        return [
            WorkResult(outputs=o, energy=e, batch_rows=total, batch_requests=len(items))
            for o, e in zip(split_rows(outputs, rows), energies)
        ]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)


@dataclass
class TextWorkItem:
    """A text request: one unpadded [1, tokens] array dict per sentence."""

    rows: list[dict[str, np.ndarray]]
