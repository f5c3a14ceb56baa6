"""The length-grouped text batcher without Ray: grouping, no padding waste, fairness, failures, cancellation."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from models.work import TextWorkItem
from serving.text_batcher import LengthGroupedBatcher, SentenceQueue, _Row
from serving_fakes import OneJoulePerBatch
from wattgate.errors import BackendError


def row(tokens: int, token_id: int = 1) -> dict[str, np.ndarray]:
    ids = np.full((1, tokens), token_id, dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


class MeanRuntime:
    """A real computation per row: the mean of the unmasked token ids; padding would change nothing
    here, so the test can also see the padded shapes it was given. ``gate`` holds runs back."""

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def run(self, feeds):
        self.gate.wait(5)
        ids, mask = feeds["input_ids"], feeds["attention_mask"]
        if (ids == 666).any():
            raise BackendError("poisoned token")
        self.shapes.append(ids.shape)
        mean = (ids * mask).sum(1, keepdims=True) / mask.sum(1, keepdims=True)
        return {"mean": mean.astype(np.float32)}


charge = OneJoulePerBatch()


def make(runtime, max_batch_size=32, pad=0.0, concurrent=1):
    return LengthGroupedBatcher(runtime, charge, max_batch_size, pad, ThreadPoolExecutor(concurrent), concurrent)


class DoneFuture:
    """Stands in for a request's future in queue-only tests: live until ``cancel()``."""

    def __init__(self) -> None:
        self.cancelled = False

    def done(self) -> bool:
        return self.cancelled

    def cancel(self) -> None:
        self.cancelled = True


def queue_of(*tokens: int) -> tuple[SentenceQueue, list[_Row]]:
    q, rows = SentenceQueue(), [_Row(t, row(t), DoneFuture()) for t in tokens]
    for r in rows:
        q.push(r)
    return q, rows


def lengths(group) -> list[int]:
    return sorted(r.tokens for r in group)


def test_take_group_joins_equal_lengths_only_without_a_padding_allowance():
    q, _ = queue_of(12, 9, 12, 13, 12)
    assert lengths(q.take_group(32, 0.0)) == [12, 12, 12]
    assert lengths(q.take_group(32, 0.0)) == [9]  # then the oldest left
    assert lengths(q.take_group(32, 0.0)) == [13]
    assert q.take_group(32, 0.0) == [] and not q


def test_take_group_bounds_padding_waste_and_batch_size():
    q, _ = queue_of(10, 11, 10, 20, 9)
    group = lengths(q.take_group(32, 0.1))
    assert 20 not in group  # it would waste half of every row's compute
    assert 1 - sum(group) / (max(group) * len(group)) <= 0.1
    q, _ = queue_of(*([8] * 10))
    assert len(q.take_group(4, 0.0)) == 4 and len(q.take_group(32, 0.0)) == 6


def test_oldest_row_always_goes_next_and_cancelled_rows_are_skipped():
    q, rows = queue_of(30, 8, 8, 8, 8)
    assert lengths(q.take_group(32, 0.0)) == [30]
    rows[2].future.cancel()
    assert [r is rows[2] for r in q.take_group(32, 0.0)] == [False, False, False]


def test_a_long_queue_drains_in_equal_length_batches():
    q, rows = queue_of(*[5 + i % 60 for i in range(20_000)])
    taken = 0
    while q:
        group = q.take_group(32, 0.0)
        assert len({r.tokens for r in group}) == 1
        taken += len(group)
    assert taken == 20_000 and all(r.taken for r in rows)


async def test_idle_batcher_runs_a_lone_sentence_at_once_and_batches_under_load():
    rt = MeanRuntime()
    b = make(rt)
    out = await b.infer(TextWorkItem([row(5, 7)]))
    assert out.outputs["mean"].tolist() == [[7.0]] and rt.shapes == [(1, 5)]

    rt.gate.clear()  # the first batch blocks; everything sent meanwhile queues behind it
    first = asyncio.ensure_future(b.infer(TextWorkItem([row(3, 1)])))
    await asyncio.sleep(0.05)
    waiting = [asyncio.ensure_future(b.infer(TextWorkItem([row(6, i)]))) for i in range(1, 9)]
    odd = asyncio.ensure_future(b.infer(TextWorkItem([row(9, 100)])))
    await asyncio.sleep(0.05)
    rt.gate.set()
    results = await asyncio.gather(first, *waiting, odd)
    assert [r.outputs["mean"][0, 0] for r in results] == [1.0, *range(1, 9), 100.0]
    assert rt.shapes[1:] == [(1, 3), (8, 6), (1, 9)]  # equal lengths shared one batch, nothing padded
    assert b.batch_sizes == {1: 3, 8: 1} and b.calls == 4 and b.rows_seen == 11
    assert results[1].energy.energy_j == pytest.approx(1 / 8)  # the batch's energy split by tokens


