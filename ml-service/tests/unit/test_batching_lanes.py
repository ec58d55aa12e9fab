"""The dynamic batcher: stopping, surviving errors, fairness between requests (lanes), cancellation, post-steps."""

from __future__ import annotations

import asyncio
import threading

from ml_service.batching import InferenceFailed
from ml_service.errors import MLServiceError, ModelUnavailable

from .batching_support import (
    WAIT,
    GateRuntime,
    ItemTask,
    _batcher,
    _hold_compute,
    _results,
    _run,
    _values,
    _wait_event,
)


def test_items_still_in_preprocessing_when_stopped_fail_at_once():
    task = ItemTask()
    task.hold_pre[7] = threading.Event()
    rt = GateRuntime()
    b = _batcher(rt, task)

    async def scenario():
        (fut,) = b.submit([(7, 3)], 60)
        await _wait_event(task.in_pre.setdefault(7, threading.Event()))
        stopping = asyncio.create_task(asyncio.to_thread(b.stop, WAIT))
        await asyncio.sleep(0.05)
        task.hold_pre[7].set()  # preprocessing finishes after stop(): the item must not wait for its deadline
        (result,) = await _results([fut], timeout=10)
        assert isinstance(result, ModelUnavailable) and result.status_code == 503
        await stopping
        assert 7 not in rt.seen and b.pending == 0

    _run(b, scenario)


def test_a_worker_survives_an_unexpected_error_and_keeps_serving():
    class Flaky(GateRuntime):
        def predict(self, feeds, release=False):
            if 666 in feeds["ids"].tolist():
                raise MemoryError("out of memory")  # the message must not reach the client
            return super().predict(feeds)

    b = _batcher(Flaky(), workers=1)

    async def scenario():
        bad = await _results(b.submit([(666, 1)], 60))
        assert isinstance(bad[0], MLServiceError) and bad[0].status_code == 500
        assert "out of memory" not in bad[0].message
        good = await _results(b.submit([(1, 1), (2, 1)], 60))
        assert _values(good) == [10, 20]
        assert b.pending == 0

    _run(b, scenario)


def test_a_big_request_does_not_hold_back_a_small_one():
    """Requests share the queues round-robin, a batch a turn: one item sent after 200 is computed in the next window,
    not last."""
    rt = GateRuntime(delay_s=0.002)
    b = _batcher(rt, workers=1, max_batch_size=4, window_factor=2)

    async def scenario():
        held = await _hold_compute(b)
        big = b.submit([(i, 1) for i in range(200)], 60)
        (small,) = b.submit([(999, 1)], 60)
        rt.release(-1000)
        await _results([held, small])
        position = next(i for i, batch in enumerate(rt.batches) if 999 in batch)
        assert position <= 2, rt.batches[:6]  # the held batch, at most one batch of big's, then its own
        results = await _results(big)
        assert _values(results) == [i * 10 for i in range(200)]

    _run(b, scenario)


def test_requests_up_to_a_batch_are_served_whole_in_the_order_they_came():
    """Issue 23: with a backlog of 8-item requests, each is answered after the work ahead of it (one item a turn
    from every request made each wait for the whole queue, and for what came after it)."""
    rt = GateRuntime()
    b = _batcher(rt, workers=1, max_batch_size=8, window_factor=1)

    async def scenario():
        held = await _hold_compute(b)
        requests = [b.submit([(100 * r + k, 1) for k in range(8)], 60) for r in range(6)]
        rt.release(-1000)
        await _results([held, *(f for r in requests for f in r)])
        assert [sorted(x // 100 for x in batch) for batch in rt.batches[1:]] == [[r] * 8 for r in range(6)]

    _run(b, scenario)


def test_preprocessing_takes_bounded_chunks_round_robin():
    """A pre thread takes at most a window of items at a time, a batch at most from each request in turn."""
    task = ItemTask()
    seen: list[list[int]] = []
    original = task.preprocess

    def recording(items, budgets):
        seen.append([i for i, _ in items])
        return original(items, budgets)

    task.preprocess = recording
    task.hold_pre[-1] = threading.Event()
    b = _batcher(task=task, workers=1, max_batch_size=4, window_factor=2)

    async def scenario():
        (first,) = b.submit([(-1, 1)], 60)
        await _wait_event(task.in_pre.setdefault(-1, threading.Event()))
        big = b.submit([(i, 1) for i in range(100)], 60)
        small = b.submit([(1000 + i, 1) for i in range(3)], 60)
        task.hold_pre[-1].set()
        await _results([first, *big, *small])
        chunks = seen[1:]
        assert max(len(c) for c in chunks) <= 8
        assert chunks[0] == [0, 1, 2, 3, 1000, 1001, 1002, 4]  # batches of 4: big's first, small's whole, big's

    _run(b, scenario)


def test_cancelled_items_are_counted_and_never_computed():
    rt = GateRuntime()
    b = _batcher(rt, workers=1)

    async def scenario():
        held = await _hold_compute(b)
        futures = b.submit([(i, 1) for i in range(50)], 60)
        for f in futures:
            f.cancel()
        rt.release(-1000)
        await _results([held])
        more = await _results(b.submit([(77, 1)], 60))
        assert _values(more) == [770]
        assert not rt.seen & set(range(50))
        assert b.stats.cancelled == 50 and b.pending == 0

    _run(b, scenario)


def test_a_post_step_runs_on_its_requests_rows_only():
    rt = GateRuntime()
    b = _batcher(rt, workers=1, max_batch_size=8)

    def double(rows):
        return [{"y": r["y"] * 2} for r in rows]

    def broken(rows):
        raise RuntimeError("head exploded")

    async def scenario():
        held = await _hold_compute(b)
        plain = b.submit([(1, 1), (2, 1)], 60)
        doubled = b.submit([(3, 1)], 60, post=double)
        failed = b.submit([(4, 1)], 60, post=broken)
        rt.release(-1000)
        results = await _results([held, *plain, *doubled, *failed])
        assert _values(results[:4]) == [-10000, 10, 20, 60]
        assert isinstance(results[4], InferenceFailed) and "exploded" not in results[4].message
        assert b.pending == 0

    _run(b, scenario)
