"""Length-grouped continuous batching for text models: no compute spent on padding, no wait when idle.

Sentences queue per variant. Whenever the runtime is free, the oldest waiting sentence anchors a
batch and takes along the waiting sentences closest to its token count, as long as the padded batch
wastes at most ``max_pad_fraction`` of its tokens and holds at most ``max_batch_size`` rows. Nothing
waits on a timer: an idle replica runs a lone sentence at once (batching alone bought nothing on a
CPU), and under load the queue fills while the previous batch runs, so batches form by themselves.
The oldest sentence always goes next, so no length starves.

Why not ``@serve.batch`` buckets: fixed buckets (8, 16, 32 tokens) still pad up to 2x inside a bucket,
and a queue per bucket wakes the event loop per sentence; here one queue feeds one worker thread.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from energy.attribution import combine_energy
from models.batching import pad_text_batch, split_rows
from models.runtime import Runtime
from models.work import TextWorkItem, WorkResult
from serving.batching import BatchEnergy, run_isolated


class _Row:
    __slots__ = ("tokens", "inputs", "future", "taken")

    def __init__(self, tokens: int, inputs: dict[str, np.ndarray], future: asyncio.Future) -> None:
        self.tokens = tokens
        self.inputs = inputs
        self.future = future
        self.taken = False

    @property
    def live(self) -> bool:
        return not self.taken and not self.future.done()  # done before it ran: its request was cancelled


class SentenceQueue:
    """Waiting sentences in arrival order and by token count; taking a batch costs O(batch x lengths).

    A full queue can hold max_ongoing_requests x rows per request (thousands of sentences); a batch
    must not sort them all. Rows leave both indexes lazily: taken or cancelled rows are skipped.
    """

    def __init__(self) -> None:
        self._fifo: deque[_Row] = deque()
        self._by_tokens: dict[int, deque[_Row]] = {}

    def push(self, row: _Row) -> None:
        self._fifo.append(row)
        self._by_tokens.setdefault(row.tokens, deque()).append(row)

    def _front(self) -> _Row | None:
        while self._fifo and not self._fifo[0].live:
            self._fifo.popleft()
        return self._fifo[0] if self._fifo else None

    def __bool__(self) -> bool:
        return self._front() is not None

    def take_group(self, max_rows: int, max_pad_fraction: float) -> list[_Row]:
        """The oldest live row plus the live rows nearest its token count (oldest first) that keep the
        padded batch within ``max_pad_fraction`` of wasted tokens, up to ``max_rows``. [] when empty."""
        anchor = self._front()
        if anchor is None:
            return []
        anchor.taken = True
        group, longest, total = [anchor], anchor.tokens, anchor.tokens
        for t in sorted(self._by_tokens, key=lambda n: (abs(n - anchor.tokens), n)):
            rows = self._by_tokens[t]
            while rows and len(group) < max_rows:
                row = rows[0]
                if not row.live:
                    rows.popleft()
                    continue
                new_longest = max(longest, t)
                if 1.0 - (total + t) / (new_longest * (len(group) + 1)) > max_pad_fraction + 1e-12:
                    break  # rows further from the anchor's length only waste more on this side
                rows.popleft()
                row.taken = True
                group.append(row)
                longest, total = new_longest, total + t
            if not rows:
                del self._by_tokens[t]
            if len(group) >= max_rows:
                break
        return group


class LengthGroupedBatcher:
    """Text batching for one variant: ``infer`` takes a request's sentences, returns their embeddings."""

    def __init__(
        self,
        runtime: Runtime,
        energy: BatchEnergy,
        max_batch_size: int,
        max_pad_fraction: float,
        executor: ThreadPoolExecutor,
        max_concurrent_batches: int = 1,
    ) -> None:
        if max_batch_size < 1 or max_concurrent_batches < 1 or not 0.0 <= max_pad_fraction < 1.0:
            raise ValueError("max_batch_size and max_concurrent_batches must be >= 1, max_pad_fraction in [0, 1)")
        self.runtime = runtime
        self._energy = energy
        self.max_batch_size = max_batch_size
        self.max_pad_fraction = max_pad_fraction
        self.max_concurrent_batches = max_concurrent_batches
        self._executor = executor
        self._queue = SentenceQueue()
        self._running = 0
        self._tasks: set[asyncio.Task] = set()
        self.calls = 0  # runtime invocations (Triton's execution_count)
        self.rows_seen = 0  # sentences inferred (Triton's inference_count)
        self.batch_sizes: dict[int, int] = {}

    async def infer(self, item: TextWorkItem) -> WorkResult:
        loop = asyncio.get_running_loop()
        rows = [_Row(int(r["input_ids"].shape[1]), r, loop.create_future()) for r in item.rows]
        for r in rows:
            self._queue.push(r)
        self._start_batches()
        try:
            results = await asyncio.gather(*(r.future for r in rows))
        except BaseException:
            for r in rows:  # cancelled or failed: queued siblings need not run
                r.future.cancel()
            raise
        outputs = {n: np.concatenate([res.outputs[n] for res in results], axis=0) for n in results[0].outputs}
        return WorkResult(
            outputs=outputs,
            energy=combine_energy([res.energy for res in results]),
            batch_rows=max(res.batch_rows for res in results),
            batch_requests=max(res.batch_requests for res in results),
            batch_lead=results[0].batch_lead,
        )

    def _start_batches(self) -> None:
        while self._running < self.max_concurrent_batches:
            group = self._queue.take_group(self.max_batch_size, self.max_pad_fraction)
            if not group:
                return
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run_group(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run_group(self, group: list[_Row]) -> None:
        try:
            try:
                results = await run_isolated(group, self._run)
            except Exception as exc:  # a bug: these sentences fail, the batcher goes on
                results = [exc] * len(group)
            except BaseException as exc:  # cancelled: nobody may wait forever
                _settle(group, [exc] * len(group))
                raise
            _settle(group, results)
        finally:
            self._running -= 1
            self._start_batches()

    async def _run(self, group: list[_Row]) -> list[WorkResult]:
        merged, sizes = pad_text_batch([r.inputs for r in group])
        token = self._energy.begin_batch()
        outputs = await asyncio.get_running_loop().run_in_executor(self._executor, self.runtime.run, merged)
        energies = self._energy.charge_batch([float(r.tokens) for r in group], token)  # tokens: each sentence's share
        n = len(group)
        self.calls += 1
        self.rows_seen += n
        self.batch_sizes[n] = self.batch_sizes.get(n, 0) + 1
        return [WorkResult(outputs=o, energy=e, batch_rows=n, batch_requests=n, batch_lead=k == 0)
                for k, (o, e) in enumerate(zip(split_rows(outputs, sizes), energies))]

    def close(self) -> None:
        self._executor.shutdown(wait=False)


def _settle(group: list[_Row], results: Sequence[WorkResult | BaseException]) -> None:
    """Each sentence's result or error to its waiting request; a cancelled request's rows stay done."""
    for row, result in zip(group, results):
        if row.future.done():
            continue
        if isinstance(result, BaseException):
            row.future.set_exception(result)
        else:
            row.future.set_result(result)