async def test_a_request_keeps_its_sentence_order_across_batches():
    rt = MeanRuntime()
    b = make(rt, pad=0.0)
    out = await b.infer(TextWorkItem([row(4, 1), row(9, 2), row(4, 3), row(2, 4)]))
    assert out.outputs["mean"][:, 0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert out.energy.energy_j == pytest.approx(sum(1.0 for _ in range(3)))  # 3 batches, each charged 1 J in full


async def test_a_bad_sentence_fails_alone():
    rt = MeanRuntime()
    b = make(rt)
    rt.gate.clear()
    blocker = asyncio.ensure_future(b.infer(TextWorkItem([row(2, 1)])))
    await asyncio.sleep(0.05)
    good = asyncio.ensure_future(b.infer(TextWorkItem([row(5, 3)])))
    bad = asyncio.ensure_future(b.infer(TextWorkItem([row(5, 666)])))
    await asyncio.sleep(0.05)
    rt.gate.set()
    await blocker
    assert (await good).outputs["mean"].tolist() == [[3.0]]
    with pytest.raises(BackendError):
        await bad
    assert (await b.infer(TextWorkItem([row(5, 4)]))).outputs["mean"].tolist() == [[4.0]]  # still serving


async def test_cancelled_requests_rows_never_run():
    rt = MeanRuntime()
    b = make(rt)
    rt.gate.clear()
    blocker = asyncio.ensure_future(b.infer(TextWorkItem([row(2, 1)])))
    await asyncio.sleep(0.05)
    gone = asyncio.ensure_future(b.infer(TextWorkItem([row(7, 5), row(7, 5)])))
    await asyncio.sleep(0.01)
    gone.cancel()
    await asyncio.sleep(0.01)
    rt.gate.set()
    await blocker
    kept = await b.infer(TextWorkItem([row(7, 9)]))
    assert kept.outputs["mean"].tolist() == [[9.0]]
    assert b.rows_seen == 2  # the cancelled request's two sentences were dropped from the queue


async def test_concurrent_batches_run_side_by_side():
    rt = MeanRuntime()
    b = make(rt, concurrent=2)
    rt.gate.clear()
    first = asyncio.ensure_future(b.infer(TextWorkItem([row(3, 1)])))
    second = asyncio.ensure_future(b.infer(TextWorkItem([row(4, 2)])))
    await asyncio.sleep(0.05)
    assert b._running == 2  # both in a worker thread before either finished
    rt.gate.set()
    assert [r.outputs["mean"][0, 0] for r in await asyncio.gather(first, second)] == [1.0, 2.0]


def test_settings_are_checked():
    with pytest.raises(ValueError):
        make(MeanRuntime(), pad=1.0)
    with pytest.raises(ValueError):
        make(MeanRuntime(), max_batch_size=0)


def test_batch_cap_and_padding_follow_the_profile_on_this_hardware():
    from serving.host import text_batching
    from wattgate.settings import ModelServing

    serving = ModelServing(max_batch_size=32, text_max_pad_fraction=0.1)
    padded_loses = {"x86": {"batches": {"1": {"energy_j_per_inference": 0.02}, "8": {"energy_j_per_inference": 0.03}}}}
    batching_wins = {"gpu": {"batches": {"1": {"energy_j_per_inference": 0.3}, "64": {"energy_j_per_inference": 0.003}}}}
    assert text_batching(padded_loses, "x86", serving) == (32, 0.0)  # equal lengths only, which pad nothing
    assert text_batching(batching_wins, "gpu", serving) == (32, 0.1)  # capped by the serving limit
    assert text_batching({}, "x86", serving) == (32, 0.1)  # no profile: the settings stand
